"""One redaction rule for everything fac writes or prints: logs, run.log, traces, reports and error lines.

Hidden: key-shaped strings (OpenAI-style `sk-...`, bearer tokens, `api_key=...`), the values of environment
variables whose names end in _KEY, _TOKEN, _SECRET or _PASSWORD, and any value passed in (the value of the
variable a `--api-key-env` names). Values shorter than 8 characters are left alone (they would hide words).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
MIN_SECRET_CHARS = 8
MASK = "***"
_KEY_PATTERNS = (
    re.compile(r"\b(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-]{8,}"),  # OpenAI-style keys
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|token|password)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{8,}"),
)


def env_secrets(names: Iterable[str] = ()) -> frozenset[str]:
    """Values of the variables whose names end in a secret suffix, and of the variables `names` (e.g. a key env)."""
    wanted = set(names)
    return frozenset(v for k, v in os.environ.items()
                     if (k.upper().endswith(SECRET_SUFFIXES) or k in wanted) and len(v.strip()) >= MIN_SECRET_CHARS)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with key-shaped strings and secret values (the environment's and `secrets`) replaced by ***."""
    values = {v for v in secrets if len(v.strip()) >= MIN_SECRET_CHARS} | env_secrets()
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(rf"\1{MASK}", text)
    return text


class RedactFilter(logging.Filter):
    """A handler filter that redacts each record's message (the record is changed for every handler)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True
