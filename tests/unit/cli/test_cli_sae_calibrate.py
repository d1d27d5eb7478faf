"""`fac sae calibrate`: floors written beside the SAE from its training split, then applied by the space."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, make_lm, make_sae, make_tokenizer, run_cli

import fac.tools.space.models as models
from fac.tools.space.features import FeatureSpace
from fac.tools.space.floors import load_floors
from fac.tools.space.models import LoadedModel
from fac.tools.space.sae_training import QUALITY_FILE, save_sae


def _corpus(path: Path, n: int = 60) -> Path:
    rng = random.Random(0)
    words = WORDS[8:]
    path.write_text("".join(json.dumps({"text": " ".join(rng.choices(words, k=rng.randint(3, 9)))}) + "\n"
                            for _ in range(n)))
    return path


def test_calibrate_writes_floors_that_thin_out_activations(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: LoadedModel(make_lm(), make_tokenizer(), "tiny"))
    save_sae(make_sae(), tmp_path / "sae", fp16=False)
    (tmp_path / "sae" / QUALITY_FILE).write_text(json.dumps({"quality": {"explained_variance": 0.5}}))
    corpus = _corpus(tmp_path / "c.jsonl")
    code, _, err = run_cli(["sae", "calibrate", "--sae", str(tmp_path / "sae"), "--corpus", str(corpus),
                              "--relative", "0.9", "--heldout-fraction", "0.2", "--dtype", "float32"],
                             capsys, monkeypatch)
    assert code == 0, err
    floors = load_floors(tmp_path / "sae")
    assert floors is not None and floors.relative == 0.9 and floors.meta["texts"] == 48  # the training split only
    summary = json.loads((tmp_path / "sae" / QUALITY_FILE).read_text())["floors"]
    assert summary["identity"] == floors.identity and summary["heldout_texts"] == 12
    assert summary["median_text_sparsity_floored"] < summary["median_text_sparsity_raw"]
    space = FeatureSpace.load("tiny", str(tmp_path / "sae"), use_cache=False, dtype="float32")
    raw = FeatureSpace.load("tiny", str(tmp_path / "sae"), use_cache=False, dtype="float32", use_floors=False)
    text = "they hate the dog very fast"
    kept, every = space.score([text])[0], raw.score([text])[0]
    expected = every.feature_ids[every.scores > np.float32(0.9) * floors.strengths[every.feature_ids]]
    assert np.array_equal(kept.feature_ids, expected) and len(kept.feature_ids) < len(every.feature_ids)


def test_calibrate_refuses_a_relative_floor_of_one_or_more(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    save_sae(make_sae(), tmp_path / "sae", fp16=False)
    code, _, err = run_cli(["sae", "calibrate", "--sae", str(tmp_path / "sae"), "--corpus",
                            str(_corpus(tmp_path / "c.jsonl")), "--relative", "1.5"], capsys, monkeypatch)
    assert code == 2 and "--relative 1.5: expected a number in [0, 1)" in err and "Traceback" not in err
    assert not (tmp_path / "sae" / "feature_floors.safetensors").exists()
