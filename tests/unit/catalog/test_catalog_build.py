"""Catalog building on the tiny model: contrast (files or labels), the LLM judge via a scripted chat model,
and resolve_catalog's order (file, chroma, shipped, build) with its space checks."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from fac.tools.catalog import build as catalog_build
from fac.tools.catalog import resolve as catalog_resolve
from fac.tools.catalog.build import build_catalog
from fac.tools.catalog.contrast import ContrastConfig
from fac.tools.catalog.evidence import collect_stats
from fac.tools.catalog.judge import JudgeCache
from fac.tools.catalog.resolve import resolve_catalog
from fac.tools.catalog.store import CatalogStore
from fac.tools.catalog.tasks import TaskSpec
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.embeddings import HashingEmbedder

TOXIC = ["hate", "kill", "stupid", "bad"]
CALM = ["cat", "dog", "sat", "mat", "red", "blue"]
FILLER = ["the", "a", "and", "is", "on", "very"]


def texts(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words + FILLER) for _ in range(6)) for _ in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def task(tmp_path: Path) -> TaskSpec:
    anchor = write_jsonl(tmp_path / "anchor.jsonl", [{"text": t} for t in texts(TOXIC, 24, 1)])
    background = write_jsonl(tmp_path / "background.jsonl", [{"text": t} for t in texts(CALM, 24, 2)])
    return TaskSpec("toxicity", "Toxic text.", anchor=anchor, background=background)


def test_contrast_marks_features_over_represented_in_task_text(tiny_space: Any, task: TaskSpec) -> None:
    catalog = build_catalog(tiny_space, task, contrast_config=ContrastConfig(min_positive=3))
    assert catalog.method == "contrast" and catalog.space == tiny_space.describe()
    assert catalog.anchor.endswith("anchor.jsonl vs " + str(task.background))
    assert task.anchor is not None and task.background is not None
    pos = collect_stats(tiny_space, [json.loads(line)["text"] for line in task.anchor.read_text().splitlines()])
    bg = collect_stats(tiny_space, [json.loads(line)["text"] for line in task.background.read_text().splitlines()])
    relevant = catalog.task_features()
    assert 3 <= len(relevant) < len(catalog.records)
    for rec in catalog.records:
        assert (rec.stats["pos_active"], rec.stats["bg_active"]) == (pos.counts[rec.feature], bg.counts[rec.feature])
        assert rec.activation_rate == pytest.approx(pos.rate(rec.feature))
        assert bool(rec.evidence) == rec.relevant  # evidence kept for task features only
    for j in relevant:
        rec = catalog.record(j)
        assert rec.stats["pos_rate"] > rec.stats["bg_rate"] and rec.stats["q_value"] < 0.05
        assert rec.stats["log_odds"] >= 1.0 and rec.stats["pos_active"] >= 3
        assert any(word in rec.evidence[0].span for word in TOXIC + FILLER)
    assert set(np.flatnonzero(pos.counts + bg.counts).tolist()) == {r.feature for r in catalog.records}


def test_a_labelled_anchor_gives_the_same_catalog_as_two_files(tiny_space: Any, task: TaskSpec,
                                                               tmp_path: Path) -> None:
    assert task.anchor is not None and task.background is not None
    rows = [{"text": json.loads(line)["text"], "y": "toxic"} for line in task.anchor.read_text().splitlines()]
    rows += [{"text": json.loads(line)["text"], "y": "ok"} for line in task.background.read_text().splitlines()]
    random.Random(3).shuffle(rows)
    labelled = replace(task, anchor=write_jsonl(tmp_path / "mixed.jsonl", rows), background=None, label_field="y",
                       positive_labels=("toxic",))
    a = build_catalog(tiny_space, task)
    b = build_catalog(tiny_space, labelled)
    assert a.task_features() == b.task_features() and len(a.records) == len(b.records)
    assert "[y in toxic]" in b.anchor


def test_labelled_anchor_errors_name_the_file_line_and_labels(tiny_space: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "the cat", "y": "a"}, {"text": "a dog"}])
    spec = TaskSpec("t", "g", anchor=path, label_field="y", positive_labels=("a",))
    with pytest.raises(InputError, match=r"mixed.jsonl:2: no field 'y'"):
        build_catalog(tiny_space, spec)
    only = write_jsonl(tmp_path / "one.jsonl", [{"text": "the cat", "y": "a"}])
    with pytest.raises(InputError, match="only samples with y in"):
        build_catalog(tiny_space, replace(spec, anchor=only))


def test_contrast_without_background_is_refused_before_scoring(tiny_space: Any, task: TaskSpec) -> None:
    with pytest.raises(ConfigError, match="--background"):
        build_catalog(tiny_space, replace(task, background=None))
    with pytest.raises(ConfigError, match="no anchor"):
        build_catalog(tiny_space, replace(task, anchor=None))
    with pytest.raises(ConfigError, match="chat model"):
        build_catalog(tiny_space, task, "judge")


class ScriptedJudge(BaseChatModel):
    """Explains a feature as violent iff its first span says "kill"; verifies yes; relevant iff violent."""

    calls: list[str]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        system, user = str(messages[0].text), str(messages[-1].text)
        if "interpret a neural network" in system:
            step = "explain"
            first_span = next(line for line in user.splitlines() if line.startswith("Span 1:"))
            reply = "Words about violence." if "kill" in first_span else "Everyday filler words."
        elif "checking a proposed description" in system:
            step, reply = "verify", "Fits. Final Decision: [[Yes]]"
        else:
            step = "relevance"
            reply = "Violence is toxic. Final Decision: [[Yes]]" if "violence" in user else "Final Decision: [[No]]"
        self.calls.append(step)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])


def test_the_judge_method_explains_verifies_and_judges_through_the_chat_model(tiny_space: Any, task: TaskSpec,
                                                                            tmp_path: Path) -> None:
    chat = ScriptedJudge(calls=[])
    cache = JudgeCache(tmp_path / "judge.sqlite")
    catalog = build_catalog(tiny_space, task, "judge", chat, cache, judge_model_name="scripted", max_features=6)
    assert catalog.method == "judge" and len(catalog.records) == 6
    assert chat.calls.count("explain") == 6 and chat.calls.count("verify") == 6
    pos = collect_stats(tiny_space, [json.loads(line)["text"] for line in task.anchor.read_text().splitlines()])
    most_frequent = sorted(range(tiny_space.d_sae), key=lambda j: (-pos.counts[j], j))[:6]
    assert sorted(most_frequent) == [r.feature for r in catalog.records]
    for rec in catalog.records:
        assert rec.method == "judge" and rec.evidence and rec.explanation in {"Words about violence.",
                                                                               "Everyday filler words."}
        assert rec.relevant == (rec.explanation == "Words about violence.") == (rec.decision == "Yes")
        assert rec.relevant == ("kill" in rec.evidence[0].span)
    assert 0 < len(catalog.task_features()) < 6
    n_calls = len(chat.calls)
    again = build_catalog(tiny_space, task, "judge", chat, cache, judge_model_name="scripted", max_features=6)
    assert again == catalog and len(chat.calls) == n_calls  # every answer came from the cache


def test_contrast_order_gives_a_capped_judge_the_most_over_represented_features(tiny_space: Any, task: TaskSpec,
                                                                               tmp_path: Path) -> None:
    contrast_catalog = build_catalog(tiny_space, task, min_count=1)
    relevant = [r for r in contrast_catalog.records if r.relevant]
    by_effect = sorted(relevant, key=lambda r: (-r.stats["log_odds"], r.feature))
    assert len(by_effect) >= 3
    chat = ScriptedJudge(calls=[])
    judged = build_catalog(tiny_space, task, "judge", chat, JudgeCache(tmp_path / "j.sqlite"), max_features=3,
                           judge_order="contrast")
    assert [r.feature for r in judged.records] == sorted(r.feature for r in by_effect[:3])
    frequency = build_catalog(tiny_space, task, "judge", chat, JudgeCache(tmp_path / "j.sqlite"), max_features=3)
    assert {r.feature for r in frequency.records} != {r.feature for r in judged.records}
    with pytest.raises(ConfigError, match=r"--judge-order contrast\) needs background text"):
        build_catalog(tiny_space, replace(task, background=None), "judge", chat, judge_order="contrast")


@pytest.fixture()
def store(tmp_path: Path) -> CatalogStore:
    return CatalogStore(chromadb.PersistentClient(path=str(tmp_path / "chroma")), HashingEmbedder(32))


def test_load_or_build_builds_once_then_reads_the_stored_catalog(tiny_space: Any, task: TaskSpec, store: CatalogStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_resolve, "get_task", lambda name, guideline_file=None: task)
    builds: list[str] = []
    real_build = catalog_build.build_catalog
    monkeypatch.setattr(catalog_resolve, "build_catalog", lambda *a, **k: builds.append("x") or real_build(*a, **k))
    first = resolve_catalog(tiny_space, "toxicity", store=store)
    second = resolve_catalog(tiny_space, "toxicity", store=store)
    assert builds == ["x"] and first == second and store.load("toxicity", tiny_space.key) == first


def test_a_shipped_catalog_is_used_only_in_its_own_space(tiny_space: Any, task: TaskSpec, store: CatalogStore,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_catalog(tiny_space, task)
    shipped_file = tmp_path / "shipped.json"
    marked = built.model_copy(update={"anchor": "shipped"})
    marked.save_json(shipped_file)
    shipped_task = replace(task, catalog=shipped_file)
    monkeypatch.setattr(catalog_resolve, "get_task", lambda name, guideline_file=None: shipped_task)
    assert resolve_catalog(tiny_space, "toxicity", store=store).anchor == "shipped"
    assert store.find("toxicity") == []  # the shipped file is read, not copied
    other = marked.model_copy(update={"space": {**marked.space, "sae": "another-sae"}})
    other.save_json(shipped_file)
    rebuilt = resolve_catalog(tiny_space, "toxicity", store=store)
    assert rebuilt.anchor != "shipped" and rebuilt.task_features() == built.task_features()


def test_a_catalog_file_from_another_space_is_refused_naming_what_differs(tiny_space: Any, task: TaskSpec,
                                                                        tmp_path: Path) -> None:
    catalog = build_catalog(tiny_space, task)
    path = tmp_path / "c.parquet"
    catalog.model_copy(update={"space": {**catalog.space, "layer": 3, "model": "other"}}).save_parquet(path)
    with pytest.raises(ConfigError) as err:
        resolve_catalog(tiny_space, "toxicity", path)
    message = str(err.value)
    assert "model: catalog 'other' vs now 'tiny-llama'" in message and "layer: catalog 3 vs now 1" in message
    assert "sae:" not in message and "\n" not in message
    catalog.save_json(tmp_path / "c.json")
    assert resolve_catalog(tiny_space, None, tmp_path / "c.json") == catalog
    with pytest.raises(InputError, match="for task 'toxicity', not 'helpfulness'"):
        resolve_catalog(tiny_space, "helpfulness", tmp_path / "c.json")


def test_a_catalog_built_at_another_threshold_is_used_with_a_warning(tiny_space: Any, task: TaskSpec, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    catalog = build_catalog(tiny_space, task)
    catalog.save_json(tmp_path / "c.json")
    with caplog.at_level("WARNING"):
        assert resolve_catalog(tiny_space, "toxicity", tmp_path / "c.json") == catalog
    assert not caplog.records  # same δ: silent
    loaded = resolve_catalog(replace(tiny_space, threshold=0.5), "toxicity", tmp_path / "c.json")
    assert loaded == catalog
    assert "built at threshold δ=0, measuring at δ=0.5" in caplog.text


def test_an_unknown_task_lists_the_known_ones(tiny_space: Any) -> None:
    with pytest.raises(InputError, match="known tasks: helpfulness, instruction_following"):
        resolve_catalog(tiny_space, "toxic-ish")


def test_length_matched_subsets_have_equal_counts_per_length_bin() -> None:
    from fac.tools.catalog.evidence import length_matched
    from fac.tools.space.features import SampleScores

    def sample(n_tokens: int) -> SampleScores:
        empty = np.zeros(0, dtype=np.int32)
        return SampleScores("t", empty, np.zeros(0, dtype=np.float32), empty, empty, n_tokens, False)

    pos = [sample(n) for n in [30] * 40 + [5] * 10]  # task text: mostly long
    bg = [sample(n) for n in [5] * 40 + [30] * 10]  # background: mostly short
    kept_pos, kept_bg = length_matched(pos, bg, bins=4)
    assert sorted(s.n_tokens for s in kept_pos) == sorted(s.n_tokens for s in kept_bg) == [5] * 10 + [30] * 10
    assert all(any(k is p for p in pos) for k in kept_pos)  # drawn from the inputs, in their order
    assert [pos.index(k) for k in kept_pos] == sorted(pos.index(k) for k in kept_pos)


def test_a_length_matched_contrast_counts_only_the_matched_samples(tiny_space: Any, task: TaskSpec,
                                                                   tmp_path: Path) -> None:
    assert task.anchor is not None
    long_calm = [" ".join(["the", "cat", "sat", "on", "the", "mat"] * 3) for _ in range(12)]
    longer = replace(task, background=write_jsonl(tmp_path / "bg.jsonl", [{"text": t} for t in
                                                                          texts(CALM, 24, 2) + long_calm]))
    plain = build_catalog(tiny_space, longer, contrast_config=ContrastConfig(min_positive=3))
    matched = build_catalog(tiny_space, longer, contrast_config=ContrastConfig(min_positive=3), match_length=True)
    assert matched.anchor.endswith("(length-matched)")
    n_pos = {r.stats["pos_n"] for r in matched.records}
    n_bg = {r.stats["bg_n"] for r in matched.records}
    assert n_pos == n_bg == {24.0}  # the 12 long background texts have no task text of their length to match
    assert {r.stats["bg_n"] for r in plain.records} == {36.0}
    with pytest.raises(ConfigError, match="needs background"):
        build_catalog(tiny_space, replace(task, background=None), match_length=True)
