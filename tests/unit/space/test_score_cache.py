"""The score cache: a hit never runs the model, and a different feature space never hits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fac.tools.space.features import FeatureSpace, SampleScores
from fac.tools.space.score_cache import ScoreCache

TEXTS = ["the cat sat on the mat", "dog ran fast", "why is it bad"]


def assert_same(a: SampleScores, b: SampleScores) -> None:
    for name in ("feature_ids", "scores", "span_starts", "span_ends"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.text, a.n_tokens, a.truncated) == (b.text, b.n_tokens, b.truncated)


def count_forwards(space: FeatureSpace, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the reader's early-exit forward; the returned list grows by the batch size of each call."""
    calls: list[int] = []
    forward = space.reader.hidden

    def counted(samples: Any) -> Any:
        calls.append(len(samples))
        return forward(samples)

    monkeypatch.setattr(space.reader, "hidden", counted)
    return calls


def test_a_cache_hit_returns_identical_scores_without_running_the_model(
    tiny_space: FeatureSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tiny_space.score(TEXTS)
    assert tiny_space.cache is not None and tiny_space.cache.count(tiny_space.score_key) == len(TEXTS)

    def refuse(_samples: Any) -> Any:
        raise AssertionError("the model ran on a cached text")

    monkeypatch.setattr(tiny_space.reader, "hidden", refuse)
    for again, before in zip(tiny_space.score(TEXTS), first, strict=True):
        assert_same(again, before)


def test_only_uncached_texts_reach_the_model_and_duplicates_run_once(
    tiny_space: FeatureSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_space.score(TEXTS[:1])
    calls = count_forwards(tiny_space, monkeypatch)
    scored = tiny_space.score([TEXTS[0], TEXTS[1], TEXTS[1], TEXTS[2]])
    assert sum(calls) == 2
    assert_same(scored[1], scored[2])


def test_the_cache_outlives_its_connection(tiny_space: FeatureSpace, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiny_space.score(TEXTS)
    assert tiny_space.cache is not None
    tiny_space.cache.close()
    reopened = replace(tiny_space, cache=ScoreCache(tmp_path / "scores.sqlite"))
    calls = count_forwards(reopened, monkeypatch)
    for again, before in zip(reopened.score(TEXTS), first, strict=True):
        assert_same(again, before)
    assert calls == []


@pytest.mark.parametrize("change", [{"mode": "paper"}, {"sae_id": "another-sae"}, {"model_id": "another-model"},
                                    {"span_tokens": 2}, {"weights_id": "sha256:another"}])
def test_a_different_feature_space_misses_the_cache(
    tiny_space: FeatureSpace, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    tiny_space.score(TEXTS)
    other = replace(tiny_space, **change)  # same cache file
    assert other.score_key != tiny_space.score_key
    calls = count_forwards(other, monkeypatch)
    fresh = other.score(TEXTS)
    assert sum(calls) == len(TEXTS)
    uncached = replace(other, cache=None).score(TEXTS)
    for a, b in zip(fresh, uncached, strict=True):
        assert_same(a, b)


def test_naive_scoring_neither_reads_nor_writes_the_cache(tiny_space: FeatureSpace) -> None:
    tiny_space.score(TEXTS, naive=True)
    assert tiny_space.cache is not None and tiny_space.cache.count(tiny_space.score_key) == 0


def test_two_precisions_do_not_share_cache_entries(tiny_space: FeatureSpace, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    exact = tiny_space.score(TEXTS)
    fast = replace(tiny_space, reader=replace(tiny_space.reader, autocast=torch.bfloat16))
    calls = count_forwards(fast, monkeypatch)
    fast.score(TEXTS)
    assert sum(calls) == len(TEXTS)
    assert fast.cache is not None and fast.cache.count(fast.score_key) == len(TEXTS)
    again = replace(tiny_space, cache=fast.cache).score(TEXTS)  # fp32 still gets its own entries back
    for a, b in zip(again, exact, strict=True):
        assert_same(a, b)


def test_same_named_model_folders_with_other_weights_get_their_own_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import make_lm, make_sae, make_tokenizer

    from fac.tools.space.sae_training import save_sae

    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    save_sae(make_sae(), tmp_path / "sae", fp16=False)
    for seed, folder in ((0, "a"), (1, "b")):
        make_lm(seed=seed).save_pretrained(tmp_path / folder / "ckpt")
        make_tokenizer().save_pretrained(tmp_path / folder / "ckpt")

    def load(folder: str, use_cache: bool = True) -> FeatureSpace:
        return FeatureSpace.load(str(tmp_path / folder / "ckpt"), str(tmp_path / "sae"), device="cpu",
                                 dtype="float32", max_tokens=64, token_budget=256, use_cache=use_cache)

    first, second = load("a"), load("b")
    assert first.model_id == second.model_id  # the same folder name ...
    assert first.key != second.key  # ... but other weights
    first.score(TEXTS)
    cached = second.score(TEXTS)
    uncached = load("b", use_cache=False).score(TEXTS)
    for a, b in zip(cached, uncached, strict=True):
        assert_same(a, b)
    assert any(not np.array_equal(a.feature_ids, b.feature_ids) for a, b in zip(first.score(TEXTS), cached,
                                                                                strict=True))
