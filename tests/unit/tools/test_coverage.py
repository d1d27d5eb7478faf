"""FAC = |F_task ∩ A_δ| / |F_task| over a streamed dataset, its counts, strict mode and bad catalogs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.coverage import (
    SeedSpan,
    activated_features,
    fac_score,
    feature_counts,
    measure_coverage,
)
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.embeddings import HashingEmbedder

SEED = ["the cat sat on the mat", "a dog ran home", "i hate stupid people", "the cat sat on the mat"]
OTHER = ["we love kind people", "why is it not good", "the red dog is fast"]


def make_catalog(space: Any, relevant: Sequence[int], irrelevant: Sequence[int] = (), task: str = "toy") -> Catalog:
    def rec(j: int, ok: bool) -> FeatureRecord:
        return FeatureRecord(feature=j, relevant=ok, reason=f"reason {j}", activation_rate=0.5, method="contrast",
                             evidence=(FeatureEvidence(score=1.0, span=f"span {j}", sample="x"),))

    records = [rec(j, True) for j in relevant] + [rec(j, False) for j in irrelevant]
    return Catalog(task=task, method="contrast", space=space.describe(), records=tuple(records))


_ACTIVE: dict[tuple[str, ...], list[set[int]]] = {}  # the tiny model is the same in every test


def brute_active(space: Any, texts: Sequence[str]) -> list[set[int]]:
    """Per text, the features scoring above δ (memoised: scoring is the slow part of these tests)."""
    key = tuple(texts)
    if key not in _ACTIVE:
        _ACTIVE[key] = [set(s.feature_ids[s.scores > space.threshold].tolist()) for s in space.score(texts)]
    return _ACTIVE[key]


def task_split(space: Any) -> tuple[list[int], list[int]]:
    """Four features the seed activates and three only OTHER activates (never the seed)."""
    seed_active = set().union(*brute_active(space, SEED))
    other_only = sorted(set().union(*brute_active(space, OTHER)) - seed_active)
    return sorted(seed_active)[:4], other_only[:3]


def test_fac_score_is_the_share_of_task_features_activated() -> None:
    assert fac_score([1, 2, 3, 4], [2, 4, 9, 10]) == 0.5
    assert fac_score({7}, set()) == 0.0
    with pytest.raises(ConfigError, match="empty"):
        fac_score([], [1])


def test_activated_features_and_counts_agree_with_brute_force(tiny_space: Any) -> None:
    scores = tiny_space.score(SEED)
    per_sample = brute_active(tiny_space, SEED)
    assert activated_features(scores, 0.0) == set().union(*per_sample)
    never = min(set(range(tiny_space.d_sae)) - set().union(*per_sample))
    wanted = [*sorted(per_sample[0])[:3], never]
    counts = feature_counts(scores, wanted, 0.0)
    assert counts == {j: sum(j in s for s in per_sample) for j in wanted}
    assert counts[never] == 0


def test_a_higher_threshold_activates_fewer_features(tiny_space: Any) -> None:
    scores = tiny_space.score(SEED)
    high = float(np.median(np.concatenate([s.scores for s in scores])))
    assert activated_features(scores, high) < activated_features(scores, 0.0)


def test_measure_coverage_counts_covered_and_missing_task_features(tiny_space: Any) -> None:
    hit, miss = task_split(tiny_space)
    catalog = make_catalog(tiny_space, hit + miss)
    report = measure_coverage(tiny_space, iter(SEED), catalog, embedder=HashingEmbedder(dim=32))
    assert report.fac == pytest.approx(4 / 7)
    assert report.covered == hit and report.missing == miss
    per_sample = brute_active(tiny_space, SEED)
    assert report.counts == {j: sum(j in s for s in per_sample) for j in hit + miss}
    assert report.n_samples == 4 and report.n_task_features == 7
    assert report.n_active_features == len(set().union(*per_sample))
    assert set(report.seed_spans) == set(hit)
    for spans in report.seed_spans.values():
        assert all(s.span in s.sample and s.sample in SEED for s in spans)
        assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
        assert len({s.span for s in spans}) == len(spans)  # the duplicated seed text adds no duplicate span
    as_json = report.to_json()
    assert as_json["covered"] == hit and as_json["missing"] == miss and as_json["fac"] == report.fac
    assert set(as_json["counts"]) == {str(j) for j in hit + miss}


def test_irrelevant_catalog_features_do_not_count(tiny_space: Any) -> None:
    hit, miss = task_split(tiny_space)
    report = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, miss, irrelevant=hit), baselines=False)
    assert report.fac == 0.0 and report.missing == miss and report.n_task_features == 3


def test_streaming_in_small_chunks_gives_the_same_report_and_bounded_batches(tiny_space: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hit, miss = task_split(tiny_space)
    catalog = make_catalog(tiny_space, hit + miss)
    whole = measure_coverage(tiny_space, SEED * 3, catalog, baselines=False)
    sizes: list[int] = []
    real_score = type(tiny_space).score

    def spy(self: Any, samples: Sequence[str], **kwargs: Any) -> Any:
        sizes.append(len(samples))
        return real_score(self, samples, **kwargs)

    monkeypatch.setattr(type(tiny_space), "score", spy)
    consumed: list[int] = []

    def stream() -> Any:
        for i, text in enumerate(SEED * 3):
            consumed.append(i)
            yield text

    chunked = measure_coverage(tiny_space, stream(), catalog, baselines=False, chunk_size=5)
    assert sizes == [5, 5, 2] and len(consumed) == 12
    assert (chunked.fac, chunked.counts, chunked.covered, chunked.n_samples) == (
        whole.fac, whole.counts, whole.covered, 12)
    assert chunked.length == whole.length


def test_length_statistics_come_from_scored_tokens(tiny_space: Any) -> None:
    hit, miss = task_split(tiny_space)
    report = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, hit + miss), baselines=False)
    tokens = [s.n_tokens for s in tiny_space.score(SEED)]
    assert report.length["mean_tokens"] == pytest.approx(np.mean(tokens))
    assert report.length["median_tokens"] == pytest.approx(np.median(tokens))
    assert report.length["max_tokens"] == max(tokens)
    n_active = [len(a) for a in brute_active(tiny_space, SEED)]
    assert report.length["r_length_active"] == pytest.approx(np.corrcoef(tokens, n_active)[0, 1])


def test_baselines_are_reported_on_the_seed_texts(tiny_space: Any) -> None:
    hit, miss = task_split(tiny_space)
    emb = HashingEmbedder(dim=32)
    report = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, hit + miss), embedder=emb)
    assert report.baseline_texts == 4
    assert report.baselines["distinct_1"] == pytest.approx(13 / 20)  # 13 distinct words of 20
    assert 0.0 < report.baselines["embedding_cosine_distance"] < 2.0
    assert report.embedding_texts == 4 and set(report.seconds) == {"scoring", "baselines"}
    capped = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, hit + miss), embedder=emb, baseline_size=3,
                              embedding_size=2)
    assert capped.baseline_texts == 3 and capped.embedding_texts == 2
    text_only = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, hit + miss), embedding_baseline=False)
    assert "embedding_cosine_distance" not in text_only.baselines and text_only.embedding_texts == 0
    assert text_only.baselines["distinct_1"] == report.baselines["distinct_1"]


def test_strict_mode_keeps_only_features_the_check_accepts_on_seed_spans(tiny_space: Any) -> None:
    hit, miss = task_split(tiny_space)
    asked: dict[int, list[SeedSpan]] = {}

    def check(feature: int, spans: Sequence[SeedSpan]) -> bool:
        asked[feature] = list(spans)
        return feature != hit[1]

    report = measure_coverage(tiny_space, SEED, make_catalog(tiny_space, hit + miss), strict=True,
                              relevance_check=check, baselines=False, spans_per_feature=2)
    assert sorted(asked) == hit  # only activated task features are re-judged
    assert all(0 < len(spans) <= 2 and all(s.sample in SEED for s in spans) for spans in asked.values())
    assert report.rejected == [hit[1]] and hit[1] in report.missing and hit[1] not in report.covered
    assert report.fac == pytest.approx(3 / 7) and report.fac_activated == pytest.approx(4 / 7)
    assert report.strict


def test_strict_mode_without_a_relevance_check_is_a_config_error(tiny_space: Any) -> None:
    with pytest.raises(ConfigError, match="relevance check"):
        measure_coverage(tiny_space, SEED, make_catalog(tiny_space, [1]), strict=True)


def test_catalog_from_another_feature_space_is_refused(tiny_space: Any) -> None:
    catalog = make_catalog(tiny_space, [1]).model_copy(update={"space": {**tiny_space.describe(), "layer": 9}})
    with pytest.raises(ConfigError, match="layer"):
        measure_coverage(tiny_space, SEED, catalog, baselines=False)


def test_catalog_without_relevant_features_or_with_out_of_range_ids_is_refused(tiny_space: Any) -> None:
    with pytest.raises(ConfigError, match="no task-relevant"):
        measure_coverage(tiny_space, SEED, make_catalog(tiny_space, [], irrelevant=[1]), baselines=False)
    with pytest.raises(ConfigError, match="128 features"):
        measure_coverage(tiny_space, SEED, make_catalog(tiny_space, [1, 500]), baselines=False)


def test_an_empty_dataset_is_an_input_error(tiny_space: Any) -> None:
    with pytest.raises(InputError, match="empty"):
        measure_coverage(tiny_space, iter([]), make_catalog(tiny_space, [1]), baselines=False)


def test_a_rerun_reads_scores_from_the_cache_without_the_model(tiny_space: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hit, miss = task_split(tiny_space)
    catalog = make_catalog(tiny_space, hit + miss)
    first = measure_coverage(tiny_space, SEED, catalog, baselines=False)

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model ran on a cached text")

    monkeypatch.setattr(type(tiny_space), "_score_batch", no_model)
    second = measure_coverage(tiny_space, SEED, catalog, baselines=False)
    assert second.counts == first.counts and second.fac == first.fac


def test_seed_spans_are_the_top_k_distinct_spans_of_each_feature(tiny_space: Any) -> None:
    texts = SEED + OTHER + ["the cat sat on the mat and the dog ran", "red cat blue dog", "it is not very nice"]
    scores = tiny_space.score(texts)
    features = sorted(activated_features(scores, 0.0))[:12]
    report = measure_coverage(tiny_space, texts, make_catalog(tiny_space, features), baselines=False,
                              spans_per_feature=2, chunk_size=3)
    for j in features:
        best: dict[str, float] = {}
        for s in scores:
            hit = s.hit(j)
            if hit is not None:
                best[hit.span] = max(best.get(hit.span, 0.0), hit.score)
        expected = sorted(best.values(), reverse=True)[:2]
        assert [s.score for s in report.seed_spans[j]] == pytest.approx(expected, abs=1e-4), j
