"""Generator node: drafts for each planned feature (METHOD §4).

Prompts come from agents/prompting.py, replies are read by agents/replies.py, and the calls with their
fault sorting run in tools/llm/calls.py. Transient faults of every request end the step for a resume;
those of some requests leave their features to the next round.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config
from langgraph.runtime import Runtime

from fac.agents.prompting import Request, build_requests
from fac.agents.replies import parse_reply
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import Draft, GenState
from fac.tools.errors import TransientError
from fac.tools.llm.calls import Reply, call_chat, reply_text
from fac.tools.llm.client import usage

logger = logging.getLogger(__name__)


def call_generator(writer: BaseChatModel, requests: Sequence[Request], cfg: RunConfig,
                   config: RunnableConfig | None = None) -> list[Reply]:
    """Run the requests with at most `concurrency` in flight; a reply, a TransientError, or None (refused)."""
    return call_chat(writer, [r.messages for r in requests], [r.seed for r in requests],
                     concurrency=cfg.concurrency, model=cfg.generator_model, config=config)


def _step_config() -> RunnableConfig | None:
    """The running step's config (its callbacks see every generator call); None outside a graph."""
    try:
        return get_config()
    except RuntimeError:  # a node called directly (tests, notebooks)
        return None


def generate(state: GenState, runtime: Runtime[Deps]) -> dict[str, Any]:
    """Draft candidates for the planned features; transient faults of every request end the step for a resume."""
    deps = runtime.context
    cfg = deps.config
    requests = build_requests(state, deps)
    results = call_generator(deps.writer, requests, cfg, _step_config())
    failures = [r for r in results if isinstance(r, TransientError)]
    if failures and len(failures) == len(results):
        raise TransientError(f"all {len(results)} generator requests failed: {failures[0]}")
    if failures:
        logger.warning("%d of %d generator requests failed after retries; their features wait for the next round",
                       len(failures), len(results))
    drafts = []
    for request, result in zip(requests, results, strict=True):
        if isinstance(result, TransientError):
            continue
        reply = "" if result is None else reply_text(result)
        n_in, n_out = usage(result) if result is not None else (0, 0)
        if result is not None and n_in + n_out == 0:  # the server reported no usage: estimate (~4 chars a token)
            n_in, n_out = sum(len(m.text) for m in request.messages) // 4, len(reply) // 4
        parsed = parse_reply(reply, cfg.sample_format)
        text, fields = parsed if parsed else ("", {})
        drafts.append(Draft(feature=request.feature, kind=request.kind, text=text, fields=fields,
                            prompt_hash=request.prompt_hash, tokens=n_in + n_out, raw="" if parsed else reply[:300]))
        logger.debug("draft for feature %d (%s): %r", request.feature, request.kind, reply)
    attempts = dict(state.attempts)
    for feature, n in Counter(d.feature for d in drafts).items():
        attempts[feature] = attempts.get(feature, 0) + n
    return {"drafts": tuple(drafts), "attempts": attempts, "tokens_used": sum(d.tokens for d in drafts),
            "drafts_made": len(drafts)}
