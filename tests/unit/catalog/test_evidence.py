"""Streaming corpus statistics: activation counts and top-k deduplicated evidence per feature."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from fac.tools.catalog.evidence import TopSpans, collect_split_stats, collect_stats

TEXTS = ["the cat sat on the mat", "dog ran fast", "i hate stupid people", "we love kind people",
         "the red cat is very nice", "they kill the dog now", "why is it bad", "go home now",
         "a blue mat and a red mat", "the cat sat on the mat"]


def test_top_spans_keeps_the_k_best_distinct_spans() -> None:
    top = TopSpans(2)
    top.push(1.0, "The cat", "s1")
    top.push(3.0, "the  CAT", "s2")  # same span after folding: replaces, does not add
    top.push(2.0, "a dog", "s3")
    top.push(0.5, "a mat", "s4")  # below the floor: ignored
    top.push(2.5, "red", "s5")  # evicts the weakest (a dog)
    items = top.items()
    assert [(e.score, e.span, e.sample) for e in items] == [(3.0, "the  CAT", "s2"), (2.5, "red", "s5")]
    assert top.floor == 2.5


def test_counts_and_evidence_equal_a_brute_force_pass(tiny_space: Any) -> None:
    space = replace(tiny_space, cache=None)
    scored = space.score(TEXTS)
    stats = collect_stats(space, TEXTS, top_k=3, chunk_size=3)
    assert stats.n_samples == len(TEXTS)
    expected = np.zeros(space.d_sae, dtype=np.int64)
    for s in scored:
        expected[s.active(space.threshold)] += 1
    np.testing.assert_array_equal(stats.counts, expected)
    assert stats.rate(int(expected.argmax())) == expected.max() / len(TEXTS)
    for feature in np.flatnonzero(expected)[:20].tolist():
        hits = sorted(((h.score, h.span) for s in scored if (h := s.hit(feature)) and h.score > 0), reverse=True)
        evidence = stats.evidence(feature)
        assert evidence and evidence[0].score == pytest.approx(hits[0][0], rel=1e-5)  # the best sample first
        assert len(evidence) <= 3
        assert len({" ".join(e.span.casefold().split()) for e in evidence}) == len(evidence)  # deduplicated
        assert all(e.span in e.sample for e in evidence)
        assert [e.score for e in evidence] == sorted((e.score for e in evidence), reverse=True)


def test_chunk_size_does_not_change_the_result(tiny_space: Any) -> None:
    small = collect_stats(tiny_space, TEXTS, top_k=2, chunk_size=1)
    large = collect_stats(tiny_space, TEXTS, top_k=2, chunk_size=100)
    np.testing.assert_array_equal(small.counts, large.counts)
    for j in range(tiny_space.d_sae):
        a, b = small.evidence(j), large.evidence(j)
        assert [(e.span, e.sample) for e in a] == [(e.span, e.sample) for e in b]
        np.testing.assert_allclose([e.score for e in a], [e.score for e in b], rtol=1e-5)


def test_threshold_decides_what_counts_as_active(tiny_space: Any) -> None:
    base = collect_stats(tiny_space, TEXTS)
    strict = collect_stats(replace(tiny_space, threshold=2.0), TEXTS)
    assert strict.counts.sum() < base.counts.sum()
    assert all(e.score > 2.0 for j in strict.active_features() for e in strict.evidence(j))


def test_split_pass_routes_samples_by_label_and_keeps_background_evidence_off(tiny_space: Any) -> None:
    labels = [i % 2 == 0 for i in range(len(TEXTS))]
    pos, bg = collect_split_stats(tiny_space, list(zip(TEXTS, labels, strict=True)), chunk_size=4)
    assert (pos.n_samples, bg.n_samples) == (5, 5)
    only_pos = collect_stats(tiny_space, [t for t, keep in zip(TEXTS, labels, strict=True) if keep])
    np.testing.assert_array_equal(pos.counts, only_pos.counts)
    assert bg.counts.sum() > 0 and not any(bg.evidence(j) for j in range(tiny_space.d_sae))
