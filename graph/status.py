"""The run's status: what the planner stops on and what progress bars, run.json, traces and reports show.

One home for the coverage figures of a running loop: FAC now (the same `fac_score` as `fac coverage`),
the features exhausted (attempts used up short of `min_per_feature`), and whether the goals are met.
"""

from __future__ import annotations

from dataclasses import dataclass

from fac.graph.config import RunConfig
from fac.graph.state import GenState, StopReason


@dataclass(frozen=True)
class Status:
    """Coverage at a glance: what progress bars and reports show."""

    fac_before: float
    fac_now: float
    goal_fac: float
    covered: int  # task features covered (seed + synthesis)
    n_task: int
    missing: int  # task features still uncovered
    exhausted: int
    short: int  # newly covered features below min_per_feature
    accepted: int
    tokens_used: int
    budget_tokens: int
    round: int
    stop_reason: StopReason | None
    stop_detail: str


def status(state: GenState, cfg: RunConfig) -> Status:
    new = state.newly_covered()
    short = sum(1 for j in new if state.counts.get(j, 0) < cfg.min_per_feature)
    return Status(state.fac_before, state.fac_now(), cfg.goal_fac, state.n_seed_covered + len(new),
                  len(state.task_features), len(state.missing) - len(new), len(state.exhausted), short,
                  state.n_accepted, state.tokens_used, cfg.budget_tokens, state.round, state.stop_reason,
                  state.stop_detail)


def exhausted_features(state: GenState, cfg: RunConfig) -> frozenset[int]:
    """Missing features that used up their attempts short of min_per_feature (recomputed: limits may grow)."""
    return frozenset(j for j in state.missing if state.attempts.get(j, 0) >= cfg.max_attempts_per_feature
                     and state.counts.get(j, 0) < cfg.min_per_feature)


def goal_reached(state: GenState, cfg: RunConfig) -> bool:
    """FAC at the goal and every newly covered feature at its minimum (or exhausted trying)."""
    return state.fac_now() >= cfg.goal_fac - 1e-9 and all(
        state.counts.get(j, 0) >= cfg.min_per_feature or j in state.exhausted for j in state.newly_covered())
