"""Precision: the CPU default runs matmuls in bf16 under autocast, fp32 stays available, and scores agree."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fac.tools.errors import ConfigError
from fac.tools.space import models
from fac.tools.space.features import FeatureSpace
from fac.tools.space.models import AUTOCAST, Precision, pick_precision

TEXTS = ["the cat sat on the mat and the dog ran fast", "why is it bad", "i love kind people , not stupid ones"]


def test_auto_is_bf16_weights_on_a_cpu_with_bf16_units_and_on_gpu_else_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "cpu_has_bf16_units", lambda: True)
    assert pick_precision("auto", "cpu") == Precision(torch.bfloat16)
    monkeypatch.setattr(models, "cpu_has_bf16_units", lambda: False)
    assert pick_precision("auto", "cpu") == Precision(torch.float32)
    assert pick_precision("auto", "cuda") == Precision(torch.bfloat16)


def test_each_dtype_flag_names_its_precision() -> None:
    names = {flag: pick_precision(flag, "cpu").name for flag in ("float32", "bfloat16", "float16", AUTOCAST)}
    assert names == {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16",
                     AUTOCAST: "float32+bfloat16-autocast"}
    with pytest.raises(ConfigError, match=r"dtype 'int4' is not one of auto, float32, bfloat16, float16, "):
        pick_precision("int4", "cpu")


def test_autocast_runs_the_blocks_in_bf16_and_keeps_the_residual_fp32(tiny_space: FeatureSpace) -> None:
    reader = replace(tiny_space.reader, autocast=torch.bfloat16)
    seen: list[torch.dtype] = []
    proj = reader.model.model.layers[0].mlp.down_proj
    handle = proj.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    try:
        hidden = reader.hidden(tiny_space.tokenize(TEXTS[:1]))
    finally:
        handle.remove()
    assert seen == [torch.bfloat16] and hidden.dtype == torch.float32


def test_bf16_autocast_scores_agree_with_fp32_on_the_active_features(tiny_space: FeatureSpace) -> None:
    fast = replace(tiny_space, reader=replace(tiny_space.reader, autocast=torch.bfloat16), cache=None)
    exact = replace(tiny_space, cache=None)
    for a, b in zip(fast.score(TEXTS), exact.score(TEXTS), strict=True):
        shared = np.intersect1d(a.feature_ids, b.feature_ids)
        assert len(shared) / len(np.union1d(a.feature_ids, b.feature_ids)) >= 0.75
        np.testing.assert_allclose([a.score_of(j) for j in shared], [b.score_of(j) for j in shared], rtol=0.1,
                                   atol=0.05)


def test_the_precision_is_part_of_the_description_and_the_score_key(tiny_space: FeatureSpace) -> None:
    fast = replace(tiny_space, reader=replace(tiny_space.reader, autocast=torch.bfloat16))
    assert tiny_space.describe()["precision"] == "float32"
    assert fast.describe()["precision"] == "float32+bfloat16-autocast"
    assert fast.key == tiny_space.key and fast.score_key != tiny_space.score_key
    assert fast.score_key.endswith("/float32+bfloat16-autocast") and tiny_space.score_key.endswith("/float32")
