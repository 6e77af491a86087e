"""The model's tokenizer for a data check, loaded with only what the check needs.

`AutoTokenizer` costs the import of transformers (~1 s on an idle 2-core machine, 5-10 s on a busy
one) and, through its configuration classes, of torch (~3 s and ~250 MB more). A data check only
renders rows through the chat template and counts tokens, so for a local folder (the embedded
model's cache, a downloaded model) whose tokenizer is the generic `tokenizers`-backed one, which is
the class AutoTokenizer builds for it (`tokenizer_class` in tokenizer_config.json says so), it reads
tokenizer.json with the `tokenizers` library and renders the template with jinja2 the way
transformers does (same sandbox, options and helpers; tests/test_check_speed.py compares the two).
Anything it does not cover (a Hub id, a model-specific tokenizer class, `{% generation %}` blocks,
messages with more than role and content) goes to the full tokenizer, loaded only then.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

# The class names AutoTokenizer resolves to the generic `tokenizers`-backed class itself
GENERIC_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def load_full(reference: str, revision: str | None = None, token: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(reference, revision=revision, token=token or False)


def load_for_check(reference: str, revision: str | None = None, token: str | None = None):
    """A tokenizer with the calls a check makes; without transformers or torch where the folder allows."""
    light = CheckTokenizer.from_folder(reference)
    return light if light is not None else load_full(reference, revision, token)


class CheckTokenizer:
    """`apply_chat_template` and `__call__` as a transformers fast tokenizer answers them, for plain messages."""

    def __init__(self, folder: Path, config: dict, chat_template: str | None):
        from tokenizers import Tokenizer

        self.folder = folder
        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.special_tokens = {key: _content(config[key]) for key in SPECIAL_TOKEN_KEYS if config.get(key)}
        self.chat_template = chat_template
        self._compiled = None
        self._full = None

    @classmethod
    def from_folder(cls, reference: str) -> CheckTokenizer | None:
        folder = Path(reference)
        if not (folder / "tokenizer.json").is_file() or not (folder / "tokenizer_config.json").is_file():
            return None
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if config.get("tokenizer_class") not in GENERIC_CLASSES or config.get("extra_special_tokens"):
            return None
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
        if not isinstance(template, str | None) or (template and GENERATION_TAG.search(template)):
            return None  # named templates and assistant-mask templates: the full tokenizer knows them
        return cls(folder, config, template)

    def __getattr__(self, name: str):
        """Anything else the masking and preview code asks (eos_token_id, …): transformers' own tokenizer."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full(), name)

    def full(self):
        if self._full is None:
            self._full = load_full(str(self.folder))
        return self._full

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        encoding = self.backend.encode(text, add_special_tokens=add_special_tokens)
        encoded = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask}
        if return_offsets_mapping:  # character spans of each token, as a fast tokenizer gives them
            encoded["offset_mapping"] = list(encoding.offsets)
        return encoded

    def apply_chat_template(
        self,
        conversation: list[dict],
        tokenize: bool = True,
        add_generation_prompt: bool = False,
        return_dict=False,
        tools=None,
        **options,
    ):
        plain = all(set(m) <= {"role", "content"} and isinstance(m.get("content"), str) for m in conversation)
        if not plain or tools or options or self.chat_template is None:  # tool calls, masks…: transformers' own
            return self.full().apply_chat_template(
                conversation,
                tokenize=tokenize,
                add_generation_prompt=add_generation_prompt,
                return_dict=return_dict,
                tools=tools,
                **options,
            )
        text = self._template().render(
            messages=[dict(m) for m in conversation],
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens,
        )
        if not tokenize:
            return text
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return {"input_ids": ids} if return_dict else ids

    def _template(self):
        """Compiled as transformers compiles it (utils/chat_template_utils.py, _cached_compile_jinja_template)."""
        if self._compiled is None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message):
                raise jinja2.exceptions.TemplateError(message)

            def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
                return json.dumps(
                    x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
                )

            environment = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
            )
            environment.filters["tojson"] = tojson
            environment.globals["raise_exception"] = raise_exception
            environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._compiled = environment.from_string(self.chat_template)
        return self._compiled


def _content(value) -> str:
    return value["content"] if isinstance(value, dict) else str(value)
