"""The Python API on the tiny model: data in memory, coverage, the agent, resume, and the README's example."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import datasets
import pytest
from fakes import ScriptedChat

import fac
from fac import api
from fac.graph import runner
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.errors import InputError

REPO = Path(__file__).resolve().parents[2]
SEED = ["the cat sat on the mat", "the dog ran home"]
HIT = "i hate stupid people"
ANCHOR = "we hate them all"  # the evidence a prompt shows: a draft copying it is regurgitation


@pytest.fixture()
def world(tiny_space: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The tiny space behind fac.load_space(), a catalog with one feature the seed misses, a scripted writer."""
    seen = {int(j) for s in tiny_space.score(SEED) for j in s.active(0.0)}
    target = next(int(j) for j in tiny_space.score([HIT])[0].active(0.0) if int(j) not in seen)
    records = tuple(FeatureRecord(feature=j, relevant=True, activation_rate=0.1, method="contrast",
                                  evidence=(FeatureEvidence(score=2.0, span="hate", sample=ANCHOR),))
                    for j in [*sorted(seen)[:3], target])
    catalog = Catalog(task="toxicity", method="contrast", space=tiny_space.describe(), records=records)
    chat = ScriptedChat(script=[HIT])
    monkeypatch.setattr(api, "_load_cached", lambda spec: tiny_space)
    monkeypatch.setattr(api, "load_catalog", lambda *a, **k: catalog)
    monkeypatch.setattr(runner, "load_catalog", lambda cfg, space: catalog)
    monkeypatch.setattr(runner, "make_writer", lambda cfg, space=None: chat)
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return {"space": tiny_space, "catalog": catalog, "target": target, "chat": chat}


@pytest.mark.parametrize("data", [
    SEED,
    [{"text": t} for t in SEED],
    datasets.Dataset.from_list([{"text": t, "label": 1} for t in SEED]),
    [[{"role": "user", "content": t}] for t in SEED],
])
def test_data_in_memory_reads_as_samples(data: Any) -> None:
    samples = fac.as_samples(data)
    assert [s if isinstance(s, str) else s[0]["content"] for s in samples] == SEED


def test_bad_rows_in_memory_are_one_line_errors_naming_the_row() -> None:
    with pytest.raises(InputError, match=r"data\[2\]: empty"):
        fac.as_samples(["fine", "  "])
    with pytest.raises(InputError, match=r"data\[1\]: expected a text"):
        fac.as_samples([42])


def test_coverage_of_a_list_matches_the_same_data_as_a_dataset(world: dict[str, Any]) -> None:
    as_list = fac.coverage(SEED, task="toxicity", baselines=False)
    as_dataset = fac.coverage(datasets.Dataset.from_dict({"text": SEED}), task="toxicity", baselines=False)
    assert as_list.fac == as_dataset.fac == pytest.approx(3 / 4)
    assert as_list.missing == as_dataset.missing == [world["target"]]


def test_synthesize_from_memory_returns_a_dataset_and_resumes(world: dict[str, Any], tmp_path: Path) -> None:
    result = fac.synthesize(SEED, task="toxicity", out=tmp_path / "runs" / "api",
                            goals=fac.Goals(fac=1.0, min_per_feature=1), embedder="hashing")
    assert result.status.stop_reason == "goal" and result.status.fac_now == 1.0
    samples = result.samples
    assert isinstance(samples, datasets.Dataset) and samples["text"] == [HIT]
    assert samples["target_feature"] == [world["target"]]
    assert result.report()["phase"] == "done"
    assert (result.run_dir / "seed.jsonl").read_text().count("\n") == 2  # the seed travels with the run
    again = fac.resume(result.run_dir, min_per_feature=2, max_attempts_per_feature=1)
    assert again.run_id == result.run_id and again.samples["text"] == [HIT]  # nothing duplicated


def test_specs_and_results_pickle_for_pipeline_workers(world: dict[str, Any], tmp_path: Path) -> None:
    spec = fac.SpaceSpec(dtype="float32", threshold=0.5)
    assert pickle.loads(pickle.dumps(spec)) == spec
    result = fac.synthesize(SEED, task="toxicity", out=tmp_path / "runs" / "p", embedder="hashing",
                            goals=fac.Goals(fac=1.0, min_per_feature=1))
    copy = pickle.loads(pickle.dumps(result))
    assert copy.status == result.status and copy.samples["text"] == result.samples["text"]


def test_the_readme_example_runs(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"<!-- api-example[^>]*-->\n```python\n(.*?)```", readme, re.S)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out  # the tiny model reads the example's words as unknown tokens
    coverage_line, run_line = printed.splitlines()
    assert re.fullmatch(r"FAC 0\.\d{3}: [1-4] of 4 task features missing", coverage_line)
    before, after = map(float, re.findall(r"\d\.\d{3}", run_line))
    assert after > before and " stop: " in run_line
    assert Path("runs/api-demo/accepted.jsonl").read_text().count(HIT) == 1
