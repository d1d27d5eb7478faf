"""A cheap check of an OpenAI-compatible endpoint before any model loads: the key is there, the server
answers GET /models within a short timeout (a busy one gets a longer second chance), and it serves the model
asked for.

A missing or refused key and an unknown model are set-up errors (ConfigError, exit 2); a server that does
not answer, or answers with something that is no model list, is an endpoint fault (TransientError, exit 3).
"""

from __future__ import annotations

import itertools
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from fac.tools.errors import ConfigError, TransientError
from fac.tools.llm.client import effective_base_url, resolve_key

logger = logging.getLogger(__name__)

OPENAI_URL = "https://api.openai.com/v1"
PREFLIGHT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    """One endpoint role's settings as the user gave them (flags --ROLE-model/--ROLE-base-url/--ROLE-key-env)."""

    role: str  # "judge" or "generator": names the flags in messages
    model: str
    base_url: str | None = None
    key_env: str = "OPENAI_API_KEY"


def preflight(endpoint: Endpoint, timeout_s: float = PREFLIGHT_TIMEOUT_S, patience_s: float | None = None) -> list[str]:
    """Check the key, reachability and the model name; return the served model ids (empty if unlisted).

    A server that accepts the connection but does not answer within timeout_s is busy, not down (a single-slot
    server mid-generation): it gets one more try of patience_s when that is longer. A refused connection fails
    at once."""
    flag = f"--{endpoint.role}"
    if not endpoint.model.strip():
        raise ConfigError(f"{flag}-model is empty; pass the name the endpoint serves")
    url = effective_base_url(endpoint.base_url) or OPENAI_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{flag}-base-url {url!r}: expected an http:// or https:// URL")
    key = resolve_key(endpoint.key_env, None if url == OPENAI_URL else url, f"{flag}-key-env")
    request = urllib.request.Request(url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
    waits = [timeout_s] + ([patience_s] if patience_s is not None and patience_s > timeout_s else [])
    try:
        body = _get(request, waits, endpoint.role)
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise ConfigError(f"{endpoint.role} endpoint {url} refused the key in ${endpoint.key_env} "
                              f"(HTTP {err.code}); check {flag}-key-env") from None
        if err.code in (404, 405, 501):  # a server without a model listing: the first request will tell
            logger.info("%s endpoint %s lists no models (HTTP %d); model name unchecked", endpoint.role, url,
                        err.code)
            return []
        raise TransientError(f"{endpoint.role} endpoint {url} answered GET /models with HTTP {err.code}; "
                             f"check {flag}-base-url or the server") from None
    except TimeoutError:
        raise TransientError(f"{endpoint.role} endpoint {url} accepted the connection but did not answer GET "
                             f"/models within {waits[-1]:g} s (busy or stuck); check the server or raise "
                             "--timeout-s") from None
    except (urllib.error.URLError, OSError) as err:
        why = getattr(err, "reason", None) or err
        raise TransientError(f"{endpoint.role} endpoint {url} is unreachable ({why}); start the server or fix "
                             f"{flag}-base-url") from None
    served = _model_ids(body)
    if served is None:
        shown = body[:40].decode("utf-8", "replace")
        raise TransientError(f"{endpoint.role} endpoint {url} answered GET /models with no OpenAI model list "
                             f"({shown!r}); check {flag}-base-url (it usually ends in /v1)")
    if served and endpoint.model not in served:
        listed = ", ".join(served[:10]) + (" …" if len(served) > 10 else "")
        raise ConfigError(f"{flag}-model {endpoint.model!r} is not served at {url}; it serves: {listed}")
    return served


def _get(request: urllib.request.Request, waits: list[float], role: str) -> bytes:
    """The reply's body; a read timeout is retried with the next, longer wait (TimeoutError after the last)."""
    for wait, longer in itertools.pairwise(waits):
        try:
            return _read(request, wait)
        except TimeoutError:
            logger.warning("%s endpoint did not answer GET /models within %g s (busy?); waiting up to %g s",
                           role, wait, longer)
    return _read(request, waits[-1])


def _read(request: urllib.request.Request, wait: float) -> bytes:
    """One GET; a timeout, however urllib wraps it, is a TimeoutError."""
    try:
        with urllib.request.urlopen(request, timeout=wait) as reply:
            body: bytes = reply.read(1_000_000)
            return body
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            raise TimeoutError from None
        raise


def _model_ids(body: bytes) -> list[str] | None:
    """The ids of an OpenAI /models reply ({"data": [{"id": ...}]}), None for anything else."""
    try:
        listing = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        return None
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
