"""Contrast relevance: Fisher p-values, BH q-values, smoothed log odds and the cuts that make a feature relevant."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact

from fac.tools.catalog.contrast import ContrastConfig, benjamini_hochberg, contrast, fisher_two_sided, log_odds_ratio
from fac.tools.errors import ConfigError


def test_vectorised_fisher_equals_scipy_on_many_tables() -> None:
    rng = np.random.default_rng(0)
    pos_n, bg_n = 40, 70
    a, c = rng.integers(0, pos_n + 1, 60), rng.integers(0, bg_n + 1, 60)
    ours = fisher_two_sided(a, pos_n, a + c, bg_n)
    ref = [fisher_exact([[int(x), pos_n - int(x)], [int(y), bg_n - int(y)]])[1] for x, y in zip(a, c, strict=True)]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-300)


def test_benjamini_hochberg_matches_hand_computed_step_up_values() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005,0.01,0.03,0.04,0.5 -> *5/rank = 0.025,0.025,0.05,0.05,0.5 (already monotone)
    np.testing.assert_allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.04, 0.041])), [0.041, 0.041])  # step-up monotone


def test_log_odds_adds_half_to_every_cell() -> None:
    value = log_odds_ratio(np.array([10]), np.array([0]), np.array([0]), np.array([10]))[0]
    assert value == pytest.approx(np.log(10.5 * 10.5 / (0.5 * 0.5)))


def test_over_represented_feature_is_relevant_and_others_say_why_not() -> None:
    pos = np.array([60, 3, 30, 0, 6, 0, 4])  # of 100 task texts
    bg = np.array([5, 50, 28, 0, 0, 4, 0])  # of 100 background texts
    results = {r.feature: r for r in contrast(pos, 100, bg, 100, ContrastConfig(min_positive=5))}
    assert 3 not in results  # never active: not tested
    assert results[0].relevant and "over-represented" in results[0].reason
    assert "60/100" in results[0].reason and "5/100" in results[0].reason
    assert not results[1].relevant and "under-represented" in results[1].reason
    assert not results[2].relevant and "not significant" in results[2].reason
    assert not results[4].relevant and results[4].p_value < 0.05 < results[4].q_value  # BH over 6 tests
    assert not results[5].relevant
    assert not results[6].relevant and "fewer than 5 task texts" in results[6].reason
    stats = results[0].stats()
    assert stats["pos_active"] == 60 and stats["bg_n"] == 100 and stats["log_odds"] > 2
    assert stats["q_value"] == pytest.approx(results[0].q_value, rel=1e-3)


def test_min_positive_and_effect_cuts_apply() -> None:
    pos, bg = np.array([30, 200]), np.array([0, 100])
    loose = {r.feature: r.relevant for r in contrast(pos, 1000, bg, 1000)}
    assert loose == {0: True, 1: False}  # feature 1: significant, but log-odds 0.81 < 1.0
    strict = {r.feature: r.relevant for r in contrast(pos, 1000, bg, 1000, ContrastConfig(min_positive=31))}
    assert strict == {0: False, 1: False}
    assert {r.feature: r.relevant for r in contrast(pos, 1000, bg, 1000, ContrastConfig(min_log_odds=0.5))}[1]


@pytest.mark.parametrize("kwargs", [{"q_max": 0.0}, {"q_max": 1.5}, {"min_log_odds": -1.0}, {"min_positive": 0}])
def test_bad_cuts_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ContrastConfig(**kwargs)  # type: ignore[arg-type]


def test_an_empty_side_is_refused() -> None:
    with pytest.raises(ConfigError, match="task-positive and background"):
        contrast(np.array([1]), 5, np.array([0]), 0)
