"""Measure: FAC of the seed; its missing features become the planner's work queue (METHOD §3-4)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal

from langgraph.runtime import Runtime

from fac.graph.context import Deps
from fac.graph.state import GenState
from fac.tools.coverage import activated_features, fac_score
from fac.tools.space.rendering import sample_text

logger = logging.getLogger(__name__)


def seed_ids(texts: list[str]) -> list[str]:
    return [f"seed-{hashlib.sha256(t.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}" for t in texts]


def measure(state: GenState, runtime: Runtime[Deps]) -> dict[str, Any]:
    """Score the seed (cached by the feature space), compute FAC and the missing features, index the seed."""
    deps = runtime.context
    cfg = deps.config
    task = deps.catalog.task_features()
    activated = activated_features(deps.space.score(list(deps.seed)), cfg.threshold)
    fac = fac_score(task, activated)
    missing = tuple(sorted(set(task) - activated))
    texts = [sample_text(s) for s in deps.seed]
    if deps.store.count() < len(set(texts)):
        unique = dict(zip(seed_ids(texts), texts, strict=True))
        deps.store.add(list(unique), list(unique.values()), [{"source": "seed"}] * len(unique))
    logger.info("seed: %d samples, FAC %.3f (%d of %d task features), %d missing", len(texts), fac,
                len(task) - len(missing), len(task), len(missing))
    update: dict[str, Any] = {"task_features": tuple(task), "n_seed_covered": len(task) - len(missing),
                              "fac_before": fac, "missing": missing}
    if not missing or fac >= cfg.goal_fac - 1e-9:
        update["stop_reason"] = "seed"
        update["stop_detail"] = f"the seed already reaches FAC {fac:.3f} (goal {cfg.goal_fac})"
    return update


def route_after_measure(state: GenState) -> Literal["plan", "__end__"]:
    return "__end__" if state.stop_reason is not None else "plan"
