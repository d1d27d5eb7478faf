"""Errors fac shows to users as one line (exit code 2), and errors its retry logic handles."""

from __future__ import annotations


class FacError(Exception):
    """A problem with the user's input or set-up: shown as one line, exit code 2, no traceback."""


class ConfigError(FacError, ValueError):
    """A model, SAE, option or run configuration that cannot work as given."""


class InputError(FacError, ValueError):
    """A data file, line or field that is missing or malformed."""


class ParseError(FacError, ValueError):
    """An LLM reply or stored record that does not parse."""


class TransientError(RuntimeError):
    """A fault that may pass on retry: endpoint down, rate limit, timeout."""
