"""The verifier's quality gates in a run: each rejection kind, with its score and threshold, is recorded per draft
in the trace, counted in run.json and in `fac report`; gated drafts never become the next prompt's examples."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedChat
from langgraph.runtime import Runtime
from trace_world import HIT, SEED, Demo

from fac.agents.quality import ChatMembershipJudge, instruction_texts, make_gates
from fac.agents.verifier import verify
from fac.graph.config import RunConfig
from fac.graph.context import Deps
from fac.graph.state import Draft, GenState
from fac.tools.catalog.tasks import TaskSpec
from fac.tools.errors import TransientError
from fac.tools.quality.gates import QualityGates
from fac.tools.quality.membership import Calibration, MembershipModel
from fac.tools.quality.meta_text import InstructionEcho, MetaTextGate
from fac.tools.quality.regurgitation import CopyIndex
from fac.traces.report import render_report
from fac.traces.store import reading

# One draft per round, each fired the target feature on the tiny space (checked below) but the first two.
SCRIPT = ["Sure! i hate stupid people",  # meta-text: an assistant's preamble
          HIT,  # regurgitation: the catalog's evidence sample, word for word
          "the dog ran home and i hate stupid people",  # not-task-member: the fake judge refuses "and"
          "the dog ran home i hate stupid people",  # not-novel: close to the seed's "the dog ran home"
          "you hate stupid people now"]  # accepted
KINDS = ["meta-text", "regurgitation", "not-task-member", "not-novel", "accepted"]
NOVELTY = 0.5  # hashing-embedder distances; the seed text above is 0.42 from its seed, the accepted one 0.82


class RefusesAnd:
    """A membership judge that refuses drafts holding the word 'and'."""

    def judge(self, text: str) -> tuple[bool, str]:
        return ("and" not in text.split()), "decision No: it is about a dog"


def _gates(cfg: RunConfig, catalog_texts: list[str]) -> QualityGates:
    return QualityGates(meta=MetaTextGate(echo=InstructionEcho(instruction_texts(cfg))),
                        copies=CopyIndex([*catalog_texts, *SEED]), judge=RefusesAnd(), novelty_distance=NOVELTY)


class GatedDemo(Demo):
    def deps(self, cfg: RunConfig, chat: Any, root: Path, store: Any = None) -> Deps:
        plain = super().deps(cfg, chat, root, store)
        evidence = [t for r in plain.catalog.records for ev in r.evidence for t in (ev.sample, ev.span)]
        return dataclasses.replace(plain, gates=_gates(cfg, evidence))


def test_each_rejection_kind_is_traced_with_its_threshold_and_counted_in_status_and_report(
        tiny_space: Any, tmp_path: Path) -> None:
    demo = GatedDemo(tiny_space, tmp_path)
    fired = [s.score_of(demo.target) > 0 for s in tiny_space.score(SCRIPT[2:])]
    assert all(fired), "the tiny fixtures no longer fire the target on the scripted drafts"
    paths, _, _ = demo.run(list(SCRIPT))
    with reading(paths.root) as store:
        verdicts = store.verdicts()
    assert [v.reason.split(":", 1)[0] for v in verdicts] == KINDS
    assert all(v.decision == "rejected" for v in verdicts[:4]) and verdicts[4].decision == "accepted"
    meta, copy, member, novel = (v.reason for v in verdicts[:4])
    assert "('Sure!')" in meta  # a pattern gate names what matched
    assert "1.00 of the draft's 4 words copied" in copy and "threshold 0.50" in copy
    assert "judge says" in member and "it is about a dog" in member
    assert "cosine distance 0.420 < threshold 0.500 to seed-" in novel
    status = json.loads((paths.root / "run.json").read_text())
    assert status["rejections"] == {k: 1 for k in KINDS[:4]} and status["accepted"] == 1
    html = render_report(paths.root)
    table = html[html.index('<table id="rejections">'):]
    table = table[: table.index("</table>")]
    for kind in KINDS[:4]:
        assert f"<td>{kind}</td><td class=\"num\">1</td>" in table


def _deps(space: Any, tmp: Path, gates: QualityGates | None, target: int) -> Deps:
    tmp.mkdir(parents=True, exist_ok=True)
    demo = Demo(space, tmp)
    cfg = demo.config()
    return dataclasses.replace(demo.deps(cfg, ScriptedChat(script=[""]), tmp), gates=gates)


def _model(space: Any, bias: float) -> MembershipModel:
    calibration = Calibration(keep=0.95, n_train_pos=1, n_train_neg=1, n_heldout_pos=1, n_heldout_neg=1,
                              heldout_pos_accept=1.0, heldout_neg_accept=0.0, heldout_auprc=1.0, l2=0.1)
    return MembershipModel(task="toxicity", space=space.describe(), bias=bias, weights=(0.0,) * space.d_sae,
                           threshold=0.5, calibration=calibration)


@pytest.mark.parametrize(("bias", "kind"), [(-3.0, "not-task-member"), (3.0, None)])
def test_the_classifier_gate_names_probability_and_threshold(tiny_space: Any, tmp_path: Path, bias: float,
                                                             kind: str | None) -> None:
    target = Demo(tiny_space, tmp_path).target
    deps = _deps(tiny_space, tmp_path, QualityGates(membership=_model(tiny_space, bias)), target)
    state = GenState(missing=(target,), task_features=(target,), round=1,
                     drafts=(Draft(feature=target, kind="draft", text=HIT, prompt_hash="p"),))
    update = verify(state, Runtime(context=deps))
    if kind is None:
        assert update["rejections"] == {} and update["counts"] == {target: 1}
        return
    assert update["rejections"] == {kind: 1}
    assert "membership probability 0.047 < threshold 0.500" in update["feedback"][target]
    assert target not in update["best"]  # an off-task draft must not be the next prompt's Good example


def test_gated_text_drafts_are_not_kept_as_examples_and_no_gates_keeps_the_old_verdicts(
        tiny_space: Any, tmp_path: Path) -> None:
    target = Demo(tiny_space, tmp_path).target
    draft = Draft(feature=target, kind="draft", text=HIT, prompt_hash="p")
    state = GenState(missing=(target,), task_features=(target,), round=1, drafts=(draft,))
    gated = verify(state, Runtime(context=_deps(tiny_space, tmp_path / "a", QualityGates(copies=CopyIndex([HIT])),
                                                target)))
    assert gated["rejections"] == {"regurgitation": 1} and gated["best"] == {} and gated["worst"] == {}
    plain = verify(state, Runtime(context=_deps(tiny_space, tmp_path / "b", None, target)))
    assert plain["rejections"] == {} and plain["counts"] == {target: 1}


def test_make_gates_follows_the_config(tiny_space: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    demo = Demo(tiny_space, tmp_path)
    task = TaskSpec(name="bare", guideline="g", builtin=False)  # no corpora: no classifier to fit
    on = make_gates(demo.config(), demo.catalog(), SEED, task, tiny_space)
    assert on.meta is not None and on.copies is not None and on.membership is None
    assert on.novelty_distance == pytest.approx(0.32) and on.copies.copy(HIT).share == 1.0
    off = make_gates(demo.config(gate_meta_text=False, gate_regurgitation=False, novelty_distance=0.0),
                     demo.catalog(), SEED, task, tiny_space)
    assert off.meta is None and off.copies is None and off.novelty_distance is None
    judged = make_gates(demo.config(), demo.catalog(), SEED, task, tiny_space,
                        judge_chat=ScriptedChat(script=["Final Decision: [[No]]"]))
    assert isinstance(judged.judge, ChatMembershipJudge)


def test_the_llm_judge_reads_the_decision_and_asks_again_when_there_is_none() -> None:
    yes = ChatMembershipJudge(ScriptedChat(script=["Insults a group. Final Decision: [[Probably]]"]), "toxicity", "g")
    assert yes.judge("you are all idiots")[0] is True
    chat = ScriptedChat(script=["It is a sentence about a park.", "No"])
    no = ChatMembershipJudge(chat, "toxicity", "toxic text")
    member, why = no.judge("a walk in the park")
    assert member is False and "decision No" in why and len(chat.prompts) == 2
    assert "toxic text" in chat.prompts[0] and "a walk in the park" in chat.prompts[0]


class Unreachable:
    """A chat model whose endpoint is down (what the client raises after its retries), or that breaks otherwise."""

    def __init__(self, err: BaseException) -> None:
        self.err = err

    def invoke(self, messages: object) -> object:
        raise self.err


def test_a_judge_endpoint_fault_is_a_transient_error_and_a_bug_is_not_hidden() -> None:
    down = ChatMembershipJudge(Unreachable(ConnectionError("refused")), "toxicity", "g", "judge-7b")  # type: ignore[arg-type]
    with pytest.raises(TransientError, match=r"membership judge 'judge-7b': ConnectionError"):
        down.judge("you are all idiots")
    broken = ChatMembershipJudge(Unreachable(KeyError("choices")), "toxicity", "g")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        broken.judge("you are all idiots")


def test_the_membership_judge_endpoint_is_checked_before_a_run_and_local_is_not() -> None:
    from fac.graph.runner import preflight_endpoints

    cfg = RunConfig(seed="seed.jsonl", task="toxicity", membership_judge_model="judge-7b",
                    membership_judge_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TransientError, match=r"membership-judge endpoint http://127.0.0.1:9/v1 is unreachable .*"
                                             r"--membership-judge-base-url"):
        preflight_endpoints(cfg)
    preflight_endpoints(cfg.model_copy(update={"membership_judge_model": "local"}))  # in-process: nothing to check
    preflight_endpoints(cfg.model_copy(update={"gate_membership": False}))  # the gate is off: no judge is asked
