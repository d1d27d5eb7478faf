"""Generator: drafts for each planned feature with the paper's prompt shapes (METHOD §4).

A feature's first round uses the draft prompt (its explanation, evidence spans, few-shot seed examples);
later rounds use the contrastive prompt: the verifier's best draft as the Good example (or the feature's
top anchor span when no draft fired it, as in the paper), its worst as the Bad one, their scores and
the spans that fired, and the last rejection reason. Replies are parsed into the task's output format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.exceptions import ModelError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_executor_for_config
from langgraph.runtime import Runtime

from fac.graph.config import OutputFormat, RunConfig
from fac.graph.context import Deps
from fac.graph.state import Draft, DraftKind, GenState, Verdict
from fac.prompts import render
from fac.tools.catalog.records import FeatureRecord
from fac.tools.errors import ConfigError, TransientError
from fac.tools.llm.client import is_rejection, translate_error, usage
from fac.tools.llm.local_writer import BatchedLocalChat
from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)

SPAN_WORDS = 12  # evidence spans are cut to their last words (the paper: last 10 tokens)
EXAMPLE_CHARS = 300
MAX_SPANS = 5
STRONG_SHARE = 0.5  # keep the Good span verbatim when it scores >= this share of the feature's top anchor score
_PREAMBLE = re.compile(r"^\s*(?:(?:sure|okay|ok|certainly|of course|here(?:'s| is| are))\b[^\n]*|[^\n]{0,60}:)[ \t]*\n",
                       re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_LABEL = re.compile(r"^\s*(?:(?:the|my|a|here(?:'s| is)(?: the| a| my)?)\s+)?(?:(?:new|final|good|best)\s+)?"
                    r"(?:example|text|query|user query|user|message|sample|output|tweet)\s*\d*"
                    r"(?:\s+(?:is|would be))?\s*:\s*", re.I)
_NEXT_ITEM = re.compile(r"\n\s*\n|\n\s*(?:[-*•]|\d+[.)])\s"
                        r"|\n\s*(?:new\s+)?(?:example|text|query|sample|note)\s*\d*\s*:"
                        r"|\n\s*(?:the\s+)?(?:part that scored|last attempt|(?:good|bad|best|worst) example|score\b)",
                        re.I)
# The contrastive prompt's own scaffolding: a draft that still holds it copied the prompt, not wrote a sample.
SCAFFOLD = re.compile(r"part that scored|last attempt was rejected|(?:good|bad) example|nothing in it scored"
                      r"|\(score \d", re.I)
_SECTION = {
    "instruction": re.compile(r"instruction\s*:\s*(?P<instruction>.+?)\s*response\s*:\s*(?P<response>.+)", re.I | re.S),
    "pair": re.compile(r"prompt\s*:\s*(?P<prompt>.+?)\s*chosen\s*:\s*(?P<chosen>.+?)\s*rejected\s*:\s*(?P<rejected>.+)",
                       re.I | re.S),
}


@dataclass(frozen=True)
class Request:
    """One generator call: its target, the prompt shape, the messages and their hash."""

    feature: int
    kind: DraftKind
    messages: list[BaseMessage]
    prompt_hash: str
    seed: int = 0  # sampling seed: identical prompts still get different drafts, reproducibly


def sample_text(sample: Sample) -> str:
    """A sample as one text: a conversation's turns joined by blank lines."""
    return sample if isinstance(sample, str) else "\n\n".join(m["content"] for m in sample)


