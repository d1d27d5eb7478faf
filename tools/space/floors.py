"""Per-feature activation floors: a text activates latent j only when a_j(x) > ρ · m_j (and > δ).

m_j is latent j's typical strength: the median, over the calibration texts where j fires at all, of its
per-text score a_j(x). A TopK SAE must fill k slots at every token, so weak, incidental firings are common
(a tweet of 20 tokens touches hundreds of latents); a floor at a fraction ρ of each latent's own typical
strength keeps the firings that resemble what the latent usually does. Floors belong to the SAE (like a
JumpReLU threshold) and live beside its weights as `feature_floors.safetensors`; they are calibrated on a
corpus, never on evaluation data, by `fac sae calibrate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fac.tools.errors import ConfigError

if TYPE_CHECKING:
    from fac.tools.space.features import SampleScores

FLOORS_FILE = "feature_floors.safetensors"


@dataclass(frozen=True, eq=False)
class FeatureFloors:
    """Each latent's typical strength m_j (0 where it never fired in calibration) and the fraction ρ."""

    strengths: np.ndarray  # (d_sae,) float32
    relative: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.relative) and 0 <= self.relative < 1):
            raise ConfigError(f"relative floor ρ={self.relative}: expected a number in [0, 1)")
        if self.strengths.ndim != 1 or not np.isfinite(self.strengths).all() or (self.strengths < 0).any():
            raise ConfigError("feature floors: strengths must be one finite value >= 0 per latent")

    @property
    def d_sae(self) -> int:
        return int(self.strengths.shape[0])

    @property
    def values(self) -> np.ndarray:  # (d_sae,) float32: the score each latent must exceed
        return (self.strengths * np.float32(self.relative)).astype(np.float32)

    @property
    def identity(self) -> str:
        """ρ and a digest of the strengths: what a catalog records to say which floors it was built with."""
        digest = hashlib.sha256(self.strengths.astype("<f4").tobytes()).hexdigest()[:12]
        return f"rho={self.relative:g}@{digest}"

    def with_relative(self, relative: float) -> FeatureFloors:
        return FeatureFloors(self.strengths, relative, self.meta)


def typical_strengths(scored: Iterable[SampleScores], d_sae: int) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, the median per-text score over the texts where it fires, and how many texts those were."""
    ids: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for sample in scored:
        ids.append(sample.feature_ids.astype(np.int64))
        values.append(sample.scores.astype(np.float32))
    if not ids:
        raise ConfigError("calibrating feature floors needs at least one scored text")
    all_ids, all_values = np.concatenate(ids), np.concatenate(values)
    if len(all_ids) and int(all_ids.max()) >= d_sae:
        raise ConfigError(f"a score names latent {int(all_ids.max())} but the SAE has {d_sae}")
    order = np.lexsort((all_values, all_ids))
    all_ids, all_values = all_ids[order], all_values[order]
    counts = np.bincount(all_ids, minlength=d_sae)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    strengths = np.zeros(d_sae, dtype=np.float32)
    fired = counts > 0
    low = starts[fired] + (counts[fired] - 1) // 2
    high = starts[fired] + counts[fired] // 2
    strengths[fired] = (all_values[low] + all_values[high]) / 2
    return strengths, counts.astype(np.int64)


def save_floors(directory: Path, floors: FeatureFloors, fired: np.ndarray) -> Path:
    """Write the floors beside the SAE's weights (atomically)."""
    import torch
    from safetensors.torch import save_file

    path = directory / FLOORS_FILE
    tmp = path.with_suffix(".tmp")
    save_file({"strengths": torch.from_numpy(floors.strengths.astype(np.float32)),
               "texts_fired": torch.from_numpy(fired.astype(np.int64))}, str(tmp),
              metadata={"relative": repr(floors.relative), "meta": json.dumps(floors.meta, sort_keys=True)})
    tmp.replace(path)
    return path


def load_floors(directory: Path) -> FeatureFloors | None:
    """The floors saved beside an SAE directory's weights, or None when it has none."""
    from safetensors import SafetensorError, safe_open

    path = directory / FLOORS_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            strengths = handle.get_tensor("strengths").astype(np.float32)
        relative = float(metadata.get("relative", "nan"))
        meta = json.loads(metadata.get("meta", "{}"))
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise ConfigError(f"{path}: not a feature-floors file ({err}); recalibrate with `fac sae calibrate`") from None
    return FeatureFloors(strengths, relative, meta)
