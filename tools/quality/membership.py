"""Task membership, LLM-free: logistic regression over a sample's SAE feature scores, anchor vs background.

The verifier already scores every draft in the feature space; this model turns those scores into the
probability that the draft is a positive example of the task. It is fitted on the task's anchor (positives)
against its background (negatives) with a share of each held back; the acceptance threshold is the
probability that keeps `keep` (default 95 %) of the held-back anchor samples, and the held-back background's
false-accept rate at that threshold is recorded beside it. Inputs are log1p of the feature scores (inactive
features are 0). The model is bound to its feature space (model, layer, SAE, mode): another space is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fac.tools.errors import ConfigError, InputError

if TYPE_CHECKING:
    from fac.tools.space.features import SampleScores

logger = logging.getLogger(__name__)

SPACE_FIELDS = ("model", "layer", "sae", "mode")
KEEP = 0.95
HOLDOUT = 0.2
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


class Calibration(BaseModel):
    """How the threshold was set and what it does on the held-back samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    keep: float = Field(description="Share of held-back anchor samples the threshold keeps (target).")
    n_train_pos: int
    n_train_neg: int
    n_heldout_pos: int
    n_heldout_neg: int
    heldout_pos_accept: float = Field(description="Held-back anchor samples accepted at the threshold.")
    heldout_neg_accept: float = Field(description="Held-back background samples accepted (false accepts).")
    heldout_auprc: float = Field(description="AUPRC of anchor vs background on the held-back samples.")
    l2: float = Field(description="L2 penalty chosen on an inner split of the training part.")


