"""Text-diversity baselines reported beside FAC (METHOD §3): distinct-n, n-gram entropy, embedding
pairwise cosine distance, and per-sample length statistics.

Words are lower-cased `\\w+` runs and single punctuation marks. distinct-n and entropy depend on the
corpus size (distinct-n falls as a corpus grows), so compare them between equally sized samples:
`Reservoir` draws a seeded uniform sample of a stream of any length in constant memory.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from fac.tools.text.embeddings import Embedder

_WORD = re.compile(r"\w+|[^\w\s]")
T = TypeVar("T")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[tuple[str, ...]]:
    tokens = words(text)
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n-gram order n={n} must be >= 1")


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the corpus (0.0 when there is no n-gram)."""
    _check_n(n)
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        for gram in ngrams(text, n):
            seen.add(gram)
            total += 1
    return len(seen) / total if total else 0.0


def ngram_entropy(texts: Iterable[str], n: int) -> float:
    """Shannon entropy (bits) of the corpus' n-gram distribution (0.0 when there is no n-gram)."""
    _check_n(n)
    counts = Counter(gram for text in texts for gram in ngrams(text, n))
    total = sum(counts.values())
    if not total:
        return 0.0
    p = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) / total
    return float(-(p * np.log2(p)).sum())


def mean_pairwise_cosine_distance(embeddings: np.ndarray) -> float:
    """Mean of 1 - cos(u_i, u_j) over all pairs i != j (0.0 for fewer than 2 rows).

    Exact in O(n·dim), no pair sampling needed: for unit rows, sum_{i != j} u_i·u_j = |sum_i u_i|^2 - n.
    Rows are L2-normalised first; an all-zero row counts as orthogonal to everything.
    """
    vectors = np.asarray(embeddings, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        return 0.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    total = unit.sum(axis=0)
    self_sim = float((norms > 0).sum())
    mean_cos = (float(total @ total) - self_sim) / (n * (n - 1))
    return float(min(max(1.0 - mean_cos, 0.0), 2.0))


def text_baselines(texts: Sequence[str], embedder: Embedder | None = None) -> dict[str, float]:
    """The paper's text-diversity baselines of one corpus; the embedding one only with an embedder."""
    out = {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "entropy_1": ngram_entropy(texts, 1),
        "entropy_2": ngram_entropy(texts, 2),
    }
    if embedder is not None:
        out["embedding_cosine_distance"] = mean_pairwise_cosine_distance(embedder.embed(texts))
    return out


def lengths(texts: Iterable[str]) -> list[int]:
    """Words per text (the tokenizer-free length; FAC reports model tokens separately)."""
    return [len(words(text)) for text in texts]


class Reservoir(Generic[T]):
    """A seeded uniform sample of at most `size` items from a stream (Algorithm R), in O(size) memory."""

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"reservoir size={size} must be >= 1")
        self.size = size
        self.seen = 0
        self.items: list[T] = []
        self._seed = seed
        self._rng = random.Random(seed)

    def add(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        at = self._rng.randrange(self.seen)
        if at < self.size:
            self.items[at] = item

    def sample(self, k: int) -> list[T]:
        """A seeded uniform sub-sample of at most k of the kept items (all of them when k >= their number)."""
        if k >= len(self.items):
            return list(self.items)
        return random.Random(self._seed).sample(self.items, k)


@dataclass
class LengthStats:
    """Streaming length statistics: mean/median/max of token counts and their Pearson r with a second count.

    Token counts are bounded (the scorer's token cap), so the median comes from a histogram: constant memory.
    """

    histogram: Counter[int] = field(default_factory=Counter)
    n: int = 0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_yy: float = 0.0
    sum_xy: float = 0.0

    def add(self, length: int, other: float) -> None:
        self.histogram[length] += 1
        self.n += 1
        self.sum_x += length
        self.sum_y += other
        self.sum_xx += length * length
        self.sum_yy += other * other
        self.sum_xy += length * other

    def median(self) -> float:
        if not self.n:
            return 0.0
        ordered = sorted(self.histogram.items())
        lo_rank, hi_rank = (self.n - 1) // 2, self.n // 2

        def at(rank: int) -> int:
            seen = 0
            for value, count in ordered:
                seen += count
                if rank < seen:
                    return value
            return ordered[-1][0]

        return (at(lo_rank) + at(hi_rank)) / 2

    def correlation(self) -> float:
        """Pearson r of length with the second count; 0.0 when either is constant or n < 2."""
        if self.n < 2:
            return 0.0
        var_x = self.n * self.sum_xx - self.sum_x**2
        var_y = self.n * self.sum_yy - self.sum_y**2
        if var_x <= 0 or var_y <= 0:
            return 0.0
        return float((self.n * self.sum_xy - self.sum_x * self.sum_y) / math.sqrt(var_x * var_y))

    def summary(self) -> dict[str, float]:
        return {
            "mean_tokens": self.sum_x / self.n if self.n else 0.0,
            "median_tokens": self.median(),
            "max_tokens": float(max(self.histogram, default=0)),
            "min_tokens": float(min(self.histogram, default=0)),
        }
