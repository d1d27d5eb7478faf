"""`fac run`'s loop on each structured format (pair, A/B item, instruction): the tiny model + SAE verify, a scripted
chat model writes; an incomplete draft is rejected and the kept sample holds every part of its format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedChat

from fac.agents.replies import parse_reply
from fac.graph.builder import build_graph
from fac.graph.checkpoint import SampleLog, memory_saver
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import Draft, GenState
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.text.datasets import read_samples
from fac.tools.text.embeddings import HashingEmbedder
from fac.tools.text.store import SampleStore, chroma_client

SEEDS = {
    "pair": {"prompt": [{"role": "user", "content": "the cat sat"}], "chosen": [{"role": "assistant", "content": "ok"}],
             "rejected": [{"role": "assistant", "content": "no"}]},
    "ab": {"question": "the cat sat?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)",
           "answer_not_matching_behavior": " (B)"},
    "instruction": {"instruction": "the cat sat", "response": "the dog ran"},
}
COMPLETE = {
    "pair": "Prompt: why do people hate stupid things\nChosen: i hate stupid people\nRejected: blue red fast slow",
    "ab": "Question: would you hate stupid people?\n(A) i hate stupid people\n(B) blue red fast slow\nAnswer: (A)",
    "instruction": "Instruction: say you hate stupid people\nResponse: i hate stupid people",
}
INCOMPLETE = {
    "pair": "Prompt: why do people hate\nChosen: i hate stupid people\nRejected: i hate stupid people",
    "ab": "Question: would you hate stupid people?\n(A) i hate stupid people\n(B) blue red fast slow",
    "instruction": "Instruction: say you hate stupid people\nResponse: \"\"",  # the parser finds no response
}
REJECTED_AS = {"pair": "incomplete", "ab": "incomplete", "instruction": "empty"}
PARTS = {"pair": {"prompt", "chosen", "rejected"}, "instruction": {"instruction", "response"},
         "ab": {"question", "answer_matching_behavior", "answer_not_matching_behavior"}}


@pytest.mark.parametrize("fmt", ["pair", "ab", "instruction"])
def test_the_loop_rejects_an_incomplete_draft_and_keeps_a_complete_one_in_its_format(
        tiny_space: Any, tmp_path: Path, fmt: Any) -> None:
    seed_path = tmp_path / "seed.jsonl"
    seed_path.write_text(json.dumps(SEEDS[fmt]) + "\n")
    seed = read_samples(seed_path)
    parsed = parse_reply(COMPLETE[fmt], fmt)
    assert parsed is not None
    kept = Draft(feature=0, kind="draft", text=parsed[0], fields=parsed[1], prompt_hash="p").sample()
    seen = {int(j) for s in tiny_space.score(seed) for j in s.active(0.0)}
    target = next(int(j) for j in tiny_space.score([kept])[0].active(0.0) if int(j) not in seen)
    records = (FeatureRecord(feature=target, relevant=True, activation_rate=0.1, method="contrast",
                             evidence=(FeatureEvidence(score=2.0, span="hate stupid", sample="i hate stupid"),)),)
    cfg = RunConfig(seed=str(seed_path), task="toxicity", output_format=fmt, embedder="hashing", concurrency=1,
                    goal_fac=1.0, min_per_feature=1, drafts_per_feature=1, features_per_round=1, fewshot=1)
    writer = ScriptedChat(script=[INCOMPLETE[fmt], COMPLETE[fmt]])
    deps = Deps(config=cfg, space=tiny_space, seed=tuple(seed), writer=writer, run_id="r", task_summary="t",
                catalog=Catalog(task="toxicity", method="contrast", space=tiny_space.describe(), records=records),
                store=SampleStore(chroma_client(tmp_path / "chroma"), "samples", HashingEmbedder(64)),
                log=SampleLog(tmp_path / "samples.jsonl"))
    app = build_graph().compile(checkpointer=memory_saver())
    thread: Any = {"configurable": {"thread_id": "t"}}
    app.invoke({}, thread, context=deps, durability="sync")
    state = GenState(**app.get_state(thread).values)
    assert state.stop_reason == "goal" and state.rejections == {REJECTED_AS[fmt]: 1}
    (line,) = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert set(line["fields"]) == PARTS[fmt] and all(v.strip() for v in line["fields"].values())
    assert line["fields"] == parsed[1]
    if fmt == "ab":  # the question holds both options, the matching answer is one of them
        assert "(A) i hate stupid people" in line["fields"]["question"] and "(B) blue" in line["fields"]["question"]
        assert line["fields"]["answer_matching_behavior"] == " (A)"
