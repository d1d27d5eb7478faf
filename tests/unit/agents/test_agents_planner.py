"""Planner: priority (uncovered, relevance, fewest attempts), budget-bounded batches, exhaustion, stop reasons."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from fac.agents.planner import plan, stop_check
from fac.graph.checkpoint import SampleLog
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import GenState
from fac.tools.catalog.records import Catalog, FeatureRecord

DECISIONS: dict[int, Any] = {1: "Maybe", 2: "Yes", 3: "Probably", 4: "Yes", 5: "Yes"}


def _deps(tmp_path: Any, **changes: Any) -> Deps:
    records = tuple(FeatureRecord(feature=j, relevant=True, decision=d, activation_rate=0.1, method="judge")
                    for j, d in DECISIONS.items())
    cfg = RunConfig(seed="s", task="toxicity", **{"features_per_round": 3, "drafts_per_feature": 1, **changes})
    return Deps(config=cfg, space=None, catalog=Catalog(task="toxicity", method="judge", space={}, records=records),
                seed=(), store=None, writer=None, log=SampleLog(tmp_path / "s.jsonl"), run_id="r")  # type: ignore[arg-type]


def _state(**changes: Any) -> GenState:
    return GenState(task_features=(1, 2, 3, 4, 5, 9), missing=(1, 2, 3, 4, 5), n_seed_covered=1, **changes)


def test_uncovered_features_come_first_by_relevance_then_fewest_attempts(tmp_path: Any) -> None:
    update = plan(_state(attempts={2: 3, 4: 1}, counts={5: 1}), Runtime(context=_deps(tmp_path)))
    # 5 is covered (short), so last; among Yes: 4 (1 attempt) before 2 (3 attempts); then Probably 3
    assert update["plan"] == (4, 2, 3) and update["round"] == 1


def test_the_batch_shrinks_to_what_the_budget_affords(tmp_path: Any) -> None:
    deps = _deps(tmp_path, budget_tokens=1000)
    update = plan(_state(tokens_used=700, drafts_made=7), Runtime(context=deps))  # 100 tokens a draft
    assert update["plan"] == (2, 4, 5)  # 300 tokens left: three drafts
    update = plan(_state(tokens_used=850, drafts_made=10), Runtime(context=deps))  # 85 a draft, 150 left
    assert update["plan"] == (2,)


def test_features_out_of_attempts_are_exhausted_and_not_planned(tmp_path: Any) -> None:
    update = plan(_state(attempts={2: 8, 4: 8}), Runtime(context=_deps(tmp_path)))
    assert update["exhausted"] == {2, 4} and 2 not in update["plan"] and 4 not in update["plan"]


def test_stop_reasons() -> None:
    cfg = RunConfig(seed="s", task="toxicity", goal_fac=0.5, min_per_feature=2, max_rounds=3, budget_tokens=1000)
    assert stop_check(_state(counts={1: 2, 2: 2}), cfg) is not None  # FAC 3/6 = 0.5 and both have 2
    assert stop_check(_state(counts={1: 2, 2: 2}), cfg)[0] == "goal"  # type: ignore[index]
    assert stop_check(_state(counts={1: 2, 2: 1}), cfg) is None  # 2 is short of its minimum
    assert stop_check(_state(round=3), cfg)[0] == "rounds"  # type: ignore[index]
    assert stop_check(_state(tokens_used=990, drafts_made=10), cfg)[0] == "budget"  # type: ignore[index]
    out = {j: 8 for j in range(1, 6)}
    assert stop_check(_state(attempts=out, exhausted=frozenset(range(1, 6))), cfg)[0] == "exhausted"  # type: ignore[index]
