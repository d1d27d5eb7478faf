"""Verifier: the local model + SAE on every draft; keep a draft iff its target feature fires (METHOD §4).

A draft is accepted iff it is well-formed (not empty, garbled or over-length; a pair with both sides, an A/B
item with both options and its matching answer), passes the text gates (no meta text, no regurgitation), its
target feature scores > δ_accept, it is a member of the task (membership gate), and it is neither a
near-duplicate of a seed or accepted sample nor closer to one than the novelty distance (chroma cosine
distance). The gates (tools/quality/) are `deps.gates`; None turns them all off. An accepted sample is
credited to every missing feature it activates (> δ), written to samples.jsonl (fsync) and then to chroma. A
draft whose id the journal already holds (a step re-run after a crash) is credited without being written again.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import replace
from typing import Any, Literal

from langgraph.runtime import Runtime

from fac.agents.replies import SCAFFOLD
from fac.graph.checkpoint import sample_id
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import AcceptedSample, Draft, GenState, Verdict
from fac.graph.status import goal_reached
from fac.tools.space.features import SampleScores
from fac.tools.text.formats import missing_parts

logger = logging.getLogger(__name__)

# A standalone text that talks about "the example", "the dataset" or "the phrase" describes the prompt instead of
# being a sample (weak generators do this often); other formats may mention examples legitimately.
META = re.compile(r"\b(?:this|the|these|following|above|new|my) examples?\b|\bdataset\b|\bthe (?:phrase|wording)\b"
                  r"|\bexample (?:text|tweet|sentence)\b", re.I)
META_FORMATS = ("text", "query")
MIN_LETTER_SHARE = 0.5  # of non-space characters
MIN_DISTINCT_WORD_SHARE = 0.3  # of words, in drafts of >= REPEAT_MIN_WORDS words
REPEAT_MIN_WORDS = 8
VERDICT_CHARS = 400


def form_problem(text: str, cfg: RunConfig) -> str | None:
    """Why a draft is malformed (empty, over-length, garbled), or None."""
    if not text.strip():
        return "empty: the reply held no usable sample"
    if len(text) > cfg.max_chars:
        return f"over-length: {len(text)} characters > max_chars {cfg.max_chars}"
    if "\ufffd" in text:
        return "garbled: contains undecodable characters"
    if SCAFFOLD.search(text):
        return "garbled: copies the prompt's scaffolding"
    if cfg.sample_format in META_FORMATS and META.search(text):
        return "off-task: writes about the examples instead of writing one"
    chars = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    if chars and letters / len(chars) < MIN_LETTER_SHARE:
        return f"garbled: only {letters / len(chars):.0%} letters"
    words = text.lower().split()
    if len(words) >= REPEAT_MIN_WORDS and len(set(words)) / len(words) < MIN_DISTINCT_WORD_SHARE:
        return f"garbled: repetitive ({len(set(words))} distinct of {len(words)} words)"
    return None


def parts_problem(draft: Draft, cfg: RunConfig) -> str | None:
    """Why a draft of a structured format lacks a part (a side of a pair, an A/B option or answer), or None."""
    missing = missing_parts(draft.fields, cfg.sample_format) if draft.text.strip() else None
    return f"incomplete: {missing}" if missing else None


def kind_of(reason: str) -> str:
    """The rejection kind counted in the state ('near-duplicate', 'target-not-activated', ...)."""
    return reason.split(":", 1)[0]


def _verdict(draft: Draft, score: float, span: str, reason: str) -> Verdict:
    text = draft.text if len(draft.text) <= VERDICT_CHARS else draft.text[: VERDICT_CHARS - 1] + "…"
    return Verdict(text=text, score=score, span=span, reason=reason)


def verify(state: GenState, runtime: Runtime[Deps]) -> dict[str, Any]:
    """Score, check and keep or reject each draft; credit, journal and index the kept ones."""
    deps = runtime.context
    cfg = deps.config
    missing = set(state.missing)
    scorable = [d for d in state.drafts if d.text.strip()]
    scored: dict[int, SampleScores] = {}
    if scorable:
        scores = deps.space.score([d.sample() for d in scorable])
        scored = {id(d): s for d, s in zip(scorable, scores, strict=True)}
    counts, best, worst = dict(state.counts), dict(state.best), dict(state.worst)
    feedback, rejections = dict(state.feedback), Counter(state.rejections)
    new_ids: set[str] = set()
    gates = deps.gates
    for draft in state.drafts:
        j = draft.feature
        sid = sample_id(deps.run_id, draft.prompt_hash, draft.text)
        journaled = deps.log.get(sid)
        if journaled is not None:  # accepted before a crash; the journal is the truth
            if sid not in state.accepted_ids and sid not in new_ids:
                for f in journaled.features:
                    counts[f] = counts.get(f, 0) + 1
                new_ids.add(sid)
                deps.store.add([sid], [journaled.text], [_metadata(journaled)])
                _report(runtime, draft, sid, "accepted (from the journal)", journaled.score, journaled.span,
                        journaled.features)
                continue
            repeat = "duplicate: the same sample was accepted before"
            rejections[kind_of(repeat)] += 1
            feedback[j] = repeat
            _report(runtime, draft, sid, repeat)
            continue
        sample_scores = scored.get(id(draft))
        reason = form_problem(draft.text, cfg) or parts_problem(draft, cfg)
        if reason is None and sample_scores is not None and sample_scores.truncated:
            reason = f"over-length: more than {cfg.max_tokens} tokens"
        if reason is None and gates is not None:
            reason = gates.text_problem(draft.text)
        well_formed_draft = reason is None
        score, span = 0.0, ""
        if sample_scores is not None:
            score = sample_scores.score_of(j)
            hit = sample_scores.hit(j)
            span = hit.span if hit is not None and score > cfg.threshold else ""
        if reason is None and score <= cfg.delta_accept:
            reason = f"target-not-activated: feature {j} scored {score:.3f} <= δ_accept {cfg.delta_accept}"
        if reason is None and gates is not None and sample_scores is not None:
            reason = gates.membership_problem(draft.text, sample_scores)
            well_formed_draft = reason is None  # an off-task draft must not become the next Good example
        if reason is None:
            near_id, distance = deps.store.nearest([draft.text])[0]
            if near_id is not None and near_id != sid and distance < cfg.dedup_distance:
                reason = f"near-duplicate: cosine distance {distance:.3f} < {cfg.dedup_distance} to {near_id}"
            elif gates is not None and near_id != sid:
                reason = gates.novelty_problem(distance, near_id)
        if sample_scores is not None and well_formed_draft:  # malformed drafts never become Good/Bad examples
            verdict = _verdict(draft, score, span, reason or "accepted")
            if j not in best or score > best[j].score:
                best[j] = verdict
            if j not in worst or score < worst[j].score:
                worst[j] = verdict
        if reason is not None:
            rejections[kind_of(reason)] += 1
            feedback[j] = reason
            logger.debug("rejected draft for feature %d: %s", j, reason)
            _report(runtime, draft, sid, reason, score, span)
            continue
        assert sample_scores is not None  # a well-formed draft was scored
        credited = tuple(sorted({int(f) for f in sample_scores.active(cfg.threshold)} & missing | {j}))
        record = AcceptedSample(id=sid, text=draft.text, target_feature=j, score=score, span=span, round=state.round,
                                prompt_hash=draft.prompt_hash, kind=draft.kind, features=credited, fields=draft.fields)
        deps.log.append(record)  # durable first: the journal is the source of truth
        deps.store.add([sid], [draft.text], [_metadata(record)])
        for f in credited:
            counts[f] = counts.get(f, 0) + 1
        new_ids.add(sid)
        feedback.pop(j, None)
        _report(runtime, draft, sid, "accepted", score, span, credited)
    update: dict[str, Any] = {"drafts": (), "counts": counts, "best": best, "worst": worst, "feedback": feedback,
                              "rejections": dict(rejections), "accepted_ids": frozenset(new_ids)}
    after = replace(state, counts=counts, accepted_ids=state.accepted_ids | new_ids)
    logger.info("round %d: %d drafts, %d accepted, FAC %.3f -> %.3f", state.round, len(state.drafts), len(new_ids),
                state.fac_now(), after.fac_now())
    if goal_reached(after, cfg):
        update["stop_reason"] = "goal"
        update["stop_detail"] = (f"FAC {after.fac_now():.3f} >= goal {cfg.goal_fac} with >= {cfg.min_per_feature} "
                                 "samples per new feature")
    return update


def _report(runtime: Runtime[Deps], draft: Draft, sid: str, reason: str, score: float = 0.0, span: str = "",
            credited: tuple[int, ...] = ()) -> None:
    """Stream what became of a draft (stream_mode "custom"; the run trace records it, a no-op otherwise)."""
    runtime.stream_writer({"verdict": {"feature": draft.feature, "kind": draft.kind, "prompt_hash": draft.prompt_hash,
                                       "sample_id": sid, "text": draft.text, "score": score, "span": span,
                                       "reason": reason, "credited": list(credited)}})


def _metadata(record: AcceptedSample) -> dict[str, str | int | float | bool]:
    return {"source": "synthetic", "target_feature": record.target_feature, "round": record.round,
            "score": record.score, "kind": record.kind}


def route_after_verify(state: GenState) -> Literal["plan", "__end__"]:
    return "__end__" if state.stop_reason is not None else "plan"
