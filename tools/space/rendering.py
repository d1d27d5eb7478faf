"""Render a sample as the model reads it, and mark where its own text (the scored region) lies."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from fac.tools.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

RenderMode = Literal["auto", "chat", "raw"]
Message = Mapping[str, str]
Sample = str | Sequence[Message]
_SENTINEL = "\u2063FAC-SENTINEL\u2063"


def sample_text(sample: Sample) -> str:
    """A sample as one text: a conversation's turns joined by blank lines."""
    return sample if isinstance(sample, str) else "\n\n".join(m["content"] for m in sample)


@dataclass(frozen=True)
class Rendered:
    """The full string the model reads; [content_start, content_end) is the scored region."""

    text: str
    content_start: int
    content_end: int

    @property
    def content(self) -> str:
        return self.text[self.content_start : self.content_end]


class Renderer:
    """Chat-template or raw rendering; the template prefix is measured from the tokenizer's own template."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mode: RenderMode = "auto") -> None:
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if mode == "chat" and not has_template:
            raise ConfigError("render mode 'chat' needs a tokenizer with a chat template; this one has none")
        self.tokenizer = tokenizer
        self.mode: Literal["chat", "raw"] = "chat" if mode == "chat" or (mode == "auto" and has_template) else "raw"
        if self.mode == "chat":
            shell = self._apply([{"role": "user", "content": _SENTINEL}])
            at = shell.index(_SENTINEL)
            self.prefix, self.suffix = shell[:at], shell[at + len(_SENTINEL) :]
        else:
            self.prefix, self.suffix = tokenizer.bos_token or "", ""

    @property
    def prefix_tokens(self) -> int:
        """Tokens the template puts before a single user text (never scored)."""
        return len(self.tokenizer(self.prefix, add_special_tokens=False)["input_ids"])

    def _apply(self, messages: Sequence[Message]) -> str:
        conversation = [dict(m) for m in messages]
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        assert isinstance(text, str)
        return text

    def render(self, sample: Sample) -> Rendered:
        """A text becomes one user turn (chat) or BOS + text (raw); a conversation uses the template."""
        if isinstance(sample, str):
            return Rendered(self.prefix + sample + self.suffix, len(self.prefix), len(self.prefix) + len(sample))
        messages = list(sample)
        if self.mode == "raw":
            body = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            return Rendered(self.prefix + body, len(self.prefix), len(self.prefix) + len(body))
        text = self._apply(messages)
        system = [m for m in messages if m.get("role") == "system"]
        turns = [m for m in messages if m.get("role") != "system"] or messages
        after = text.find(system[0]["content"]) + len(system[0]["content"]) if system and turns is not messages else 0
        start = text.find(turns[0]["content"], after)
        end_at = text.rfind(turns[-1]["content"])
        if start < 0 or end_at < 0:
            raise InputError("the chat template dropped a message's text; cannot locate the scored region")
        return Rendered(text, start, end_at + len(turns[-1]["content"]))
