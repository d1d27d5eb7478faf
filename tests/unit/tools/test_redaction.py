"""One redaction rule: logs, traces and error lines hide the same secrets."""

from __future__ import annotations

import logging

import pytest
from langchain_core.exceptions import ModelAuthenticationError

from fac.tools.llm.client import first_line
from fac.tools.redaction import RedactFilter, env_secrets, redact

SECRET = "sk-proj-Abcdefghijklmnop1234567890"


def test_redact_hides_keys_bearer_tokens_and_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_API_KEY", "plainsecretvalue42")
    text = redact(f"key {SECRET}; Authorization: Bearer abcdefghijkl123; api_key=zzzzzzzzzz; plainsecretvalue42")
    assert SECRET not in text and "abcdefghijkl123" not in text and "zzzzzzzzzz" not in text
    assert "plainsecretvalue42" not in text and "sk-pro***" in text
    assert redact("the cat sat on the mat for 1234567890 seconds") == "the cat sat on the mat for 1234567890 seconds"
    assert "hunter2hunter2" not in redact("pw hunter2hunter2", secrets=["hunter2hunter2"])


@pytest.mark.parametrize("name", ["DB_PASSWORD", "HF_TOKEN", "SERVICE_SECRET", "OTHER_KEY", "my_api_key"])
def test_every_secret_suffix_is_hidden(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "correct-horse-battery")
    assert "correct-horse-battery" in env_secrets()
    assert redact("connect with correct-horse-battery now") == "connect with *** now"


def test_short_values_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_TOKEN", "abc")
    assert redact("abc def") == "abc def"


def test_error_lines_use_the_same_rule_as_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_PASSWORD", "s3cret-pass-word")
    err = ModelAuthenticationError("denied for s3cret-pass-word")
    assert "s3cret-pass-word" not in first_line(err)


def test_log_filter_redacts_messages_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_PASSWORD", "open-sesame-123")
    record = logging.LogRecord("fac", logging.INFO, __file__, 1, "login %s", ("open-sesame-123",), None)
    assert RedactFilter().filter(record)
    assert record.getMessage() == "login ***"
