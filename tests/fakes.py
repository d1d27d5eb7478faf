"""Fakes shared by the graph and trace tests: a scripted chat model and a sample store that crashes once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from fac.tools.text.store import SampleStore

USAGE = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}


class ScriptedChat(BaseChatModel):
    """Replies from a script (the last entry repeats); an Exception entry is raised; a callable entry is called
    with the call number and its result replied. Every prompt is kept."""

    script: list[Any]
    prompts: list[str] = []  # noqa: RUF012  (pydantic copies field defaults per instance)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.prompts.append("\n".join(m.text for m in messages))
        item = self.script[min(len(self.prompts) - 1, len(self.script) - 1)]
        if callable(item) and not isinstance(item, type):
            item = item(len(self.prompts))
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=item, usage_metadata=USAGE))])


class FlakyStore:
    """A SampleStore whose add() fails once, on call number `fail_on` (a crash between journal and index)."""

    def __init__(self, inner: SampleStore, fail_on: int) -> None:
        self.inner, self.fail_on, self.adds = inner, fail_on, 0

    def add(self, ids: Sequence[str], texts: Sequence[str], metadatas: Any = None) -> None:
        self.adds += 1
        if self.adds == self.fail_on:
            raise RuntimeError("injected crash")
        self.inner.add(ids, texts, metadatas)

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        return self.inner.nearest(texts)

    def count(self) -> int:
        return self.inner.count()
