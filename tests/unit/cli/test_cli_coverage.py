"""`fac coverage` end to end on the tiny space: JSON and rich reports, one-line errors with exit code 2."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from fac.commands import coverage as coverage_command
from fac.commands.options import SpaceOptions
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord

SEED = ["the cat sat on the mat", "a dog ran home", "i hate stupid people"]
OTHER = ["we love kind people", "why is it not good", "the red dog is fast"]


_ACTIVE: dict[tuple[str, ...], list[set[int]]] = {}  # the tiny model is the same in every test


def active_sets(space: Any, texts: Sequence[str]) -> list[set[int]]:
    key = tuple(texts)
    if key not in _ACTIVE:
        _ACTIVE[key] = [set(s.feature_ids[s.scores > 0].tolist()) for s in space.score(texts)]
    return _ACTIVE[key]


@pytest.fixture()
def setup(tiny_space: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The tiny space behind every --model/--sae, a seed file and a catalog: 3 seed features, 2 missing ones."""
    monkeypatch.setattr(SpaceOptions, "load", lambda self: tiny_space)
    seed_active = set().union(*active_sets(tiny_space, SEED))
    hit = sorted(seed_active)[:3]
    miss = sorted(set().union(*active_sets(tiny_space, OTHER)) - seed_active)[:2]
    records = [FeatureRecord(feature=j, relevant=True, reason=f"because {j}", activation_rate=0.1 * (i + 1),
                             explanation=f"detects thing {j}", method="contrast",
                             evidence=(FeatureEvidence(score=2.0, span=f"span{j}", sample="s"),))
               for i, j in enumerate(hit + miss)]
    catalog = Catalog(task="toxicity", method="contrast", space=tiny_space.describe(), records=tuple(records))
    catalog_path = tmp_path / "catalog.json"
    catalog.save_json(catalog_path)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in SEED))
    return {"space": tiny_space, "hit": hit, "miss": miss, "catalog": catalog_path, "seed": seed, "tmp": tmp_path,
            "model": catalog}


def test_json_report_has_fac_and_feature_lists(setup: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--catalog", str(setup["catalog"]),
                            "--json", "--embedder", "hashing"], capsys, monkeypatch)
    assert code == 0
    report = json.loads(out)
    assert report["fac"] == pytest.approx(3 / 5) and report["n_task_features"] == 5
    assert report["covered"] == setup["hit"] and report["missing"] == setup["miss"]
    per_sample = active_sets(setup["space"], SEED)
    assert report["counts"] == {str(j): sum(j in s for s in per_sample) for j in setup["hit"] + setup["miss"]}
    assert set(report["baselines"]) >= {"distinct_1", "distinct_2", "entropy_1", "embedding_cosine_distance"}
    assert report["length"]["mean_tokens"] == pytest.approx(np.mean([6, 4, 4]))
    assert report["n_samples"] == 3 and report["task"] == "toxicity" and report["strict"] is False
    d_sae = setup["space"].d_sae
    assert report["text_sparsity"] == pytest.approx(np.mean([len(s) for s in per_sample]) / d_sae)


def test_rich_report_shows_the_formula_and_the_missing_features(setup: dict[str, Any],
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--catalog", str(setup["catalog"]),
                            "--embedder", "none", "--top-missing", "1"], capsys, monkeypatch)
    assert code == 0
    assert "FAC 0.600" in out and "3 / 5" in out and "missing 2" in out
    last_missing = setup["miss"][-1]  # highest anchor activation rate: listed first, the only one shown
    assert f"detects thing {last_missing}" in out and f"because {last_missing}" in out
    assert f"detects thing {setup['miss'][0]}" not in out and "1 more missing" in out
    assert "distinct_1" in out and "embedding_cosine_distance" not in out


