"""Read a data file of any common shape into rows, never raising on bad input.

Every problem becomes a `Problem` with a rule id, a location ("line 7", "row 3", "file") and the
fix, so the dataset step can list them all before anything is trained. Supported: JSON Lines,
a JSON array (or an object holding one), CSV, TSV, Parquet and plain text (one row per paragraph).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".gz")  # .gz: .jsonl.gz, .json.gz, ...
LONG_LINE = 200  # characters: lines this long, with no blank line between them, are documents, not a paragraph
MAX_DEPTH = 20  # deeper JSON is not training data; refuse it before it costs memory or recursion
MAX_SHOWN_TEXT = 80
# Bounds checked before a value is materialised: a 17 KB Parquet file of 3M rows took +3 GB as Python rows,
# and one 20 MB JSON line +2.8 GB. A training row is text for a context window (at most ~100k tokens).
MAX_ROWS = 1_000_000
MAX_LINE_CHARS = 2_000_000
MAX_PARQUET_BYTES = 2 * 2**30  # uncompressed, as the file's metadata says
PARQUET_BATCH_ROWS = 4096


@dataclass(frozen=True)
class Problem:
    rule: str  # a stable id, e.g. "json.invalid"; the docs and tests refer to it
    where: str  # "file", "line 7", "row 3"
    message: str
    fix: str
    severity: str = "error"  # "error" blocks training; "warning" is shown and allowed

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message} {self.fix}".rstrip()


@dataclass
class Rows:
    """What was read: rows with their locations, and every problem met on the way."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    reading: str | None = None  # plain text: how it was cut into rows

    def add(self, rule: str, where: str, message: str, fix: str, severity: str = "error") -> None:
        self.problems.append(Problem(rule, where, message, fix, severity))


def read_rows(path: Path, max_rows: int | None = None) -> Rows:
    result = Rows()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        result.add(
            "file.type",
            "file",
            f"{path.name}: files ending in {suffix or '(nothing)'} are not read.",
            f"Use one of: {', '.join(SUFFIXES)}.",
        )
        return result
    data = path.read_bytes()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()  # data.jsonl.gz holds data.jsonl
        if suffix not in SUFFIXES[:-1]:
            result.add(
                "file.type",
                "file",
                f"{path.name}: a compressed {suffix or 'file'} is not read.",
                "Compress a .jsonl, .json, .csv, .tsv or .txt file (for example rows.jsonl.gz).",
            )
            return result
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            result.add("file.unreadable", "file", f"{path.name} is not a complete gzip file.", "Compress it again.")
            return result
    if suffix == ".parquet":
        return _read_parquet(data, result, max_rows)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        result.add("file.encoding", "file", f"{path.name} is UTF-16 text.", "Save it as UTF-8 and upload it again.")
        return result
    if b"\x00" in data[:8192]:
        result.add(
            "file.binary",
            "file",
            f"{path.name} is a binary file, not text.",
            "Export it as JSON Lines, CSV or Parquet and upload that.",
        )
        return result
    try:
        text = data.decode("utf-8-sig")  # -sig: a byte-order mark from Windows editors is harmless
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        result.add(
            "file.encoding",
            f"line {line}",
            "this file is not UTF-8 text.",
            "Save it as UTF-8 (most editors: Save As, encoding UTF-8).",
        )
        return result
    if not text.strip():
        result.add("file.empty", "file", f"{path.name} is empty.", "Add at least one row.")
        return result
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".tsv": _read_tsv, ".txt": _read_text}
    reader[suffix](text, result, max_rows)
    if not result.rows and not result.problems:
        result.add("file.empty", "file", f"{path.name} has no rows.", "Add at least one row.")
    return result


def _keep(result: Rows, where: str, value: Any, max_rows: int | None) -> bool:
    """Add one parsed value as a row (or a problem); False once max_rows rows are kept."""
    if max_rows is None and len(result.rows) >= MAX_ROWS:
        result.add(
            "file.too_many_rows",
            where,
            f"the file holds more than {MAX_ROWS:,} rows; at most {MAX_ROWS:,} are read.",
            f"Set data.max_rows (Use at most this many rows) to {MAX_ROWS:,} or fewer, or split the file.",
        )
        return False
    if not isinstance(value, dict):
        result.add(
            "json.not_object",
            where,
            f"expected an object with named fields, found {type(value).__name__}.",
            'Each row must look like {"field": value, ...}.',
        )
    elif _depth(value) > MAX_DEPTH:
        result.add(
            "json.too_deep",
            where,
            f"nested more than {MAX_DEPTH} levels deep.",
            "Flatten the row: training rows hold text fields and message lists.",
        )
    else:
        result.rows.append((where, value))
    return not (max_rows and len(result.rows) >= max_rows)


def _read_jsonl(text: str, result: Rows, max_rows: int | None) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            result.add(
                "json.line_too_long",
                f"line {number}",
                f"is {len(line):,} characters; a row is at most {MAX_LINE_CHARS:,} (far more than any context).",
                "Split the text into several rows, or shorten it.",
            )
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as error:
            _json_problem(result, f"line {number}", line, error)
            continue
        if not _keep(result, f"line {number}", value, max_rows):
            return


