"""Calling a chat model for many prompts at once, and sorting what comes back (reply, retry later, refused).

Endpoints get at most `concurrency` requests in flight, each with its own sampling seed; the in-process
BatchedLocalChat decodes its prompts in padded batches instead. A fault that survived the client's
retries becomes a TransientError (endpoint down, 429, 5xx, timeout: the caller stops for a resume), a
ConfigError is raised (key, unknown model), a rejection of one request becomes None (recorded per item),
anything else is raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence

from langchain_core.exceptions import ModelError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_executor_for_config

from fac.tools.errors import ConfigError, TransientError
from fac.tools.llm.client import is_rejection, translate_error
from fac.tools.llm.local_writer import BatchedLocalChat

logger = logging.getLogger(__name__)

_TRANSIENT_NAMES = frozenset({"APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError",
                              "ConnectError", "ReadTimeout", "ConnectTimeout"})
Reply = BaseMessage | TransientError | None
STOPPING = threading.Event()
"""Set when the run was asked to stop (a signal): requests not yet sent are skipped, so the step in flight ends
after the few already at the endpoint instead of sending the rest of its batch."""


def messages_hash(messages: Sequence[BaseMessage]) -> str:
    """A short stable hash of a conversation (roles and texts): the prompt's identity in traces and sample ids."""
    payload = json.dumps([[m.type, m.text] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def reply_text(reply: BaseMessage) -> str:
    """The text of a chat reply (content blocks joined when the provider sent a list)."""
    return reply.text if isinstance(reply.text, str) else str(reply.content)


def transient_fault(err: BaseException, model: str) -> TransientError | None:
    """The TransientError for a fault worth a later retry (endpoint down, 429, 5xx, timeout), else None.

    Raises the ConfigError a fault means when no retry can help (a refused key, an unknown model)."""
    if isinstance(err, TransientError):
        return err
    if isinstance(err, ModelError | ValueError):  # ValueError: a reply that is no chat completion (HTML page)
        translated = translate_error(err, model)
        if isinstance(translated, ConfigError) and translated is not err:
            raise translated from err
        return translated if isinstance(translated, TransientError) else None
    if isinstance(err, TimeoutError | ConnectionError):
        return TransientError(f"{type(err).__name__} from the generator ({err})")
    name = type(err).__name__
    if name in _TRANSIENT_NAMES:
        return TransientError(f"{name} from the generator after retries ({err})")
    return None


def call_chat(writer: BaseChatModel, conversations: Sequence[list[BaseMessage]], seeds: Sequence[int], *,
              concurrency: int, model: str, config: RunnableConfig | None = None) -> list[Reply]:
    """One result per conversation, in order: a reply, a TransientError, or None (the request was refused)."""
    if not conversations:
        return []
    run_config: RunnableConfig = {**(config or {}), "max_concurrency": concurrency, "run_name": "generator"}

    def call(i: int) -> BaseMessage | Exception:
        if STOPPING.is_set():
            return TransientError("the run is stopping: request not sent")
        try:
            return writer.invoke(conversations[i], config=run_config, seed=seeds[i])
        except Exception as err:  # sorted below: transient, refused, or raised
            return err

    if isinstance(writer, BatchedLocalChat):  # one padded forward pass per chunk, seeded per chunk
        replies = writer.batch(list(conversations), run_config, return_exceptions=True, seeds=list(seeds))
    else:  # endpoints: at most `concurrency` requests in flight, each with its own seed
        with get_executor_for_config(run_config) as executor:
            replies = list(executor.map(call, range(len(conversations))))
    out: list[Reply] = []
    for reply in replies:
        if isinstance(reply, BaseMessage):
            out.append(reply)
            continue
        transient = transient_fault(reply, model)
        if transient is not None:
            out.append(transient)
        elif isinstance(reply, ModelError) and is_rejection(reply):
            logger.warning("the generator refused a request: %s", reply)
            out.append(None)
        else:
            raise reply
    return out