class MembershipModel(BaseModel):
    """A fitted task-membership classifier over one feature space's SAE features."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    task: str
    space: dict[str, Any] = Field(description="FeatureSpace.describe() of the space it was fitted in.")
    corpora: str = Field("", description="The anchor and background it was fitted on.")
    bias: float
    weights: tuple[float, ...] = Field(description="One weight per SAE feature (d_sae of them).")
    threshold: float = Field(ge=0.0, le=1.0, description="Accept iff probability >= threshold.")
    calibration: Calibration

    def check_space(self, described: dict[str, Any], source: str) -> None:
        """Refuse a model fitted in another feature space, naming what differs."""
        differ = [f"{k}: {self.space.get(k)!r} vs now {described.get(k)!r}"
                  for k in SPACE_FIELDS if self.space.get(k) != described.get(k)]
        if differ:
            raise ConfigError(f"{source}: the membership model of task {self.task!r} was fitted in another feature "
                              f"space ({'; '.join(differ)}); rebuild it with `fac catalog membership --task "
                              f"{self.task}`")

    def probability(self, scores: SampleScores) -> float:
        """P(task-positive) of one scored sample."""
        w = np.asarray(self.weights, dtype=np.float64)
        known = scores.feature_ids < len(w)
        logit = self.bias + float(w[scores.feature_ids[known]] @ np.log1p(scores.scores[known].astype(np.float64)))
        return float(1.0 / (1.0 + np.exp(-logit)))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        data = self.model_dump(mode="json")
        data["weights"] = [round(w, 6) for w in self.weights]
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> MembershipModel:
        if not path.is_file():
            raise InputError(f"{path}: no such membership model file")
        try:
            model = cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            raise InputError(f"{path}: not a fac membership model ({str(err).splitlines()[0]})") from None
        if len(model.weights) != int(model.space.get("d_sae", len(model.weights))):
            raise InputError(f"{path}: {len(model.weights)} weights but the space has d_sae={model.space.get('d_sae')}")
        return model


def design(scores: Sequence[SampleScores], d_sae: int) -> np.ndarray:  # (n, d_sae)
    """log1p(feature score) per sample and feature; 0 where a feature is inactive."""
    x = np.zeros((len(scores), d_sae), dtype=np.float64)
    for row, s in enumerate(scores):
        x[row, s.feature_ids] = np.log1p(s.scores.astype(np.float64))
    return x


def _fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """L2-penalised logistic regression (mean log-loss), by L-BFGS; the bias is not penalised."""
    from scipy.optimize import minimize

    n, d = x.shape

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        z = b + x @ w
        p = 1.0 / (1.0 + np.exp(-z))
        value = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w))
        g = p - y
        return value, np.concatenate([[g.mean()], x.T @ g / n + l2 * w])

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return float(result.x[0]), np.asarray(result.x[1:])


def _prob(x: np.ndarray, bias: float, w: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-(bias + x @ w))))


def auprc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision of positives scored `pos` against negatives scored `neg` (ties broken pessimistically)."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.lexsort((labels, -scores))  # by score descending, negatives first among ties
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(hits.sum(), 1.0))


def _split(n: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    cut = max(1, round(n * share))
    return perm[cut:], perm[:cut]


def fit_membership(positives: Sequence[SampleScores], negatives: Sequence[SampleScores], *, task: str,
                   space: dict[str, Any], d_sae: int, corpora: str = "", keep: float = KEEP,
                   holdout: float = HOLDOUT, seed: int = 0) -> MembershipModel:
    """Fit on (1 - holdout) of each side, choose the L2 penalty on an inner split, set the threshold that keeps
    `keep` of the held-back positives and measure the held-back negatives' false-accept rate."""
    if len(positives) < 10 or len(negatives) < 10:
        raise InputError(f"membership model of task {task!r}: needs >= 10 anchor and >= 10 background samples, "
                         f"found {len(positives)} and {len(negatives)}")
    if not 0.5 <= keep < 1.0:
        raise ConfigError(f"membership keep={keep}: expected a share in [0.5, 1)")
    rng = np.random.default_rng(seed)
    xp, xn = design(positives, d_sae), design(negatives, d_sae)
    (tp, hp), (tn, hn) = _split(len(xp), holdout, rng), _split(len(xn), holdout, rng)
    (itp, ivp), (itn, ivn) = _split(len(tp), holdout, rng), _split(len(tn), holdout, rng)

    def fit_on(pi: np.ndarray, ni: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        x = np.concatenate([xp[pi], xn[ni]])
        return _fit(x, np.concatenate([np.ones(len(pi)), np.zeros(len(ni))]), l2)

    def inner_auprc(l2: float) -> float:
        b, w = fit_on(tp[itp], tn[itn], l2)
        return auprc(_prob(xp[tp[ivp]], b, w), _prob(xn[tn[ivn]], b, w))

    l2 = max(L2_GRID, key=inner_auprc)
    bias, w = fit_on(tp, tn, l2)
    held_pos, held_neg = _prob(xp[hp], bias, w), _prob(xn[hn], bias, w)
    threshold = float(np.quantile(held_pos, 1.0 - keep, method="lower"))
    calibration = Calibration(keep=keep, n_train_pos=len(tp), n_train_neg=len(tn), n_heldout_pos=len(hp),
                              n_heldout_neg=len(hn), heldout_pos_accept=float((held_pos >= threshold).mean()),
                              heldout_neg_accept=float((held_neg >= threshold).mean()),
                              heldout_auprc=auprc(held_pos, held_neg), l2=l2)
    logger.info("membership model of %s: threshold %.3f keeps %.1f%% of held-back anchor, accepts %.1f%% of "
                "held-back background (AUPRC %.3f, l2 %g)", task, threshold, 100 * calibration.heldout_pos_accept,
                100 * calibration.heldout_neg_accept, calibration.heldout_auprc, l2)
    return MembershipModel(task=task, space=space, corpora=corpora, bias=bias, weights=tuple(float(v) for v in w),
                           threshold=threshold, calibration=calibration)


def membership_problem(probability: float, threshold: float) -> str | None:
    """The rejection reason when the draft is not judged a positive example of the task, else None."""
    if probability < threshold:
        return (f"not-task-member: membership probability {probability:.3f} < threshold {threshold:.3f} "
                "(classifier over the draft's SAE features, anchor vs background)")
    return None
