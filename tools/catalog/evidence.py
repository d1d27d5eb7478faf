"""One streaming pass over a corpus: per feature, how many samples activate it and its top evidence.

Evidence follows METHOD §1: per feature the top-k activating samples, one per distinct span (spans
are compared after folding case and whitespace), each with its score, span and sample text. Bounded
heaps keep memory at O(d_sae * k) whatever the corpus size.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from fac.tools.catalog.records import FeatureEvidence

if TYPE_CHECKING:
    from fac.tools.space.features import FeatureSpace, SampleScores
    from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)
T = TypeVar("T")


def span_key(span: str) -> str:
    """Spans that differ only in case or whitespace count as one."""
    return " ".join(span.casefold().split())


class TopSpans:
    """The k highest-scoring evidence items of one feature, one per distinct span."""

    __slots__ = ("_heap", "_items", "_tick", "k")

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, str]] = []  # min-heap of (score, tick, span key)
        self._items: dict[str, FeatureEvidence] = {}
        self._tick = 0

    @property
    def floor(self) -> float:
        """A score must beat this to enter (-inf while there is room)."""
        return self._heap[0][0] if len(self._heap) >= self.k else -np.inf

    def push(self, score: float, span: str, sample: str) -> None:
        if self.k <= 0 or score <= self.floor:
            return
        key = span_key(span)
        old = self._items.get(key)
        if old is not None:
            if score > old.score:  # same span, better sample: replace it in place
                self._items[key] = FeatureEvidence(score=score, span=span, sample=sample)
                self._heap = [(score if k == key else s, t, k) for s, t, k in self._heap]
                heapq.heapify(self._heap)
            return
        self._tick += 1
        self._items[key] = FeatureEvidence(score=score, span=span, sample=sample)
        heapq.heappush(self._heap, (score, self._tick, key))
        if len(self._heap) > self.k:
            _, _, dropped = heapq.heappop(self._heap)
            del self._items[dropped]

    def items(self) -> tuple[FeatureEvidence, ...]:
        """Best first; ties keep the order they arrived in."""
        order = sorted(self._heap, key=lambda e: (-e[0], e[1]))
        return tuple(self._items[key] for _, _, key in order)


@dataclass
class CorpusStats:
    """Activation counts and top evidence of every feature over one corpus."""

    d_sae: int
    threshold: float
    top_k: int = 10
    n_samples: int = 0
    counts: np.ndarray = field(init=False)  # (d_sae,) int64: samples activating each feature
    _top: dict[int, TopSpans] = field(init=False, default_factory=dict)
    _floors: np.ndarray = field(init=False)  # (d_sae,) float64: score a new item must beat

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.d_sae, dtype=np.int64)
        self._floors = np.full(self.d_sae, -np.inf)

    def add(self, scored: Iterable[SampleScores]) -> None:
        """Count each sample's active features and offer its spans to their heaps."""
        for sample in scored:
            self.n_samples += 1
            mask = sample.scores > self.threshold
            ids, scores = sample.feature_ids[mask], sample.scores[mask]
            self.counts[ids] += 1
            if self.top_k <= 0:
                continue
            better = scores > self._floors[ids]  # cheap vectorised pre-check; most offers lose
            for at in np.flatnonzero(better):
                feature = int(ids[at])
                heap = self._top.get(feature)
                if heap is None:
                    heap = self._top[feature] = TopSpans(self.top_k)
                hit = sample.hit(feature)
                assert hit is not None
                heap.push(hit.score, hit.span, sample.text)
                self._floors[feature] = heap.floor

    def rate(self, feature: int) -> float:
        return float(self.counts[feature]) / self.n_samples if self.n_samples else 0.0

    def rates(self) -> np.ndarray:  # (d_sae,)
        return self.counts / max(self.n_samples, 1)

    def evidence(self, feature: int) -> tuple[FeatureEvidence, ...]:
        heap = self._top.get(feature)
        return heap.items() if heap else ()

    def active_features(self, min_count: int = 1) -> list[int]:
        return [int(j) for j in np.flatnonzero(self.counts >= min_count)]


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def collect_stats(
    space: FeatureSpace,
    samples: Iterable[Sample],
    *,
    top_k: int = 10,
    chunk_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> CorpusStats:
    """Score a corpus chunk by chunk (never all at once) and gather per-feature counts and evidence."""
    stats = CorpusStats(space.d_sae, space.threshold, top_k)
    for scored in space.score_chunks(chunked(samples, chunk_size), on_batch=on_batch):
        stats.add(scored)
    logger.info("scored %d samples: %d features active at least once", stats.n_samples,
                int((stats.counts > 0).sum()))
    return stats


def labelled_scores(space: FeatureSpace, samples: Iterable[tuple[Sample, bool]], chunk_size: int,
                    on_batch: Callable[[int], None] | None = None) -> Iterator[tuple[SampleScores, bool]]:
    """Each labelled sample's scores with its label, streamed chunk by chunk through `space.score_chunks`."""
    labels: deque[list[bool]] = deque()  # per chunk sent, its labels; results come back in the same order

    def sample_chunks() -> Iterator[list[Sample]]:
        for chunk in chunked(samples, chunk_size):
            labels.append([is_positive for _, is_positive in chunk])
            yield [sample for sample, _ in chunk]

    for scored in space.score_chunks(sample_chunks(), on_batch=on_batch):
        yield from zip(scored, labels.popleft(), strict=True)


def collect_split_stats(
    space: FeatureSpace,
    samples: Iterable[tuple[Sample, bool]],
    *,
    top_k: int = 10,
    background_top_k: int = 0,
    chunk_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[CorpusStats, CorpusStats]:
    """One pass over a labelled corpus: (task-positive stats, background stats)."""
    positive = CorpusStats(space.d_sae, space.threshold, top_k)
    background = CorpusStats(space.d_sae, space.threshold, background_top_k)
    for scores, is_positive in labelled_scores(space, samples, chunk_size, on_batch):
        (positive if is_positive else background).add([scores])
    logger.info("scored %d task-positive and %d background samples", positive.n_samples, background.n_samples)
    return positive, background


def length_matched(pos: Sequence[SampleScores], bg: Sequence[SampleScores], *, bins: int = 10,
                   seed: int = 0) -> tuple[list[SampleScores], list[SampleScores]]:
    """Subsets of task-positive and background samples with equal counts in every token-length bin (bins:
    quantiles of both sides' lengths), drawn with `seed`; order kept. A contrast on them cannot credit a
    feature for firing on longer texts."""
    lengths = np.array([s.n_tokens for s in (*pos, *bg)], dtype=np.float64)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, bins + 1)[1:-1])) if len(lengths) else np.zeros(0)
    pos_bin = np.searchsorted(edges, [s.n_tokens for s in pos], side="right")
    bg_bin = np.searchsorted(edges, [s.n_tokens for s in bg], side="right")
    rng = np.random.default_rng(seed)
    keep_pos: list[int] = []
    keep_bg: list[int] = []
    for b in range(len(edges) + 1):
        p, g = np.flatnonzero(pos_bin == b), np.flatnonzero(bg_bin == b)
        n = min(len(p), len(g))
        keep_pos += rng.choice(p, n, replace=False).tolist()
        keep_bg += rng.choice(g, n, replace=False).tolist()
    return [pos[i] for i in sorted(keep_pos)], [bg[i] for i in sorted(keep_bg)]


def collect_matched_stats(
    space: FeatureSpace,
    samples: Iterable[tuple[Sample, bool]],
    *,
    top_k: int = 10,
    chunk_size: int = 256,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[CorpusStats, CorpusStats]:
    """As collect_split_stats, on length-matched subsets (`length_matched`); holds the scores in memory."""
    pos_scores: list[SampleScores] = []
    bg_scores: list[SampleScores] = []
    for scores, is_positive in labelled_scores(space, samples, chunk_size, on_batch):
        (pos_scores if is_positive else bg_scores).append(scores)
    kept_pos, kept_bg = length_matched(pos_scores, bg_scores, seed=seed)
    positive = CorpusStats(space.d_sae, space.threshold, top_k)
    background = CorpusStats(space.d_sae, space.threshold, 0)
    positive.add(kept_pos)
    background.add(kept_bg)
    logger.info("length-matched contrast: %d of %d task-positive and %d of %d background samples kept",
                len(kept_pos), len(pos_scores), len(kept_bg), len(bg_scores))
    return positive, background
