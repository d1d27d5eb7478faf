"""LLM-free relevance (beyond the paper): features over-represented in task-positive text.

Per feature a 2x2 table (task-positive vs background samples, activating or not), a two-sided
Fisher exact test, Benjamini-Hochberg FDR over the features tested (those active in at least one
sample), and the log odds ratio with 0.5 added to every cell as the effect size. A feature is
task-relevant iff q < q_max, log-odds >= min_log_odds and it fires in >= min_positive task samples.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import gammaln, logsumexp

from fac.tools.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContrastConfig:
    """The cuts a feature must pass to count as task-relevant."""

    q_max: float = 0.05
    min_log_odds: float = 1.0
    min_positive: int = 5

    def __post_init__(self) -> None:
        """Named as `fac catalog build`'s flags, which mirror these fields; NaN fails every check."""
        if not 0 < self.q_max <= 1:
            raise ConfigError(f"--q-max {self.q_max}: the FDR level must lie in (0, 1]")
        if not 0 <= self.min_log_odds < math.inf:
            raise ConfigError(f"--min-log-odds {self.min_log_odds}: expected a finite number >= 0 "
                              "(relevant = over-represented)")
        if self.min_positive < 1:
            raise ConfigError(f"--min-positive {self.min_positive}: expected >= 1")


@dataclass(frozen=True)
class ContrastResult:
    """One feature's table, test and decision."""

    feature: int
    pos_active: int
    pos_n: int
    bg_active: int
    bg_n: int
    log_odds: float
    p_value: float
    q_value: float
    relevant: bool
    reason: str

    @property
    def pos_rate(self) -> float:
        return self.pos_active / self.pos_n if self.pos_n else 0.0

    @property
    def bg_rate(self) -> float:
        return self.bg_active / self.bg_n if self.bg_n else 0.0

    def stats(self) -> dict[str, float]:
        return {"pos_active": float(self.pos_active), "pos_n": float(self.pos_n), "bg_active": float(self.bg_active),
                "bg_n": float(self.bg_n), "pos_rate": _round(self.pos_rate), "bg_rate": _round(self.bg_rate),
                "log_odds": _round(self.log_odds), "p_value": _round(self.p_value), "q_value": _round(self.q_value)}


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values (step-up, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def fisher_two_sided(a: np.ndarray, pos_n: int, k_total: np.ndarray, bg_n: int) -> np.ndarray:
    """Two-sided Fisher exact p-values for tables [[a, pos_n - a], [K - a, bg_n - (K - a)]], K = k_total.

    Vectorised over the hypergeometric support of each distinct K; p sums the probabilities of all
    tables no more likely than the observed one (relative tolerance 1e-7, as scipy's fisher_exact).
    """
    a = np.asarray(a, dtype=np.int64)
    k_total = np.asarray(k_total, dtype=np.int64)
    total = pos_n + bg_n
    p_values = np.ones(len(a))
    log_all = _log_choose(total, pos_n)
    for k in np.unique(k_total):
        support = np.arange(max(0, k - bg_n), min(k, pos_n) + 1)  # possible task-positive counts
        log_pmf = _log_choose(k, support) + _log_choose(total - k, pos_n - support) - log_all
        rows = np.flatnonzero(k_total == k)
        observed = log_pmf[a[rows] - support[0]]  # (n_rows,)
        extreme = log_pmf[None, :] <= observed[:, None] + np.log1p(1e-7)  # (n_rows, n_support)
        masked = np.where(extreme, log_pmf[None, :], -np.inf)
        p_values[rows] = np.minimum(np.exp(logsumexp(masked, axis=1)), 1.0)
    return p_values


def _log_choose(n: int | np.ndarray, k: int | np.ndarray) -> np.ndarray:
    return np.asarray(gammaln(np.add(n, 1)) - gammaln(np.add(k, 1)) - gammaln(np.subtract(n, k) + 1))


def log_odds_ratio(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """log((a+.5)(d+.5) / ((b+.5)(c+.5))): a/b active/inactive in task text, c/d in background."""
    return np.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)))


def _reason(r: ContrastResult, cfg: ContrastConfig) -> str:
    table = (f"active in {r.pos_active}/{r.pos_n} task texts ({r.pos_rate:.1%}) vs {r.bg_active}/{r.bg_n} background "
             f"({r.bg_rate:.1%}); log-odds {r.log_odds:+.2f}, Fisher p={r.p_value:.2g}, BH q={r.q_value:.2g}")
    if r.relevant:
        return f"{table}: over-represented in task text"
    why = []
    if r.q_value >= cfg.q_max:
        why.append(f"not significant (q >= {cfg.q_max:g})")
    if r.log_odds <= -cfg.min_log_odds and r.q_value < cfg.q_max:
        why.append("under-represented in task text")
    elif r.log_odds < cfg.min_log_odds:
        why.append(f"effect below log-odds {cfg.min_log_odds:g}")
    if r.pos_active < cfg.min_positive:
        why.append(f"fewer than {cfg.min_positive} task texts")
    return f"{table}: {', '.join(why)}"


def contrast(
    pos_counts: np.ndarray,
    pos_n: int,
    bg_counts: np.ndarray,
    bg_n: int,
    config: ContrastConfig | None = None,
) -> list[ContrastResult]:
    """Test every feature active in at least one sample; results ascending by feature id."""
    cfg = config or ContrastConfig()
    if pos_n <= 0 or bg_n <= 0:
        raise ConfigError(f"contrast needs task-positive and background samples; got {pos_n} and {bg_n}")
    pos_counts = np.asarray(pos_counts, dtype=np.int64)
    bg_counts = np.asarray(bg_counts, dtype=np.int64)
    if pos_counts.shape != bg_counts.shape:
        raise ValueError(f"count vectors differ in shape: {pos_counts.shape} vs {bg_counts.shape}")
    tested = np.flatnonzero((pos_counts + bg_counts) > 0)
    a, c = pos_counts[tested], bg_counts[tested]
    b, d = pos_n - a, bg_n - c
    p_values = fisher_two_sided(a, pos_n, a + c, bg_n)
    q_values = benjamini_hochberg(p_values)
    effects = log_odds_ratio(a, b, c, d)
    results = []
    for at, feature in enumerate(tested):
        relevant = bool(q_values[at] < cfg.q_max and effects[at] >= cfg.min_log_odds and a[at] >= cfg.min_positive)
        result = ContrastResult(int(feature), int(a[at]), pos_n, int(c[at]), bg_n, float(effects[at]),
                                float(p_values[at]), float(q_values[at]), relevant, "")
        results.append(replace(result, reason=_reason(result, cfg)))
    logger.info("contrast: %d features tested, %d relevant (q < %g, log-odds >= %g, >= %d task texts)",
                len(results), sum(r.relevant for r in results), cfg.q_max, cfg.min_log_odds, cfg.min_positive)
    return results