def prompt_hash(messages: Sequence[BaseMessage]) -> str:
    payload = json.dumps([[m.type, m.text] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def short_span(span: str, words: int = SPAN_WORDS) -> str:
    parts = span.split()
    return " ".join(parts[-words:])


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def evidence_spans(record: FeatureRecord | None) -> list[str]:
    if record is None:
        return []
    spans: list[str] = []
    for ev in record.evidence:
        span = short_span(ev.span)
        if span and span not in spans:
            spans.append(span)
    return spans[:MAX_SPANS]


def fewshot(seed: Sequence[Sample], n: int, key: str) -> list[str]:
    """`n` seed examples chosen by a deterministic key (feature, round, draft)."""
    if n == 0 or not seed:
        return []
    picked = random.Random(key).sample(range(len(seed)), min(n, len(seed)))
    return [_clip(sample_text(seed[i])) for i in picked]


def good_and_bad(feature: int, state: GenState, record: FeatureRecord | None,
                 cfg: RunConfig) -> tuple[Verdict, Verdict | None]:
    """The paper's contrastive pair: best draft if it fired the target (else the top anchor span), worst draft."""
    best, worst = state.best.get(feature), state.worst.get(feature)
    good = best
    if (best is None or best.score <= cfg.delta_accept) and record is not None and record.evidence:
        top = record.evidence[0]
        good = Verdict(text=_clip(top.sample), score=top.score, span=short_span(top.span), reason="anchor example")
    if good is None:  # no draft and no evidence: nothing to contrast
        good = Verdict(text=best.text if best else "", score=0.0, span="", reason="none")
    bad = worst if worst is not None and worst.text != good.text else None
    return good, bad


def keep_verbatim(good: Verdict, record: FeatureRecord | None) -> bool:
    """The paper keeps the Good span verbatim when it scored high (> 4 on its scale); ours is relative."""
    top = max((ev.score for ev in record.evidence), default=0.0) if record else 0.0
    return bool(good.span) and top > 0 and good.score >= STRONG_SHARE * top


def build_requests(state: GenState, deps: Deps) -> list[Request]:
    """`drafts_per_feature` requests per planned feature: first drafts, or contrastive retries."""
    cfg = deps.config
    records = {r.feature: r for r in deps.catalog.records}
    system = SystemMessage(render("generator.system", task_summary=deps.task_summary or deps.config.task))
    format_rules = render("generator.format", output_format=cfg.sample_format).strip()
    requests = []
    for feature in state.plan:
        record = records.get(feature)
        explanation = (record.explanation or "") if record else ""
        for i in range(cfg.drafts_per_feature):
            if feature in state.best or feature in state.feedback:
                good, bad = good_and_bad(feature, state, record, cfg)
                user = render("generator.contrastive", explanation=explanation, good=good.model_dump(),
                              bad=bad.model_dump() if bad else None, keep_verbatim=keep_verbatim(good, record),
                              feedback=state.feedback.get(feature, ""), format_rules=format_rules)
                kind: DraftKind = "contrastive"
            else:
                examples = fewshot(deps.seed, cfg.fewshot, f"{cfg.random_seed}:{feature}:{state.round}:{i}")
                user = render("generator.draft", explanation=explanation, spans=evidence_spans(record),
                              examples=examples, format_rules=format_rules)
                kind = "draft"
            messages: list[BaseMessage] = [system, HumanMessage(user.strip())]
            digest = prompt_hash(messages)
            seed = int(hashlib.sha256(f"{cfg.random_seed}:{digest}:{state.round}:{i}".encode()).hexdigest()[:8], 16)
            requests.append(Request(feature, kind, messages, digest, seed))
    return requests


def _unquote(text: str) -> str:
    """A text that opens with a quote: what the quotes enclose."""
    if text[:1] in ('"', "“"):
        end = text.find('"' if text[0] == '"' else "”", 1)
        return (text[1:end] if end > 0 else text[1:]).strip()
    return text


def parse_reply(reply: str, output_format: OutputFormat) -> tuple[str, dict[str, str]] | None:
    """The sample in a reply as (text, format fields), or None when it holds no usable sample."""
    text = _PREAMBLE.sub("", reply.strip(), count=1).strip()
    if output_format in _SECTION:
        match = _SECTION[output_format].search(text)
        if match is None:
            return None
        fields = {k: v.strip().strip('"').strip() for k, v in match.groupdict().items()}
        if not all(fields.values()):
            return None
        return "\n\n".join(fields.values()), fields
    text = _LABEL.sub("", _BULLET.sub("", text, count=1), count=1)
    if output_format != "ab":
        cut = _NEXT_ITEM.search(text)
        text = text[: cut.start()] if cut and cut.start() > 0 else text
    text = _unquote(_BULLET.sub("", text.strip(), count=1).strip())
    if output_format == "ab" and not ("(A)" in text and "(B)" in text):
        return None
    return (text, {}) if text else None


def _reply_text(reply: BaseMessage) -> str:
    return reply.text if isinstance(reply.text, str) else str(reply.content)


def _transient(err: BaseException, model: str) -> TransientError | None:
    """The TransientError for a fault worth a later retry (endpoint down, 429, 5xx, timeout), else None."""
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
    if name in {"APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError", "ConnectError",
                "ReadTimeout", "ConnectTimeout"}:
        return TransientError(f"{name} from the generator after retries ({err})")
    return None


def call_generator(writer: BaseChatModel, requests: Sequence[Request], cfg: RunConfig,
                   config: RunnableConfig | None = None) -> list[BaseMessage | TransientError | None]:
    """Run the requests with at most `concurrency` in flight; a reply, a TransientError, or None (refused)."""
    if not requests:
        return []
    run_config: RunnableConfig = {**(config or {}), "max_concurrency": cfg.concurrency, "run_name": "generator"}

    def call(request: Request) -> BaseMessage | Exception:
        try:
            return writer.invoke(request.messages, config=run_config, seed=request.seed)
        except Exception as err:  # sorted below: transient, refused, or raised
            return err

    if isinstance(writer, BatchedLocalChat):  # one padded forward pass per chunk, seeded per chunk
        replies = writer.batch([r.messages for r in requests], run_config, return_exceptions=True,
                               seeds=[r.seed for r in requests])
    else:  # endpoints: at most `concurrency` requests in flight, each with its own seed
        with get_executor_for_config(run_config) as executor:
            replies = list(executor.map(call, requests))
    out: list[BaseMessage | TransientError | None] = []
    for reply in replies:
        if isinstance(reply, BaseMessage):
            out.append(reply)
            continue
        transient = _transient(reply, cfg.generator_model)
        if transient is not None:
            out.append(transient)
        elif isinstance(reply, ModelError) and is_rejection(reply):
            logger.warning("the generator refused a request: %s", reply)
            out.append(None)
        else:
            raise reply
    return out


def generate(state: GenState, runtime: Runtime[Deps], config: RunnableConfig) -> dict[str, Any]:
    """Draft candidates for the planned features; transient faults of every request end the step for a resume."""
    deps = runtime.context
    cfg = deps.config
    requests = build_requests(state, deps)
    results = call_generator(deps.writer, requests, cfg, config)
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
        reply = "" if result is None else _reply_text(result)
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
