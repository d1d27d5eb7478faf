"""OpenAI-compatible chat models (OpenAI, vLLM, llama.cpp, any /v1/chat/completions server), token usage,
and translation of provider errors into fac's errors.

Retries: transient faults (HTTP 408/409/429/5xx, connection errors, timeouts) are retried by the
OpenAI client itself, `max_retries` times with exponential back-off. What still fails afterwards
reaches fac as langchain-core's provider-neutral `ModelError` subclasses; `translate_error` maps
them, and a reply that is no chat completion at all (an HTML page served with HTTP 200), to
TransientError (an endpoint fault: exit 3), ConfigError (key, permission, unknown model) or leaves them
as request rejections (`is_rejection`: invalid request, context overflow, refusal) for the caller to
record per item.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAuthenticationError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRefusalError,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import SecretStr

from fac.tools.errors import ConfigError, TransientError
from fac.tools.redaction import redact

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

logger = logging.getLogger(__name__)

_FOREIGN_REPLY = "Unexpected response type from OpenAI-compatible endpoint"  # langchain-openai, on a non-JSON body
LOCAL_API_KEY = "EMPTY"  # vLLM / llama.cpp servers accept any key unless started with --api-key
_BASE_URL_ENVS = ("OPENAI_BASE_URL", "OPENAI_API_BASE")


def is_local_url(base_url: str | None) -> bool:
    """True for a server on this machine or a private network (no key needed: local vLLM / llama.cpp)."""
    if not base_url:
        return False
    host = urlparse(base_url if "//" in base_url else f"//{base_url}").hostname or ""
    if host in {"localhost", "host.docker.internal"} or host.endswith((".local", ".localhost", ".internal")):
        return True
    try:
        ip = ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


def effective_base_url(base_url: str | None) -> str | None:
    """The endpoint a client talks to: `base_url`, else $OPENAI_BASE_URL / $OPENAI_API_BASE, else None (OpenAI)."""
    return base_url or next((os.environ[e] for e in _BASE_URL_ENVS if os.environ.get(e)), None)


def resolve_key(api_key_env: str, effective_url: str | None, flag: str = "the key-env option") -> str:
    """The API key from $`api_key_env`; a local server without one gets the placeholder, anything else fails
    (`flag` names the option that picks the variable)."""
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if not is_local_url(effective_url):
        where = effective_url or "the OpenAI API"
        raise ConfigError(f"${api_key_env} is not set but {where} needs an API key: export {api_key_env}=..., "
                          f"name another variable with {flag}, or use a local server/model")
    return LOCAL_API_KEY


def openai_chat(
    model: str,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    temperature: float = 0.0,
    max_tokens: int = 512,
    timeout_s: float = 60.0,
    max_retries: int = 4,
    seed: int | None = None,
) -> BaseChatModel:
    """A ChatOpenAI for `model` at `base_url` (None: OpenAI, or $OPENAI_BASE_URL), key from $`api_key_env`.

    A missing key is an error unless the server is local, which gets the placeholder key "EMPTY".
    The client retries 429/5xx/timeouts `max_retries` times with back-off before giving up.
    """
    from langchain_openai import ChatOpenAI  # ~1 s import; only when a remote judge is used

    if not model.strip():
        raise ConfigError("judge model name is empty; pass the name the endpoint serves (e.g. gpt-4o-mini)")
    if max_tokens < 1 or timeout_s <= 0 or max_retries < 0:
        raise ConfigError(f"max_tokens={max_tokens} must be >= 1, timeout_s={timeout_s} > 0, "
                          f"max_retries={max_retries} >= 0")
    effective_url = effective_base_url(base_url)
    key = resolve_key(api_key_env, effective_url)
    logger.debug("chat model %s at %s (key from %s)", model, effective_url or "api.openai.com",
                 api_key_env if key != LOCAL_API_KEY else "placeholder")
    is_openai = effective_url is None or urlparse(effective_url).hostname == "api.openai.com"
    return (ChatOpenAI if is_openai else _endpoint_chat_class())(
        model=model,
        base_url=base_url,
        api_key=SecretStr(key),
        temperature=temperature,
        max_completion_tokens=max_tokens,  # alias of ChatOpenAI.max_tokens
        timeout=timeout_s,
        max_retries=max_retries,
        seed=seed,
    )


@cache
def _endpoint_chat_class() -> type[ChatOpenAI]:
    """ChatOpenAI that also sends the legacy `max_tokens` beside `max_completion_tokens`.

    langchain-openai sends only `max_completion_tokens`; llama-cpp-python's server ignores it and
    generated up to its context limit (3,801 tokens for one judge call, measured). vLLM and OpenAI
    read either; the same value is sent in both, so per-call overrides keep working.
    """
    from langchain_openai import ChatOpenAI

    class EndpointChatOpenAI(ChatOpenAI):
        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
            payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
            if payload.get("max_completion_tokens") is not None:
                payload["max_tokens"] = payload["max_completion_tokens"]
            return payload

    return EndpointChatOpenAI


def chat_name(chat: BaseChatModel) -> str:
    """A name for `chat` in cache keys and reports: its model name or id, else its class name."""
    name = getattr(chat, "model_name", None) or getattr(chat, "model_id", None) or getattr(chat, "model", None)
    return name if isinstance(name, str) and name.strip() else type(chat).__name__


def usage(message: BaseMessage) -> tuple[int, int]:
    """(input tokens, output tokens) from the message's usage_metadata; 0 when the server sent none."""
    meta = getattr(message, "usage_metadata", None) or {}
    return int(meta.get("input_tokens", 0) or 0), int(meta.get("output_tokens", 0) or 0)


def is_rejection(err: BaseException) -> bool:
    """An error about this one request (invalid, too long, refused): recording it per item is right."""
    return isinstance(err, ModelInvalidRequestError | ContextOverflowError | ModelRefusalError)


def first_line(err: BaseException) -> str:
    """The error's message on one line, redacted, at most 300 characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return redact(text)[:300]


def translate_error(err: Exception, model: str) -> Exception:
    """The fac error to raise for a chat model failure that survived the client's retries (`err` itself when
    it is none of fac's business: the caller records or re-raises it)."""
    detail = first_line(err)
    translated: Exception = err
    if isinstance(err, ValueError) and _FOREIGN_REPLY in detail:  # e.g. HTTP 200 with an HTML page
        body = detail.split("got ", 1)[-1][:120]
        translated = TransientError(f"the endpoint for {model!r} answered with something that is not an OpenAI "
                                    f"chat completion ({body}); check the base URL (usually ending in /v1)")
    elif isinstance(err, ModelAuthenticationError | ModelPermissionDeniedError):
        translated = ConfigError(f"the endpoint refused the key for {model!r} ({detail}); check the key variable")
    elif isinstance(err, ModelNotFoundError):
        translated = ConfigError(f"the endpoint does not serve model {model!r} ({detail}); check the model name")
    elif isinstance(err, ModelError) and err.is_retryable:
        translated = TransientError(f"{type(err).__name__} from {model!r} after the client's retries ({detail}); "
                                    "finished calls are cached, so rerunning resumes")
    return translated
