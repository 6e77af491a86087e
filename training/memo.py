"""A few recent results, kept in memory while their inputs are unchanged (the wizard asks the same thing often)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    """The last `size` results by key, newest kept; the key must name everything the result depends on."""

    def __init__(self, size: int):
        self.size = size
        self._results: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()  # gradio runs handlers of several sessions in threads

    def get(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        """The kept result for `key`, or `compute()` (kept unless the key is None: nothing identifies it)."""
        if key is None:
            return compute()
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        result = compute()  # outside the lock: a slow read must not hold up other sessions
        with self._lock:
            self._results[key] = result
            while len(self._results) > self.size:
                self._results.popitem(last=False)
        return result

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


def secret_digest(secret: str | None) -> str:
    """A key part for results that depend on whose token asked (never the token itself)."""
    return hashlib.sha256((secret or "").encode()).hexdigest()
