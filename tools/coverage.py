"""Feature Activation Coverage (METHOD §3): FAC(D) = |F_task ∩ A_δ(D)| / |F_task|.

A_δ(D) = {j : some x in D has a_j(x) > δ}; F_task comes from the task's catalog. `measure_coverage`
streams a dataset through the feature space in chunks, keeping only counters, a bounded set of top
spans per task feature, a fixed-size text reservoir for the baselines and a token-length histogram:
memory does not grow with the dataset.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fac.tools.catalog.evidence import chunked
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.diversity import LengthStats, Reservoir, mean_pairwise_cosine_distance, text_baselines
from fac.tools.text.embeddings import Embedder

if TYPE_CHECKING:
    from fac.tools.catalog.records import Catalog
    from fac.tools.space.features import FeatureSpace, SampleScores
    from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)



def activated_features(scores: Iterable[SampleScores], threshold: float) -> set[int]:
    """A_δ: every feature some sample scores above `threshold`."""
    out: set[int] = set()
    for s in scores:
        out.update(int(j) for j in s.active(threshold))
    return out


def feature_counts(scores: Iterable[SampleScores], features: Collection[int], threshold: float) -> dict[int, int]:
    """For each of `features`, how many samples activate it (features no sample activates map to 0)."""
    wanted = np.array(sorted(set(features)), dtype=np.int64)
    counts = np.zeros(len(wanted), dtype=np.int64)
    for s in scores:
        counts += np.isin(wanted, s.active(threshold))
    return {int(j): int(c) for j, c in zip(wanted, counts, strict=True)}


def fac_score(task_features: Collection[int], activated: Collection[int]) -> float:
    """|F_task ∩ A| / |F_task|; an empty F_task has no coverage to measure."""
    task = set(task_features)
    if not task:
        raise ConfigError("F_task is empty: the catalog judged no feature relevant, so FAC is undefined")
    return len(task & set(activated)) / len(task)


@dataclass(frozen=True)
class SeedSpan:
    """One of the seed's own strongest evidence spans for a task feature, and the sample it came from."""

    score: float
    span: str
    sample: str = ""


RelevanceCheck = Callable[[int, Sequence[SeedSpan]], bool]
"""(feature, the seed's own top evidence spans for it) -> is the feature task-relevant on these spans?"""


@dataclass(frozen=True)
class CoverageReport:
    """FAC of one dataset for one task, with per-feature counts, text baselines and length statistics."""

    fac: float
    n_task_features: int
    covered: list[int]
    missing: list[int]
    counts: dict[int, int]  # every task feature -> samples activating it (0 included)
    n_samples: int
    strict: bool
    baselines: dict[str, float]
    length: dict[str, float]
    space: dict[str, Any]
    task: str
    threshold: float = 0.0
    fac_activated: float = 0.0  # the default formula's FAC; equals `fac` unless strict
    rejected: list[int] = field(default_factory=list)  # strict: activated, but judged not relevant on seed spans
    n_active_features: int = 0  # |A_δ(D)| over all SAE features, relevant or not
    text_sparsity: float = 0.0  # mean share of the SAE's latents one sample activates (issue 11 targets <= 5 %)
    n_truncated: int = 0
    baseline_texts: int = 0  # size of the uniform sample the text baselines were computed on
    embedding_texts: int = 0  # size of its sub-sample the embedding baseline was computed on
    seconds: dict[str, float] = field(default_factory=dict)  # wall time: scoring, judging, baselines
    seed_spans: dict[int, list[SeedSpan]] = field(default_factory=dict)  # activated task features only

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["counts"] = {str(j): c for j, c in self.counts.items()}
        out["seed_spans"] = {str(j): [{"score": s.score, "span": s.span} for s in spans]
                             for j, spans in self.seed_spans.items()}
        return out


class _TopSpans:
    """The k highest-scoring distinct spans of each task feature, in O(|F_task| · k) memory.

    `floor[j]` is the score a new span of j must beat (-inf until j has k spans), so a sample's hits
    are filtered in numpy and only the few that enter a heap cost Python work.
    """

    def __init__(self, k: int, d_sae: int) -> None:
        self.k = k
        self.floor = np.full(d_sae, -np.inf, dtype=np.float32)  # (d_sae,)
        self._heaps: dict[int, list[tuple[float, int, str, str]]] = {}
        self._tick = itertools.count()

    def offer_all(self, scores: SampleScores, features: np.ndarray) -> None:
        """Offer the spans of `features` (all active in `scores`)."""
        at = np.searchsorted(scores.feature_ids, features)
        values = scores.scores[at]
        better = values > self.floor[features]
        for j in features[better].tolist():
            self._offer(scores, j)

    def _offer(self, scores: SampleScores, feature: int) -> None:
        heap = self._heaps.setdefault(feature, [])
        hit = scores.hit(feature)
        if hit is None:
            return
        entry = (hit.score, next(self._tick), hit.span, scores.text)
        same = next((i for i, kept in enumerate(heap) if kept[2] == hit.span), None)
        if same is not None:  # a span is kept once, with its best score
            if hit.score > heap[same][0]:
                heap[same] = entry
                heapq.heapify(heap)
        elif len(heap) < self.k:
            heapq.heappush(heap, entry)
        else:
            heapq.heapreplace(heap, entry)
        if len(heap) == self.k:
            self.floor[feature] = heap[0][0]

    def spans(self, feature: int) -> list[SeedSpan]:
        entries = sorted(self._heaps.get(feature, []), key=lambda e: (-e[0], e[1]))
        return [SeedSpan(round(score, 4), span, sample) for score, _, span, sample in entries]


