"""Per-feature activation floors: typical strengths, filtering, saving beside an SAE, the space applying them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_sae

from fac.tools.errors import ConfigError
from fac.tools.space.features import FeatureSpace, SampleScores
from fac.tools.space.floors import FLOORS_FILE, FeatureFloors, load_floors, save_floors, typical_strengths
from fac.tools.space.sae_training import save_sae
from fac.tools.space.saes import load_sae


def _scores(ids: list[int], values: list[float]) -> SampleScores:
    n = len(ids)
    return SampleScores("t", np.array(ids, dtype=np.int32), np.array(values, dtype=np.float32),
                        np.zeros(n, dtype=np.int32), np.ones(n, dtype=np.int32), 3, False)


def test_typical_strength_is_the_median_over_the_texts_a_latent_fires_in() -> None:
    scored = [_scores([0, 2], [1.0, 5.0]), _scores([0], [3.0]), _scores([0, 2], [2.0, 7.0])]
    strengths, fired = typical_strengths(scored, d_sae=4)
    assert strengths.tolist() == [2.0, 0.0, 6.0, 0.0]  # latent 2: even count, the mean of the middle two
    assert fired.tolist() == [3, 0, 2, 0]


def test_a_score_naming_a_latent_beyond_the_sae_is_refused() -> None:
    with pytest.raises(ConfigError, match="latent 9"):
        typical_strengths([_scores([9], [1.0])], d_sae=4)


def test_above_drops_exactly_the_features_at_or_below_their_floor() -> None:
    record = _scores([0, 1, 3], [1.0, 0.5, 4.0])
    kept = record.above(np.array([0.5, 0.5, 0.0, 4.0], dtype=np.float32))
    assert kept.feature_ids.tolist() == [0] and kept.scores.tolist() == [1.0]
    assert record.above(np.zeros(4, dtype=np.float32)) is record


@pytest.mark.parametrize("relative", [-0.1, 1.0, float("nan")])
def test_a_relative_floor_outside_zero_to_one_is_refused(relative: float) -> None:
    with pytest.raises(ConfigError, match="relative floor"):
        FeatureFloors(np.ones(3, dtype=np.float32), relative)


def test_floors_round_trip_beside_an_sae_without_changing_its_id(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae", fp16=False)
    before = load_sae(str(tmp_path / "sae"))[1]
    floors = FeatureFloors(np.linspace(0, 2, 128).astype(np.float32), 0.25, {"texts": 7})
    save_floors(tmp_path / "sae", floors, np.ones(128, dtype=np.int64))
    loaded = load_floors(tmp_path / "sae")
    assert loaded is not None and loaded.relative == 0.25 and loaded.meta == {"texts": 7}
    assert np.array_equal(loaded.strengths, floors.strengths) and loaded.identity == floors.identity
    assert load_sae(str(tmp_path / "sae"))[1] == before  # raw scores, and so cached ones, are unchanged
    assert floors.with_relative(0.5).identity != floors.identity


def test_a_damaged_floors_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / FLOORS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="fac sae calibrate"):
        load_floors(tmp_path)


def test_the_space_applies_floors_to_fresh_and_cached_scores(tiny_space: Any) -> None:
    texts = ["the cat sat on the mat", "they hate the dog"]
    raw = tiny_space.score(texts)
    strengths, _ = typical_strengths(raw, tiny_space.d_sae)
    floored = dataclasses.replace(tiny_space, floors=FeatureFloors(strengths, 0.9))
    fresh = dataclasses.replace(floored, cache=None).score(texts)
    cached = floored.score(texts)  # raw scores come from the cache, the floors apply after it
    for r, f, c in zip(raw, fresh, cached, strict=True):
        expected = r.feature_ids[r.scores > 0.9 * strengths[r.feature_ids]]
        assert f.feature_ids.tolist() == expected.tolist() == c.feature_ids.tolist()
        assert 0 < len(expected) < len(r.feature_ids)
    assert floored.describe()["floors"].startswith("rho=0.9@") and "floors" not in tiny_space.describe()
    assert tiny_space.score(texts)[0].feature_ids.tolist() == raw[0].feature_ids.tolist()  # cache kept raw


def test_floors_of_another_width_are_refused(tiny_space: Any) -> None:
    with pytest.raises(ConfigError, match="fac sae calibrate"):
        dataclasses.replace(tiny_space, floors=FeatureFloors(np.ones(7, dtype=np.float32), 0.5))


def test_load_reads_the_floors_of_an_sae_directory_unless_told_not_to(tmp_path: Path, monkeypatch: Any) -> None:
    from conftest import make_lm, make_tokenizer

    import fac.tools.space.models as models

    save_sae(make_sae(), tmp_path / "sae", fp16=False)
    save_floors(tmp_path / "sae", FeatureFloors(np.ones(128, dtype=np.float32), 0.5), np.ones(128, dtype=np.int64))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: models.LoadedModel(make_lm(), make_tokenizer(), "tiny"))
    with_floors = FeatureSpace.load("tiny", str(tmp_path / "sae"), use_cache=False)
    without = FeatureSpace.load("tiny", str(tmp_path / "sae"), use_cache=False, use_floors=False)
    assert with_floors.floors is not None and with_floors.floors.relative == 0.5
    assert without.floors is None
