"""Prompt assembly for the generator with the paper's prompt shapes (METHOD §4).

A feature's first round uses the draft prompt (its explanation, evidence spans, few-shot seed examples);
later rounds use the contrastive prompt: the verifier's best draft as the Good example (or the feature's
top anchor span when no draft fired it, as in the paper), its worst as the Bad one, their scores and
the spans that fired, and the last rejection reason.

With `fewshot_turns` the seed examples go in as earlier turns instead, each one a reply of the generator's
own, and the prompt above is the last turn: a 135M model then keeps a structured layout (question, options and
answer; prompt with both replies) it does not keep from a list inside one message (bench/RESULTS.md, Task
samples).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import DraftKind, GenState, Verdict
from fac.prompts import render
from fac.tools.catalog.records import FeatureRecord, evidence_spans, short_span
from fac.tools.llm.calls import messages_hash
from fac.tools.space.rendering import Sample, sample_text

EXAMPLE_CHARS = 300
TURN_LINE_CHARS = 400  # a layout line of a demonstration turn (a long A/B question stays readable)
STRONG_SHARE = 0.5  # keep the Good span verbatim when it scores >= this share of the feature's top anchor score


@dataclass(frozen=True)
class Request:
    """One generator call: its target, the prompt shape, the messages and their hash."""

    feature: int
    kind: DraftKind
    messages: list[BaseMessage]
    prompt_hash: str
    seed: int = 0  # sampling seed: identical prompts still get different drafts, reproducibly


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def fewshot(seed: Sequence[Sample], n: int, key: str, layouts: Sequence[str] = (),
            line_chars: int = EXAMPLE_CHARS // 2) -> list[str]:
    """`n` seed examples chosen by a deterministic key (feature, round, draft); in the generator's layout (one
    line per part, clipped to `line_chars`) when the seed's records have one."""
    pool: Sequence[Sample] = layouts or seed
    if n == 0 or not pool:
        return []
    picked = random.Random(key).sample(range(len(pool)), min(n, len(pool)))
    if layouts:
        return ["\n".join(_clip(line, line_chars) for line in layouts[i].splitlines()) for i in picked]
    return [_clip(sample_text(seed[i])) for i in picked]


def demonstration_turns(examples: Sequence[str], format_rules: str) -> list[BaseMessage]:
    """The examples as earlier turns: asked for one (with the format rules), then for another, each answered."""
    turns: list[BaseMessage] = []
    for i, example in enumerate(examples):
        turns += [HumanMessage(render("generator.demo", first=i == 0, format_rules=format_rules).strip()),
                  AIMessage(example)]
    return turns


def seed_examples(deps: Deps, key: str, n: int, format_rules: str) -> tuple[list[str], list[BaseMessage]]:
    """The few-shot seed examples of one request: (for the prompt's list, as demonstration turns); one is empty."""
    if not deps.config.fewshot_turns:
        return fewshot(deps.seed, n, key, deps.seed_layouts), []
    examples = fewshot(deps.seed, n, key, deps.seed_layouts, line_chars=TURN_LINE_CHARS)
    return [], demonstration_turns(examples, format_rules)


def untargeted_request(deps: Deps, key: str, seed: int, n: int = 3) -> Request:
    """One "more examples like these" request (the untargeted baseline of the benches): `n` seed examples, no
    feature, in the run's format and few-shot style."""
    cfg = deps.config
    format_rules = render("generator.format", output_format=cfg.sample_format).strip()
    examples, turns = seed_examples(deps, key, n, format_rules)
    system = SystemMessage(render("generator.system", task_summary=deps.task_summary or cfg.task))
    user = render("generator.untargeted", examples=examples, continued=bool(turns), format_rules=format_rules)
    messages: list[BaseMessage] = [system, *turns, HumanMessage(user.strip())]
    return Request(-1, "draft", messages, messages_hash(messages), seed)


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
            examples, turns = seed_examples(deps, f"{cfg.random_seed}:{feature}:{state.round}:{i}", cfg.fewshot,
                                            format_rules)
            if feature in state.best or feature in state.feedback:
                good, bad = good_and_bad(feature, state, record, cfg)
                user = render("generator.contrastive", explanation=explanation, good=good.model_dump(),
                              bad=bad.model_dump() if bad else None, keep_verbatim=keep_verbatim(good, record),
                              feedback=state.feedback.get(feature, ""), continued=bool(turns),
                              format_rules=format_rules)
                kind: DraftKind = "contrastive"
            else:
                user = render("generator.draft", explanation=explanation, spans=evidence_spans(record),
                              examples=examples, continued=bool(turns), format_rules=format_rules)
                kind = "draft"
            messages: list[BaseMessage] = [system, *turns, HumanMessage(user.strip())]
            digest = messages_hash(messages)
            seed = int(hashlib.sha256(f"{cfg.random_seed}:{digest}:{state.round}:{i}".encode()).hexdigest()[:8], 16)
            requests.append(Request(feature, kind, messages, digest, seed))
    return requests
