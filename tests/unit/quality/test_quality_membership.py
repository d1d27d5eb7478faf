"""Membership: a classifier over SAE scores, anchor vs background, with a threshold calibrated on held-back data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fac.tools.catalog.membership import resolve_membership, stored_path
from fac.tools.catalog.tasks import TaskSpec
from fac.tools.errors import ConfigError, InputError
from fac.tools.quality.membership import MembershipModel, auprc, fit_membership, membership_problem
from fac.tools.space.features import SampleScores

D_SAE = 16
SPACE = {"model": "m", "layer": 3, "sae": "s", "mode": "sae", "threshold": 0.0, "d_sae": D_SAE}


def _scores(active: dict[int, float]) -> SampleScores:
    ids = np.asarray(sorted(active), dtype=np.int32)
    zeros = np.zeros(len(ids), dtype=np.int32)
    return SampleScores("x", ids, np.asarray([active[i] for i in ids], dtype=np.float32), zeros, zeros, 3, False)


def _corpus(features: range, n: int, seed: int) -> list[SampleScores]:
    """Samples firing 2-4 of `features` and 1-2 shared features (0-3), with random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picked = set(rng.choice(list(features), size=rng.integers(2, 5), replace=False).tolist())
        picked |= set(rng.choice(4, size=rng.integers(1, 3), replace=False).tolist())
        out.append(_scores({int(j): float(rng.uniform(0.5, 5.0)) for j in picked}))
    return out


@pytest.fixture(scope="module")
def model() -> MembershipModel:
    positives, negatives = _corpus(range(4, 10), 200, 1), _corpus(range(8, 16), 200, 2)
    return fit_membership(positives, negatives, task="toxicity", space=SPACE, d_sae=D_SAE, keep=0.9)


def test_the_threshold_keeps_the_asked_share_of_held_back_positives(model: MembershipModel) -> None:
    c = model.calibration
    assert c.n_heldout_pos == 40 and c.n_train_pos == 160  # 20 % held back, never trained on
    assert 0.9 <= c.heldout_pos_accept < 0.95
    assert c.heldout_neg_accept < 0.3 and c.heldout_auprc > 0.9


def test_positive_features_raise_the_probability(model: MembershipModel) -> None:
    member, other = _scores({4: 3.0, 5: 3.0, 6: 2.0}), _scores({12: 3.0, 13: 3.0, 14: 2.0})
    assert model.probability(member) > model.threshold > model.probability(other)
    assert membership_problem(model.probability(member), model.threshold) is None
    problem = membership_problem(model.probability(other), model.threshold)
    assert problem is not None and problem.startswith("not-task-member:") and f"{model.threshold:.3f}" in problem


def test_a_saved_model_loads_with_the_same_answers(model: MembershipModel, tmp_path: Path) -> None:
    path = tmp_path / "membership.json"
    model.save(path)
    loaded = MembershipModel.load(path)
    sample = _scores({4: 1.0, 9: 2.0, 13: 0.5})
    assert loaded.probability(sample) == pytest.approx(model.probability(sample), abs=1e-5)
    assert loaded.threshold == model.threshold and loaded.calibration == model.calibration


def test_a_model_of_another_space_is_refused(model: MembershipModel) -> None:
    with pytest.raises(ConfigError, match=r"another feature space \(sae: 's' vs now 'other'\).*fac catalog membership"):
        model.check_space({**SPACE, "sae": "other"}, "m.json")
    model.check_space({**SPACE, "threshold": 0.5}, "m.json")  # δ is no part of the space's identity


def test_bad_files_and_too_little_data_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"task": "t"}')
    with pytest.raises(InputError, match=r"bad\.json: not a fac membership model"):
        MembershipModel.load(bad)
    with pytest.raises(InputError, match="no such membership model file"):
        MembershipModel.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="needs >= 10 anchor"):
        fit_membership(_corpus(range(4, 10), 5, 0), _corpus(range(8, 16), 50, 0), task="t", space=SPACE, d_sae=D_SAE)


def test_auprc_is_one_for_a_perfect_ranking_and_pessimistic_on_ties() -> None:
    assert auprc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == pytest.approx(1.0)
    assert auprc(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)


def _task(tmp: Path) -> TaskSpec:
    anchor, background = tmp / "anchor.jsonl", tmp / "background.jsonl"
    anchor.write_text("".join(json.dumps({"text": f"the cat sat on the mat {i % 3}"}) + "\n" for i in range(30)))
    background.write_text("".join(json.dumps({"text": f"blue red fast slow {i % 3}"}) + "\n" for i in range(30)))
    return TaskSpec(name="mytask", guideline="g", anchor=anchor, background=background, builtin=False)


def test_a_run_fits_the_model_once_stores_it_and_then_reuses_it(tiny_space: Any, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    task = _task(tmp_path)
    first = resolve_membership(tiny_space, task)
    assert first is not None and stored_path("mytask", tiny_space).is_file()
    monkeypatch.setattr("fac.tools.catalog.membership.fit_task_membership",
                        lambda *a, **k: pytest.fail("the stored model must be reused"))
    again = resolve_membership(tiny_space, task)
    assert again is not None and again.weights == pytest.approx(first.weights, abs=1e-5)


def test_a_given_file_of_another_space_is_refused_and_no_corpora_means_no_gate(
        tiny_space: Any, tmp_path: Path, model: MembershipModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "other.json"
    model.save(path)
    with pytest.raises(ConfigError, match=r"other\.json: the membership model of task 'toxicity' was fitted"):
        resolve_membership(tiny_space, _task(tmp_path), path)
    assert resolve_membership(tiny_space, TaskSpec(name="bare", guideline="g", builtin=False)) is None
