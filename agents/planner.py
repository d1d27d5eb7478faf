"""Planner: pick the next batch of missing features, within the budget, and decide when to stop (METHOD §4).

Priority: features no sample covers yet, then the judge's relevance (Yes > Probably > Maybe), fewest
attempts, highest activation rate in the anchor corpus (easier to reach), feature id. A feature is
exhausted once it has had `max_attempts_per_feature` drafts without reaching `min_per_feature` samples.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from fac.graph.checkpoint import SampleLog
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import GenState, StopReason
from fac.graph.status import exhausted_features, goal_reached
from fac.tools.catalog.records import Catalog

logger = logging.getLogger(__name__)

RELEVANCE_RANK = {"Yes": 3, "Probably": 2, "Maybe": 1, "No": 0}
PROMPT_TOKENS_GUESS = 400  # prompt tokens per draft assumed before the first draft is measured


def open_features(state: GenState, cfg: RunConfig) -> list[int]:
    """Features still worth a draft: uncovered ones while FAC is below the goal, and covered-but-short ones."""
    below_goal = state.fac_now() < cfg.goal_fac - 1e-9
    return [j for j in state.missing if j not in state.exhausted and state.counts.get(j, 0) < cfg.min_per_feature
            and (below_goal or state.counts.get(j, 0) > 0)]


def draft_cost(state: GenState, cfg: RunConfig) -> float:
    """Generator tokens one draft costs: measured so far, or a guess before the first."""
    if state.drafts_made:
        return float(state.tokens_used / state.drafts_made)
    return float(PROMPT_TOKENS_GUESS + cfg.max_new_tokens)


def unmet_goal(state: GenState, cfg: RunConfig) -> str:
    """Which goal is unmet, in words: FAC below the goal, or new features short of their minimum samples."""
    fac = state.fac_now()
    if fac < cfg.goal_fac - 1e-9:
        return f"FAC {fac:.3f} < goal {cfg.goal_fac}"
    short = sum(1 for j in state.newly_covered() if state.counts.get(j, 0) < cfg.min_per_feature)
    return (f"FAC {fac:.3f} >= goal {cfg.goal_fac}, but {short} newly covered features have fewer than "
            f"min_per_feature={cfg.min_per_feature} samples")


def stop_check(state: GenState, cfg: RunConfig) -> tuple[StopReason, str] | None:
    """Why the loop should stop now, if it should."""
    if goal_reached(state, cfg):
        return "goal", (f"FAC {state.fac_now():.3f} >= goal {cfg.goal_fac} with >= {cfg.min_per_feature} samples "
                        "per new feature")
    if not open_features(state, cfg):
        return "exhausted", (f"no feature left to try: {len(state.exhausted)} exhausted after "
                             f"{cfg.max_attempts_per_feature} attempts each; {unmet_goal(state, cfg)}")
    if state.round >= cfg.max_rounds:
        return "rounds", f"{state.round} rounds done (max_rounds); {unmet_goal(state, cfg)}"
    per_feature = draft_cost(state, cfg) * cfg.drafts_per_feature
    remaining = cfg.budget_tokens - state.tokens_used
    if remaining < per_feature:
        return "budget", (f"{state.tokens_used:,} of {cfg.budget_tokens:,} generator tokens used; a feature needs "
                          f"~{per_feature:,.0f}; {unmet_goal(state, cfg)}")
    return None


def priority(state: GenState, catalog: Catalog) -> dict[int, tuple[int, int, int, float, int]]:
    """Sort keys of the missing features (lower first)."""
    records = {r.feature: r for r in catalog.records}
    keys = {}
    for j in state.missing:
        rec = records.get(j)
        rank = RELEVANCE_RANK.get(rec.decision or "", 0) if rec else 0
        rate = rec.activation_rate if rec else 0.0
        keys[j] = (int(state.counts.get(j, 0) > 0), -rank, state.attempts.get(j, 0), -rate, j)
    return keys


def absorb_journal(state: GenState, log: SampleLog) -> dict[str, Any]:
    """Make the state agree with samples.jsonl, the source of truth for accepted samples.

    Journal samples the checkpoint does not know (written, then the process died before the step saved) are
    credited; samples the checkpoint knows but the journal lost (a torn last line dropped on resume) are
    uncredited: accepted ids and per-feature counts are then recounted from the journal."""
    journal_ids = frozenset(r.id for r in log)
    orphans = [r for r in log if r.id not in state.accepted_ids]
    lost = state.accepted_ids - journal_ids
    if lost:
        recounted = Counter(j for r in log for j in r.features)
        logger.warning("%d accepted samples are missing from %s (a torn line was dropped); recounting from the "
                       "journal: %d samples", len(lost), log.path, len(journal_ids))
        return {"counts": dict(recounted), "accepted_ids": Overwrite(journal_ids)}
    if not orphans:
        return {}
    counts = dict(state.counts)
    for record in orphans:
        for j in record.features:
            counts[j] = counts.get(j, 0) + 1
    logger.warning("reconciled %d accepted samples from %s that the last checkpoint missed", len(orphans), log.path)
    return {"counts": counts, "accepted_ids": frozenset(r.id for r in orphans)}


def plan(state: GenState, runtime: Runtime[Deps]) -> dict[str, Any]:
    """Reconcile with the journal, mark exhausted features, stop or pick this round's features."""
    deps = runtime.context
    cfg = deps.config
    update = absorb_journal(state, deps.log)
    ids = update.get("accepted_ids", frozenset())
    current = replace(state, counts=update.get("counts", state.counts),
                      accepted_ids=ids.value if isinstance(ids, Overwrite) else state.accepted_ids | ids)
    exhausted = exhausted_features(current, cfg)
    current = replace(current, exhausted=exhausted)
    update["exhausted"] = exhausted
    stop = stop_check(current, cfg)
    if stop is not None:
        logger.info("stop (%s): %s", *stop)
        return {**update, "plan": (), "stop_reason": stop[0], "stop_detail": stop[1]}
    keys = priority(current, deps.catalog)
    todo = sorted(open_features(current, cfg), key=keys.__getitem__)
    affordable = int((cfg.budget_tokens - current.tokens_used) // (draft_cost(current, cfg) * cfg.drafts_per_feature))
    picked = tuple(todo[: max(1, min(cfg.features_per_round, affordable))])
    logger.info("round %d: %d features (%d open, %d exhausted), FAC %.3f", state.round + 1, len(picked), len(todo),
                len(exhausted), current.fac_now())
    return {**update, "plan": picked, "round": state.round + 1, "stop_reason": None, "stop_detail": ""}


def route_after_plan(state: GenState) -> Literal["generate", "__end__"]:
    return "__end__" if state.stop_reason is not None else "generate"