def _read_json(text: str, result: Rows, max_rows: int | None) -> None:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as error:
        _json_problem(result, "file", text, error)
        return
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError) and error.msg == "Extra data" and text.lstrip().startswith("{"):
            _read_jsonl(text, result, max_rows)  # JSON Lines saved with a .json name: read it as such
        elif text.lstrip().startswith("[") and _cut_short(text, error):
            result.add(
                "json.array_truncated",
                f"line {error.lineno}",
                "the JSON array ends before it is closed.",
                "The file was cut short: export or copy it again in full.",
            )
        else:
            _json_problem(result, "file", text, error)
        return
    if isinstance(value, dict):  # {"data": [...]} or {"train": [...]}: the one list inside
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else [value]
    if not isinstance(value, list):
        result.add("json.not_object", "file", "expected a list of rows.", "Write the file as [{...}, {...}].")
        return
    for number, item in enumerate(value, start=1):
        if not _keep(result, f"row {number}", item, max_rows):
            return


def _read_delimited(text: str, result: Rows, max_rows: int | None, delimiter: str) -> None:
    try:
        lines = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as error:
        result.add(
            "csv.invalid",
            "file",
            f"could not be read as {'CSV' if delimiter == ',' else 'TSV'}: {error}.",
            "Check quoting: a field containing the delimiter or a newline must be in double quotes.",
        )
        return
    header = [name.strip() for name in lines[0]]
    if len(set(header)) != len(header) or not all(header):
        result.add(
            "csv.header",
            "line 1",
            f"the header row has empty or repeated names: {header}.",
            "Give every column a distinct name in the first row.",
        )
        return
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            result.add(
                "csv.ragged",
                f"line {number}",
                f"has {len(cells)} fields; the header has {len(header)}.",
                "Quote fields that contain the delimiter, or fix the missing/extra fields.",
            )
            continue
        if not _keep(result, f"line {number}", dict(zip(header, cells, strict=True)), max_rows):
            return


def _read_csv(text: str, result: Rows, max_rows: int | None) -> None:
    _read_delimited(text, result, max_rows, ",")


def _read_tsv(text: str, result: Rows, max_rows: int | None) -> None:
    _read_delimited(text, result, max_rows, "\t")


def _read_text(text: str, result: Rows, max_rows: int | None) -> None:
    """Plain text for continued pre-training: one row per paragraph (blank-line separated), or one row per
    line when the file is a corpus of one document per line (no blank lines, long lines)."""
    lines = [line for line in text.splitlines()]
    filled = [line for line in lines if line.strip()]
    if len(filled) > 1 and len(filled) == len(lines) and statistics.median(map(len, filled)) >= LONG_LINE:
        result.reading = "one document per line (no blank lines between long lines)"
        for number, content in enumerate(lines, start=1):
            if not _keep(result, f"line {number}", {"text": content}, max_rows):
                return
        return
    result.reading = "one document per paragraph (blank lines separate them)"
    line, paragraph, start = 0, [], 1
    for line, content in enumerate(text.splitlines() + [""], start=1):
        if content.strip():
            start = start if paragraph else line
            paragraph.append(content)
        elif paragraph:
            if not _keep(result, f"line {start}", {"text": "\n".join(paragraph)}, max_rows):
                return
            paragraph = []


def _read_parquet(data: bytes, result: Rows, max_rows: int | None) -> Rows:
    """Rows batch by batch, after the file's metadata says how many and how big: Parquet compresses
    repeated values so well that a tiny file can hold millions of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        metadata = parquet.metadata
        wanted = min(metadata.num_rows, max_rows or metadata.num_rows)
        share = wanted / metadata.num_rows if metadata.num_rows else 0
        unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)) * share
        if max_rows is None and metadata.num_rows > MAX_ROWS:
            result.add(
                "file.too_many_rows",
                "file",
                f"holds {metadata.num_rows:,} rows; at most {MAX_ROWS:,} are read.",
                f"Set data.max_rows (Use at most this many rows) to {MAX_ROWS:,} or fewer, or split the file.",
            )
            return result
        if unpacked > MAX_PARQUET_BYTES:
            result.add(
                "file.too_large",
                "file",
                f"unpacks to {unpacked / 2**30:.1f} GB; at most {MAX_PARQUET_BYTES / 2**30:g} GB is read.",
                "Set data.max_rows to read fewer rows, or split the file.",
            )
            return result
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                if not _keep(result, f"row {number}", row, max_rows):
                    return result
    except (pa.ArrowException, OSError) as error:
        result.add(
            "file.unreadable",
            "file",
            f"not a readable Parquet file ({str(error)[:120]}).",
            "Export it again as Parquet, or as JSON Lines or CSV.",
        )
        return result
    if not result.rows and not result.problems:
        result.add("file.empty", "file", "the Parquet file has no rows.", "Add at least one row.")
    return result


def _json_problem(result: Rows, where: str, text: str, error: Exception) -> None:
    if isinstance(error, RecursionError):
        result.add("json.too_deep", where, "nested too deeply to read.", "Flatten the row.")
        return
    if where == "file" and isinstance(error, json.JSONDecodeError):
        where = f"line {error.lineno}"
    reason = str(error).split(":")[0] if isinstance(error, json.JSONDecodeError) else str(error)
    excerpt = text.strip()[:MAX_SHOWN_TEXT] + ("…" if len(text.strip()) > MAX_SHOWN_TEXT else "")
    result.add(
        "json.invalid",
        where,
        f"not valid JSON ({reason}): {excerpt!r}.",
        "Fix this line; every line must be one complete JSON object.",
    )


def _cut_short(text: str, error: ValueError) -> bool:
    """The JSON ran out before it ended (an unclosed string, or the last character reached)."""
    if not isinstance(error, json.JSONDecodeError):
        return False
    return error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity, which are not JSON and break Arrow later on
    raise ValueError(f"{name} is not a JSON value; use null or a number")


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def is_missing(value: Any) -> bool:
    """None, NaN (CSV/Parquet nulls) and blank strings all count as no value."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )
