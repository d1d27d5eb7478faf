"""The synthesis loop end to end on the tiny model + SAE, with a scripted chat model as the generator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import FlakyStore, ScriptedChat
from langchain_core.language_models import BaseChatModel

from fac.graph.builder import build_graph
from fac.graph.checkpoint import SampleLog, memory_saver
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.run_dir import RunDir
from fac.graph.runner import open_run, run
from fac.graph.state import GenState
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.errors import ConfigError, TransientError
from fac.tools.text.embeddings import HashingEmbedder
from fac.tools.text.store import SampleStore, chroma_client

SEED = ["the cat sat on the mat", "the dog ran home"]
HIT = "i hate stupid people"  # the reply that fires the target feature
HIT_2 = "they hate stupid bad people"
MISS = "blue red fast slow"  # a well-formed reply that does not


@dataclass
class World:
    space: Any
    tmp: Path
    target: int  # fired by HIT and HIT_2, not by the seed or MISS
    unreachable: list[int]  # fired by none of the texts used here
    seed_features: list[int]

    def catalog(self, features: list[int]) -> Catalog:
        records = tuple(
            FeatureRecord(feature=j, relevant=True, activation_rate=0.1, method="contrast",
                          explanation=f"feature {j} words",
                          evidence=(FeatureEvidence(score=2.0, span="hate stupid", sample=HIT),))
            for j in features)
        return Catalog(task="toxicity", method="contrast", space=self.space.describe(), records=records)

    def config(self, **changes: Any) -> RunConfig:
        seed = self.tmp / "seed.jsonl"
        seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in SEED))
        values = {"seed": str(seed), "task": "toxicity", "embedder": "hashing", "concurrency": 1, "goal_fac": 1.0,
                  "min_per_feature": 1, "drafts_per_feature": 1, "features_per_round": 1, "fewshot": 1}
        return RunConfig(**{**values, **changes})

    def deps(self, cfg: RunConfig, writer: BaseChatModel, features: list[int], store: Any = None,
             root: Path | None = None, run_id: str = "test-run") -> Deps:
        root = root or self.tmp
        inner = SampleStore(chroma_client(root / "chroma"), "samples", HashingEmbedder(64))
        return Deps(config=cfg, space=self.space, catalog=self.catalog(features), seed=tuple(SEED),
                    store=store(inner) if store else inner, writer=writer, log=SampleLog(root / "samples.jsonl"),
                    run_id=run_id, task_summary="toxic text")


@pytest.fixture()
def world(tiny_space: Any, tmp_path: Path) -> World:
    seed_scores, hit, hit2, miss = tiny_space.score(SEED), *tiny_space.score([HIT, HIT_2, MISS])
    seen = {int(j) for s in seed_scores for j in s.active(0.0)}
    targets = sorted({int(j) for j in hit.active(0.0)} & {int(j) for j in hit2.active(0.0)}
                     - seen - {int(j) for j in miss.active(0.0)})
    fired = seen | {int(j) for s in (hit, hit2, miss) for j in s.active(0.0)}
    unreachable = [j for j in range(tiny_space.d_sae) if j not in fired][:3]
    assert targets and len(unreachable) == 3, "the tiny fixtures no longer give a usable target feature"
    return World(tiny_space, tmp_path, targets[0], unreachable, sorted(seen)[:2])


def _invoke(deps: Deps, thread: str = "t", graph_input: Any = None, app: Any = None) -> tuple[Any, GenState]:
    app = app or build_graph().compile(checkpointer=memory_saver())
    cfg: Any = {"configurable": {"thread_id": thread}}
    app.invoke({} if graph_input is None else graph_input, cfg, context=deps, durability="sync")
    return app, GenState(**app.get_state(cfg).values)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_feature_is_covered_after_a_failed_draft_and_the_retry_prompt_carries_the_feedback(world: World) -> None:
    chat = ScriptedChat(script=[MISS, HIT])
    deps = world.deps(world.config(), chat, [world.target, *world.seed_features])
    _, state = _invoke(deps)
    assert state.fac_before == pytest.approx(2 / 3)
    assert state.stop_reason == "goal" and state.fac_now() == 1.0
    assert len(chat.prompts) == 2
    assert "feature" in chat.prompts[0] and "hate stupid" in chat.prompts[0]  # first draft: explanation + spans
    retry = chat.prompts[1]
    assert "target-not-activated" in retry and MISS in retry  # the verifier's verdict and the bad draft
    (sample,) = _lines(world.tmp / "samples.jsonl")
    assert sample["text"] == HIT and sample["target_feature"] == world.target and sample["round"] == 2
    assert sample["score"] > 0 and sample["span"] and sample["prompt_hash"] and world.target in sample["features"]
    assert state.rejections == {"target-not-activated": 1}


def test_stops_on_budget_and_reports_exhausted_features(world: World) -> None:
    chat = ScriptedChat(script=[MISS])
    cfg = world.config(max_attempts_per_feature=2, budget_tokens=600)  # 5 drafts of 120 tokens
    _, state = _invoke(world.deps(cfg, chat, [*world.unreachable, *world.seed_features]))
    assert state.stop_reason == "budget" and "600" in state.stop_detail
    assert len(chat.prompts) == 5 and state.tokens_used == 600
    assert state.exhausted == frozenset(world.unreachable[:2])  # two used both attempts; the third had one
    assert state.attempts == {world.unreachable[0]: 2, world.unreachable[1]: 2, world.unreachable[2]: 1}


def test_stops_when_every_feature_is_exhausted(world: World) -> None:
    chat = ScriptedChat(script=[""])  # replies with no usable sample
    _, state = _invoke(world.deps(world.config(max_attempts_per_feature=2), chat, [world.unreachable[0]]))
    assert state.stop_reason == "exhausted" and state.exhausted == {world.unreachable[0]}
    assert state.rejections == {"empty": 2}


def test_seed_that_meets_the_goal_stops_before_any_generation(world: World) -> None:
    chat = ScriptedChat(script=[HIT])
    _, state = _invoke(world.deps(world.config(), chat, world.seed_features))
    assert state.stop_reason == "seed" and chat.prompts == []


def test_repeated_and_seed_copies_are_rejected_as_near_duplicates(world: World) -> None:
    chat = ScriptedChat(script=[HIT, SEED[0], HIT, HIT_2])
    _, state = _invoke(world.deps(world.config(min_per_feature=2, max_attempts_per_feature=6), chat, [world.target]))
    lines = _lines(world.tmp / "samples.jsonl")
    assert [s["text"] for s in lines] == [HIT, HIT_2]
    assert state.rejections["near-duplicate"] == 1  # HIT again (distance 0 to the accepted one)
    assert state.counts[world.target] == 2 and state.stop_reason == "goal"
    assert "target-not-activated" in state.rejections  # the seed copy does not fire the target


def test_resume_after_a_crash_mid_round_repeats_no_sample_and_loses_none(world: World) -> None:
    chat = ScriptedChat(script=[HIT, HIT_2])
    cfg = world.config(drafts_per_feature=2, min_per_feature=2)
    # store.add #1 indexes the seed, #2 the first sample; #3 (second sample, already journaled) crashes
    deps = world.deps(cfg, chat, [world.target], store=lambda inner: FlakyStore(inner, fail_on=3))
    app = build_graph().compile(checkpointer=memory_saver())
    with pytest.raises(RuntimeError, match="injected crash"):
        _invoke(deps, app=app)
    assert [s["text"] for s in _lines(world.tmp / "samples.jsonl")] == [HIT, HIT_2]
    resumed = world.deps(cfg, chat, [world.target], store=lambda inner: deps.store)  # a fresh journal reader
    thread: Any = {"configurable": {"thread_id": "t"}}
    app.invoke(None, thread, context=resumed, durability="sync")
    state = GenState(**app.get_state(thread).values)
    lines = _lines(world.tmp / "samples.jsonl")
    assert [s["text"] for s in lines] == [HIT, HIT_2]  # nothing repeated, nothing lost
    assert len({s["id"] for s in lines}) == 2
    assert state.counts[world.target] == 2 and state.n_accepted == 2 and state.stop_reason == "goal"
    assert len(chat.prompts) == 2  # the drafts came from the checkpoint, not from new generator calls


def test_planner_credits_journal_samples_the_checkpoint_missed(world: World) -> None:
    from langgraph.runtime import Runtime

    from fac.agents.planner import plan
    from fac.graph.state import AcceptedSample

    deps = world.deps(world.config(), ScriptedChat(script=[HIT]), [world.target, world.unreachable[0]])
    deps.log.append(AcceptedSample(id="orphan", text=HIT, target_feature=world.target, score=1.0, span="hate",
                                   round=1, prompt_hash="p", kind="draft", features=(world.target,)))
    state = GenState(task_features=(world.target, world.unreachable[0]), missing=(world.target, world.unreachable[0]))
    update = plan(state, Runtime(context=deps))
    assert update["counts"] == {world.target: 1} and update["accepted_ids"] == {"orphan"}
    assert update["plan"] == (world.unreachable[0],)  # the credited feature is not planned again


def test_transient_generator_failure_stops_cleanly_and_resume_continues(world: World) -> None:
    chat = ScriptedChat(script=[TransientError("endpoint unreachable"), HIT])
    cfg, paths = open_run(world.tmp / "runs" / "demo", world.config())
    first = run(world.deps(cfg, chat, [world.target], root=paths.root), paths)
    assert first.interrupted and "endpoint unreachable" in first.interrupted
    assert json.loads(paths.status.read_text())["phase"] == "interrupted"
    cfg2, _ = open_run(paths.root, resume=True)
    second = run(world.deps(cfg2, chat, [world.target], root=paths.root), paths)
    assert second.interrupted is None and second.status.stop_reason == "goal"
    assert [s["text"] for s in _lines(paths.samples)] == [HIT]
    assert second.status.fac_now == 1.0 and second.status.accepted == 1


def test_resume_with_a_bigger_budget_continues_a_finished_run(world: World) -> None:
    chat = ScriptedChat(script=[MISS, MISS, HIT])
    cfg, paths = open_run(world.tmp / "runs" / "demo", world.config(budget_tokens=240))
    first = run(world.deps(cfg, chat, [world.target], root=paths.root), paths)
    assert first.status.stop_reason == "budget" and first.status.accepted == 0
    cfg2, _ = open_run(paths.root, resume=True, overrides={"budget_tokens": 1000})
    second = run(world.deps(cfg2, chat, [world.target], root=paths.root), RunDir(paths.root))
    assert second.status.stop_reason == "goal" and second.status.accepted == 1 and len(chat.prompts) == 3


def test_a_torn_last_journal_line_is_dropped_and_appends_stay_valid(tmp_path: Path) -> None:
    from fac.graph.state import AcceptedSample

    path = tmp_path / "samples.jsonl"
    log = SampleLog(path)
    record = AcceptedSample(id="a", text=HIT, target_feature=1, score=1.0, span="hate", round=1, prompt_hash="p",
                            kind="draft", features=(1,))
    assert log.append(record) and not log.append(record)  # an id is written once
    with path.open("a") as handle:
        handle.write('{"id": "b", "text": "half a li')  # kill -9 in the middle of a write
    reopened = SampleLog(path)
    assert [r.id for r in reopened] == ["a"]
    reopened.append(record.model_copy(update={"id": "c"}))
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "c"]


def test_a_renamed_run_directory_resumes_from_its_checkpoint_with_its_counters(world: World) -> None:
    chat = ScriptedChat(script=[MISS, MISS, HIT])
    cfg, paths = open_run(world.tmp / "runs" / "first-name", world.config(max_rounds=2))
    first = run(world.deps(cfg, chat, [world.target], root=paths.root, run_id=paths.run_id(cfg)), paths)
    assert first.status.stop_reason == "rounds" and first.status.round == 2
    moved = paths.root.rename(world.tmp / "runs" / "second-name")
    cfg2, paths2 = open_run(moved, resume=True, overrides={"max_rounds": 5})
    assert paths2.run_id(cfg2) == first.run_id  # the id recorded at creation, not the new folder name
    second = run(world.deps(cfg2, chat, [world.target], root=moved, run_id=paths2.run_id(cfg2)), paths2)
    assert second.status.stop_reason == "goal" and second.status.round == 3  # continued, not restarted
    assert second.status.tokens_used == 360 and len(chat.prompts) == 3


def test_after_a_torn_line_is_dropped_counts_and_status_match_the_journal(world: World) -> None:
    chat = ScriptedChat(script=[HIT, HIT_2])
    cfg, paths = open_run(world.tmp / "runs" / "demo", world.config(min_per_feature=2, drafts_per_feature=2))
    first = run(world.deps(cfg, chat, [world.target], root=paths.root), paths)
    assert first.status.accepted == 2 and first.status.stop_reason == "goal"
    lines = paths.samples.read_text().splitlines()
    paths.samples.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # the last line torn
    cfg2, _ = open_run(paths.root, resume=True, overrides={"budget_tokens": first.status.tokens_used})
    second = run(world.deps(cfg2, chat, [world.target], root=paths.root), paths)
    status = json.loads(paths.status.read_text())
    assert second.status.accepted == status["accepted"] == len(SampleLog(paths.samples)) == 1
    assert status["short"] == 1  # the target now has 1 of the 2 samples it needs, as the journal says
    assert second.status.stop_reason == "budget" and "fewer than min_per_feature=2" in second.status.stop_detail


def test_a_crash_leaves_run_json_failed_with_the_error_not_running(world: World) -> None:
    chat = ScriptedChat(script=[ValueError("unexpected reply shape")])
    cfg, paths = open_run(world.tmp / "runs" / "demo", world.config())
    with pytest.raises(ValueError, match="unexpected reply shape"):
        run(world.deps(cfg, chat, [world.target], root=paths.root), paths)
    status = json.loads(paths.status.read_text())
    assert status["phase"] == "failed" and "unexpected reply shape" in status["interrupted"]


@pytest.mark.parametrize("name", ["x/..", "file"])
def test_run_directories_that_are_files_or_hold_dotdot_are_refused(world: World, name: str) -> None:
    (world.tmp / "file").write_text("not a directory")
    (world.tmp / "x").mkdir()
    with pytest.raises(ConfigError, match="--out"):
        open_run(world.tmp / name, world.config())


def test_a_stop_signal_skips_unsent_generator_requests_until_the_loop_has_exited() -> None:
    import os
    import signal
    import time

    from fac.graph.runner import StopRequested, stop_on_signals
    from fac.tools.llm.calls import STOPPING

    seen: list[bool] = []
    with pytest.raises(StopRequested), stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        finally:
            seen.append(STOPPING.is_set())  # what the step in flight's worker threads see while it winds down
    assert seen == [True]
    assert not STOPPING.is_set()  # a later run in the same process sends its requests again