def test_strict_mode_uses_the_judge_on_seed_spans(setup: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    judged: list[int] = []

    def fake_judge(*args: Any) -> Any:
        def check(feature: int, spans: Any) -> bool:
            judged.append(feature)
            assert spans and all(s.sample in SEED for s in spans)
            return feature != setup["hit"][0]
        return check

    checked: list[Any] = []
    monkeypatch.setattr(coverage_command, "_judge_check", fake_judge)
    monkeypatch.setattr("fac.tools.llm.preflight.preflight", lambda endpoint, **kw: checked.append(endpoint))
    code, out, _ = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--catalog", str(setup["catalog"]),
                            "--json", "--embedder", "none", "--strict", "--judge-model", "fake"], capsys, monkeypatch)
    assert code == 0
    assert [(e.role, e.model) for e in checked] == [("judge", "fake")]  # the endpoint was checked first
    report = json.loads(out)
    assert sorted(judged) == setup["hit"] and report["rejected"] == [setup["hit"][0]]
    assert report["fac"] == pytest.approx(2 / 5) and report["fac_activated"] == pytest.approx(3 / 5)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("case", "expected"), [
    ("missing_seed", "no such file"),
    ("empty_seed", "empty"),
    ("malformed_line", "seed.jsonl:2: malformed JSON"),
    ("missing_field", "no field 'body'"),
    ("other_space", "layer: catalog 7"),
    ("other_task", "for task 'toxicity', not 'sycophancy'"),
    ("unknown_task", "unknown task 'nope'"),
    ("missing_catalog", "no such catalog file"),
    ("not_a_catalog", "not a fac catalog"),
    ("strict_without_judge", "--judge-model"),
])
def test_bad_input_is_one_line_and_exit_code_2(case: str, expected: str, setup: dict[str, Any],
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tmp, seed, catalog = setup["tmp"], str(setup["seed"]), str(setup["catalog"])
    task = ["--task", "toxicity"]
    args = {
        "missing_seed": [str(tmp / "absent.jsonl"), *task, "--catalog", catalog],
        "empty_seed": [str(_write(tmp / "empty.jsonl", "\n")), *task, "--catalog", catalog],
        "malformed_line": [str(_write(tmp / "bad_seed.jsonl",
                                        '{"text": "a"}\n{"text": \n')), *task, "--catalog", catalog],
        "missing_field": [seed, *task, "--catalog", catalog, "--text-field", "body"],
        "other_space": [seed, *task, "--catalog", str(tmp / "other.json")],
        "other_task": [seed, "--task", "sycophancy", "--catalog", catalog],
        "unknown_task": [seed, "--task", "nope"],
        "missing_catalog": [seed, *task, "--catalog", str(tmp / "nowhere.json")],
        "not_a_catalog": [seed, *task, "--catalog", str(_write(tmp / "bad.json", '{"task": 1}'))],
        "strict_without_judge": [seed, *task, "--catalog", catalog, "--strict"],
    }[case]
    if case == "other_space":
        setup["model"].model_copy(update={"space": {**setup["model"].space, "layer": 7}}).save_json(tmp / "other.json")
    code, out, err = run_cli(["coverage", *args, "--embedder", "none"], capsys, monkeypatch)
    assert code == 2
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert expected in err and "Traceback" not in err and out == ""


def test_without_catalog_flag_the_task_catalog_stored_in_chroma_is_used(setup: dict[str, Any],
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.tools.catalog.store import CatalogStore
    from fac.tools.text.embeddings import HashingEmbedder
    from fac.tools.text.store import chroma_client

    chroma = setup["tmp"] / "chroma"
    CatalogStore(chroma_client(chroma), HashingEmbedder()).save(setup["model"], setup["space"].key)
    code, out, _ = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--chroma-dir", str(chroma),
                            "--json", "--embedder", "none"], capsys, monkeypatch)
    assert code == 0
    report = json.loads(out)
    assert report["missing"] == setup["miss"] and report["fac"] == pytest.approx(3 / 5)


@pytest.mark.parametrize(("bar", "expected_code"), [(0.5, 0), (0.6, 0), (0.61, 1), (1.0, 1)])
def test_fail_under_fails_a_ci_job_only_below_the_bar(setup: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch, bar: float,
                                                     expected_code: int) -> None:
    code, out, err = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--catalog", str(setup["catalog"]),
                              "--json", "--embedder", "hashing", "--fail-under", str(bar)], capsys, monkeypatch)
    assert code == expected_code, err
    assert json.loads(out)["fac"] == pytest.approx(0.6)  # the report is still written
    assert ("--fail-under" in err) == (expected_code == 1)


def test_fail_under_outside_0_1_is_refused_before_the_model_loads(setup: dict[str, Any],
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.commands.options import SpaceOptions

    monkeypatch.setattr(SpaceOptions, "load", lambda self: pytest.fail("the model loaded"))
    code, _, err = run_cli(["coverage", str(setup["seed"]), "--task", "toxicity", "--fail-under", "1.5"], capsys,
                           monkeypatch)
    assert code == 2 and "--fail-under" in err and "Traceback" not in err


def test_select_picks_pool_rows_covering_what_the_seed_misses_and_reports_each_step(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    pool = setup["tmp"] / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t, "id": n}) + "\n" for n, t in enumerate([*SEED, *OTHER])))
    out = setup["tmp"] / "chosen.jsonl"
    code, stdout_text, err = run_cli(["select", str(pool), "--task", "toxicity", "--catalog", str(setup["catalog"]),
                                      "--seed", str(setup["seed"]), "--goal-fac", "1.0", "--out", str(out)],
                                     capsys, monkeypatch)
    assert code == 0, err
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    assert chosen and all(row["text"] in OTHER for row in chosen)  # seed rows add nothing the seed lacks
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["fac_seed"] == pytest.approx(3 / 5) and report["fac_after"] == pytest.approx(1.0)
    assert sorted(j for step in report["picks"] for j in step["added"]) == setup["miss"]
    assert [step["fac"] for step in report["picks"]] == sorted(step["fac"] for step in report["picks"])
    assert "FAC 0.600 -> 1.000" in stdout_text


def test_select_needs_exactly_one_of_k_and_goal(setup: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["select", str(setup["seed"]), "--task", "toxicity", "--out", str(setup["tmp"] / "x.jsonl")],
                           capsys, monkeypatch)
    assert code == 2 and "exactly one of --k" in err and "Traceback" not in err
