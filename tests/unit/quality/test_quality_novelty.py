"""Novelty: a draft closer than the calibrated distance to a seed or accepted sample is rejected."""

from __future__ import annotations

import numpy as np
import pytest

from fac.tools.quality.novelty import NOVELTY_DISTANCE, calibrate_novelty, nearest_distances, novelty_problem


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_close_drafts_are_rejected_far_ones_pass() -> None:
    problem = novelty_problem(0.1, "seed-abc", NOVELTY_DISTANCE)
    assert problem is not None and problem.startswith("not-novel:") and f"threshold {NOVELTY_DISTANCE:.3f}" in problem
    assert "seed-abc" in problem
    assert novelty_problem(NOVELTY_DISTANCE + 0.01, "seed-abc", NOVELTY_DISTANCE) is None
    assert novelty_problem(0.0, None, NOVELTY_DISTANCE) is None  # nothing stored yet


def test_nearest_distances_are_cosine_distances_to_the_closest_row() -> None:
    probe = np.array([[1.0, 0.0], [0.0, 1.0]])
    reference = _unit(np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert nearest_distances(probe, reference) == pytest.approx([0.0, 1 - np.sqrt(0.5)])


def test_calibration_returns_the_asked_percentile_of_real_distances() -> None:
    vectors = _unit(np.random.default_rng(0).normal(size=(300, 16)))
    threshold, distances = calibrate_novelty(vectors, size=100, draws=5, percentile=1.0)
    assert len(distances) == 5 * 200
    assert (distances >= threshold).mean() == pytest.approx(0.99, abs=0.005)
    with pytest.raises(ValueError, match="reference size"):
        calibrate_novelty(vectors[:50], size=100)
