"""Text-diversity baselines and streaming length statistics against hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fac.tools.text.diversity import (
    LengthStats,
    Reservoir,
    distinct_n,
    lengths,
    mean_pairwise_cosine_distance,
    ngram_entropy,
    text_baselines,
)
from fac.tools.text.embeddings import HashingEmbedder


def test_distinct_n_counts_unique_over_all_ngrams_across_the_corpus() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(["A b.", "a B"], 1) == pytest.approx(3 / 5)  # case folded, '.' is a word
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


def test_ngram_entropy_is_in_bits() -> None:
    assert ngram_entropy(["a b c d"], 1) == pytest.approx(2.0)
    assert ngram_entropy(["a a a a"], 1) == pytest.approx(0.0)
    assert ngram_entropy(["a a b"], 1) == pytest.approx(-(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3))
    assert ngram_entropy([""], 2) == 0.0


def test_mean_pairwise_cosine_distance_matches_brute_force_over_all_pairs() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    brute = np.mean([1 - unit[i] @ unit[j] for i, j in itertools.permutations(range(30), 2)])
    assert mean_pairwise_cosine_distance(vectors) == pytest.approx(brute, rel=1e-9)


def test_mean_pairwise_cosine_distance_edge_cases() -> None:
    assert mean_pairwise_cosine_distance(np.ones((5, 3))) == pytest.approx(0.0, abs=1e-12)
    assert mean_pairwise_cosine_distance(np.eye(4)) == pytest.approx(1.0)
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(2.0)
    assert mean_pairwise_cosine_distance(np.ones((1, 3))) == 0.0


def test_text_baselines_rank_a_varied_corpus_above_a_repetitive_one() -> None:
    emb = HashingEmbedder(dim=64)
    varied = text_baselines(["the cat sat", "stocks fell sharply", "bake bread at home"], emb)
    repeated = text_baselines(["the cat sat"] * 3, emb)
    for key in ("distinct_1", "distinct_2", "entropy_1", "entropy_2", "embedding_cosine_distance"):
        assert varied[key] > repeated[key], key
    assert "embedding_cosine_distance" not in text_baselines(["x y"])


def test_lengths_counts_words_and_punctuation() -> None:
    assert lengths(["Hello, world!", ""]) == [4, 0]


def test_reservoir_keeps_everything_until_full_then_a_seeded_uniform_sample() -> None:
    small: Reservoir[int] = Reservoir(10)
    for i in range(4):
        small.add(i)
    assert small.items == [0, 1, 2, 3]
    hits = np.zeros(20)
    for seed in range(400):
        res: Reservoir[int] = Reservoir(5, seed)
        for i in range(20):
            res.add(i)
        assert len(res.items) == 5 and len(set(res.items)) == 5 and res.seen == 20
        hits[res.items] += 1
    assert hits.min() > 60 and hits.max() < 140  # expected 100 each
    again: Reservoir[int] = Reservoir(5, 7)
    for i in range(20):
        again.add(i)
    first: Reservoir[int] = Reservoir(5, 7)
    for i in range(20):
        first.add(i)
    assert again.items == first.items
    sub = first.sample(3)
    assert len(sub) == 3 and set(sub) <= set(first.items) and sub == first.sample(3)
    assert first.sample(99) == first.items


def test_length_stats_match_numpy() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(1, 50, size=101)
    y = 2 * x + rng.normal(0, 5, size=101)
    stats = LengthStats()
    for a, b in zip(x, y, strict=True):
        stats.add(int(a), float(b))
    summary = stats.summary()
    assert summary["mean_tokens"] == pytest.approx(x.mean())
    assert summary["median_tokens"] == pytest.approx(np.median(x))
    assert summary["max_tokens"] == x.max() and summary["min_tokens"] == x.min()
    assert stats.correlation() == pytest.approx(np.corrcoef(x, y)[0, 1])
    even = LengthStats()
    for a in (1, 2, 3, 10):
        even.add(a, 0.0)
    assert even.median() == 2.5 and even.correlation() == 0.0