def measure_coverage(
    space: FeatureSpace,
    samples: Iterable[Sample],
    catalog: Catalog,
    *,
    strict: bool = False,
    relevance_check: RelevanceCheck | None = None,
    embedder: Embedder | None = None,
    baselines: bool = True,
    embedding_baseline: bool = True,
    baseline_size: int = 2000,
    embedding_size: int = 500,
    spans_per_feature: int = 10,
    seed: int = 0,
    chunk_size: int = 1024,
    on_batch: Callable[[int], None] | None = None,
) -> CoverageReport:
    """FAC of `samples` against `catalog`'s F_task, streamed `chunk_size` samples at a time.

    Default (METHOD §3): j in F_task is covered iff some sample scores a_j(x) > δ (δ = space.threshold).

    strict: the authors' stricter test, "activated AND judged relevant on the seed's own spans". The
    catalog's verdict was reached on the anchor corpus's spans; whether the seed fires j in the same
    sense needs a fresh judgement on the seed's spans, so strict mode calls `relevance_check(j, spans)`
    once per activated task feature with the seed's top `spans_per_feature` distinct evidence spans
    (the CLI wires the LLM judge here). A score threshold such as "at least the catalog's weakest
    evidence score" was rejected: catalog evidence is the anchor's top-k, so that bar measures
    strength, not relevance. Activated features the check turns down are reported as `rejected`
    and count as missing.

    Baselines (distinct-1/2, n-gram entropy) are computed on a seeded uniform sample of `baseline_size`
    texts, so datasets of different sizes are compared at equal size and memory stays flat; with
    `embedding_baseline`, the mean pairwise cosine distance of `embedder` embeddings (default
    all-MiniLM-L6-v2) on a seeded sub-sample of `embedding_size` of those texts (embedding is the costly
    part on CPU; 500 texts estimate the mean over all pairs closely). `baselines=False` skips them all.
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} must be >= 1")
    if strict and relevance_check is None:
        raise ConfigError("strict coverage re-judges each activated feature on the seed's spans: it needs a "
                          "relevance check (an LLM judge)")
    catalog.check_space(space.describe())
    task = np.array(catalog.task_features(), dtype=np.int64)  # ascending
    if not len(task):
        raise ConfigError(f"catalog for task {catalog.task!r} has no task-relevant features: FAC is undefined; "
                          "rebuild it with a looser relevance cut or a larger anchor corpus")
    if int(task[-1]) >= space.d_sae:
        raise ConfigError(f"catalog for task {catalog.task!r} names feature {int(task[-1])} but the SAE has "
                          f"{space.d_sae} features")
    threshold = space.threshold
    counts = np.zeros(len(task), dtype=np.int64)
    active_any = np.zeros(space.d_sae, dtype=bool)
    top = _TopSpans(spans_per_feature, space.d_sae)
    reservoir: Reservoir[str] = Reservoir(baseline_size, seed)
    length_all, length_task = LengthStats(), LengthStats()
    n_samples = n_truncated = n_active_total = 0
    started = time.perf_counter()
    for scored in space.score_chunks(chunked(samples, chunk_size), on_batch=on_batch):
        for scores in scored:
            active = scores.active(threshold)
            active_any[active] = True
            hits = np.isin(task, active)
            counts += hits
            top.offer_all(scores, task[hits])
            length_all.add(scores.n_tokens, len(active))
            n_active_total += len(active)
            length_task.add(scores.n_tokens, int(hits.sum()))
            reservoir.add(scores.text)
            n_samples += 1
            n_truncated += scores.truncated
        logger.info("coverage: %d samples scored, %d of %d task features activated so far",
                    n_samples, int((counts > 0).sum()), len(task))
    if not n_samples:
        raise InputError("the dataset is empty; expected at least one sample")
    seconds = {"scoring": time.perf_counter() - started}

    activated = [int(j) for j in task[counts > 0]]
    covered, rejected = activated, list[int]()
    if strict:
        assert relevance_check is not None
        covered, rejected = [], []
        for j in activated:
            (covered if relevance_check(j, top.spans(j)) else rejected).append(j)
    covered_set = set(covered)
    if strict:
        seconds["judging"] = time.perf_counter() - started - seconds["scoring"]
    baseline_values: dict[str, float] = {}
    embedding_texts: list[str] = []
    if baselines:
        started_baselines = time.perf_counter()
        baseline_values = text_baselines(reservoir.items)
        if embedding_baseline:
            if embedder is None:
                from fac.tools.text.embeddings import default_embedder

                embedder = default_embedder()
            embedding_texts = reservoir.sample(embedding_size)
            baseline_values["embedding_cosine_distance"] = mean_pairwise_cosine_distance(
                embedder.embed(embedding_texts))
        seconds["baselines"] = time.perf_counter() - started_baselines
    length = {**length_all.summary(), "r_length_active": length_all.correlation(),
              "r_length_task_active": length_task.correlation()}
    return CoverageReport(
        fac=fac_score(task.tolist(), covered),
        n_task_features=len(task),
        covered=covered,
        missing=[int(j) for j in task if int(j) not in covered_set],
        counts={int(j): int(c) for j, c in zip(task, counts, strict=True)},
        n_samples=n_samples,
        strict=strict,
        baselines=baseline_values,
        length=length,
        space=space.describe(),
        task=catalog.task,
        threshold=threshold,
        fac_activated=fac_score(task.tolist(), activated),
        rejected=rejected,
        n_active_features=int(active_any.sum()),
        text_sparsity=n_active_total / n_samples / space.d_sae,
        n_truncated=n_truncated,
        baseline_texts=len(reservoir.items) if baselines else 0,
        embedding_texts=len(embedding_texts),
        seconds={k: round(v, 3) for k, v in seconds.items()},
        seed_spans={j: top.spans(j) for j in activated},
    )
