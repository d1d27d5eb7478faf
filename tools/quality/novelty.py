"""Novelty: a kept draft lies farther than a calibrated embedding distance from the seed and the accepted samples.

The distance is the cosine distance (all-MiniLM-L6-v2, the near-duplicate index's embedder) to the nearest
stored sample. The default threshold is the 1st percentile of the distance from a real anchor tweet to its
nearest neighbour among 100 other real anchor tweets (a seed's size), so 99 % of real, distinct tweets pass
against a seed-sized set; `bench/calibrate_gates.py` measures it. The near-duplicate check (distance below
`dedup_distance`) runs first; this gate rejects what is not a copy but adds too little.
"""

from __future__ import annotations

import numpy as np

NOVELTY_DISTANCE = 0.32  # bench/calibrate_gates.py: 1st percentile, 20 draws of 100 anchor tweets, MiniLM
PERCENTILE = 1.0
REFERENCE_SIZE = 100


def nearest_distances(probe: np.ndarray, reference: np.ndarray) -> np.ndarray:  # (n_probe,)
    """Cosine distance from each unit-norm probe row to its nearest unit-norm reference row."""
    return np.asarray(1.0 - (probe @ reference.T).max(axis=1))


def calibrate_novelty(vectors: np.ndarray, *, size: int = REFERENCE_SIZE, draws: int = 20,
                      percentile: float = PERCENTILE, seed: int = 0) -> tuple[float, np.ndarray]:
    """The `percentile` of real nearest-neighbour distances: `draws` random references of `size` rows, the other
    rows probing each; returns (threshold, all distances)."""
    if len(vectors) <= size:
        raise ValueError(f"novelty calibration: {len(vectors)} texts, need more than the reference size {size}")
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(draws):
        perm = rng.permutation(len(vectors))
        found.append(nearest_distances(vectors[perm[size:]], vectors[perm[:size]]))
    distances = np.concatenate(found)
    return float(np.percentile(distances, percentile)), distances


def novelty_problem(distance: float, near_id: str | None, threshold: float) -> str | None:
    """The rejection reason when the nearest stored sample is closer than `threshold`, else None."""
    if near_id is not None and distance < threshold:
        return f"not-novel: cosine distance {distance:.3f} < threshold {threshold:.3f} to {near_id}"
    return None
