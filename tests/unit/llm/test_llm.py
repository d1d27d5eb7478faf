"""OpenAI-compatible chat construction, token usage, key redaction and error translation (no network)."""

from __future__ import annotations

import re

import pytest
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAuthenticationError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.messages import AIMessage, HumanMessage

from fac.tools.errors import ConfigError, TransientError
from fac.tools.llm.client import (
    LOCAL_API_KEY,
    chat_name,
    is_local_url,
    is_rejection,
    openai_chat,
    translate_error,
    usage,
)

SECRET = "sk-proj-Abcdefghijklmnop1234567890"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "MY_JUDGE_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_missing_key_for_a_remote_endpoint_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"\$MY_JUDGE_KEY is not set"):
        openai_chat("gpt-4o-mini", api_key_env="MY_JUDGE_KEY")
    with pytest.raises(ConfigError, match=re.escape("https://api.example.com/v1")):
        openai_chat("m", base_url="https://api.example.com/v1")


def test_local_server_needs_no_key_and_gets_the_settings() -> None:
    chat = openai_chat("qwen", base_url="http://localhost:8000/v1", max_tokens=77, timeout_s=12.5, max_retries=2)
    assert chat.openai_api_key.get_secret_value() == LOCAL_API_KEY
    assert (chat.model_name, chat.max_tokens, chat.request_timeout, chat.max_retries) == (
        "qwen", 77, 12.5, 2)
    assert chat.temperature == 0.0
    assert chat.openai_api_base == "http://localhost:8000/v1"
    assert chat_name(chat) == "qwen"


def test_a_non_openai_endpoint_also_gets_the_legacy_max_tokens_and_per_call_overrides_reach_both() -> None:
    local = openai_chat("smollm2", base_url="http://127.0.0.1:8011/v1", max_tokens=77)
    payload = local._get_request_payload([HumanMessage("hi")])  # type: ignore[attr-defined]
    assert (payload["max_tokens"], payload["max_completion_tokens"]) == (77, 77)
    payload = local._get_request_payload([HumanMessage("hi")], max_tokens=8)  # type: ignore[attr-defined]
    assert (payload["max_tokens"], payload["max_completion_tokens"]) == (8, 8)


def test_the_openai_api_gets_only_max_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    payload = openai_chat("gpt-4o-mini", max_tokens=77)._get_request_payload(  # type: ignore[attr-defined]
        [HumanMessage("hi")])
    assert payload["max_completion_tokens"] == 77 and "max_tokens" not in payload


def test_key_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", SECRET)
    chat = openai_chat("gpt-4o-mini", api_key_env="MY_JUDGE_KEY")
    assert chat.openai_api_key.get_secret_value() == SECRET
    assert SECRET not in repr(chat)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_tokens=0"):
        openai_chat("m", base_url="http://127.0.0.1:8080/v1", max_tokens=0)
    with pytest.raises(ConfigError, match="model name is empty"):
        openai_chat(" ", base_url="http://127.0.0.1:8080/v1")


@pytest.mark.parametrize(("url", "local"), [
    ("http://localhost:8000/v1", True), ("http://127.0.0.1:8080", True), ("http://10.1.2.3/v1", True),
    ("http://[::1]:8000/v1", True), ("http://gpu-box.local:8000/v1", True), ("localhost:8000", True),
    ("https://api.openai.com/v1", False), ("https://8.8.8.8/v1", False), (None, False),
])
def test_is_local_url(url: str | None, local: bool) -> None:
    assert is_local_url(url) is local


def test_usage_reads_usage_metadata_and_defaults_to_zero() -> None:
    message = AIMessage("hi", usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14})
    assert usage(message) == (11, 3)
    assert usage(AIMessage("hi")) == (0, 0)
    assert usage(HumanMessage("hi")) == (0, 0)


def test_translate_error_maps_provider_errors_to_fac_errors() -> None:
    auth = translate_error(ModelAuthenticationError(f"bad key {SECRET}"), "gpt-4o-mini")
    assert isinstance(auth, ConfigError) and SECRET not in str(auth)
    assert isinstance(translate_error(ModelNotFoundError("no such model"), "m"), ConfigError)
    assert isinstance(translate_error(ModelRateLimitError("429"), "m"), TransientError)
    assert isinstance(translate_error(ModelTimeoutError("slow"), "m"), TransientError)
    invalid = ModelInvalidRequestError("bad")
    assert translate_error(invalid, "m") is invalid
    html = ValueError("Unexpected response type from OpenAI-compatible endpoint. Expected a dict or "
                      "openai.BaseModel, got str: '<html><body>Welcome'")
    assert isinstance(translate_error(html, "m"), TransientError)  # an endpoint fault: exit 3
    other = ValueError("a bug of ours")
    assert translate_error(other, "m") is other


def test_rejections_are_per_request_errors() -> None:
    assert is_rejection(ModelInvalidRequestError("content filter"))
    assert is_rejection(ContextOverflowError("too long"))
    assert not is_rejection(ModelRateLimitError("429"))
    assert not is_rejection(ValueError("x"))


def test_once_the_run_is_stopping_no_further_request_is_sent() -> None:
    from fakes import ScriptedChat

    from fac.tools.llm.calls import STOPPING, call_chat

    chat = ScriptedChat(script=["a reply"])
    conversations = [[HumanMessage(f"prompt {i}")] for i in range(3)]
    assert [r.text for r in call_chat(chat, conversations, [1, 2, 3], concurrency=1, model="m")] == ["a reply"] * 3
    STOPPING.set()
    try:
        stopped = call_chat(chat, conversations, [1, 2, 3], concurrency=1, model="m")
    finally:
        STOPPING.clear()
    assert all(isinstance(r, TransientError) and "stopping" in str(r) for r in stopped)
    assert len(chat.prompts) == 3  # only the first batch reached the model
