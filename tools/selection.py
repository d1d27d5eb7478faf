"""Coverage-maximising selection: the smallest subset of a pool that covers the task features a seed misses.

Max coverage is submodular, so greedy picking (the candidate that covers the most still-uncovered task
features) is within 1 - 1/e of the optimum, and lazy evaluation is exact: a candidate's gain only
shrinks, so a stale heap entry that still beats the next one's bound is the true best. Ties go to the
larger score mass on the uncovered features, then to the candidate adding more features no pick has
fired yet (diversity in feature space), then to the earlier row. Related work: arXiv 2502.14050.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fac.tools.errors import ConfigError

if TYPE_CHECKING:
    from fac.tools.space.features import SampleScores


@dataclass(frozen=True)
class Candidate:
    """One pool row as selection sees it: the task features it fires with their scores, and all it fires."""

    task_scores: dict[int, float]  # task feature -> score, for the features above δ
    active: frozenset[int]  # every feature above δ

    @classmethod
    def of(cls, scores: SampleScores, task: Collection[int], threshold: float) -> Candidate:
        """A scored sample as a candidate: its features above `threshold`, with the scores of the task ones."""
        above = scores.scores > threshold
        ids, values = scores.feature_ids[above].tolist(), scores.scores[above].tolist()
        return cls({j: float(s) for j, s in zip(ids, values, strict=True) if j in task}, frozenset(ids))


@dataclass(frozen=True)
class Pick:
    """One greedy step: the chosen row, the task features it newly covers, and the covered count after it."""

    index: int
    added: tuple[int, ...]
    covered_after: int


def _key(c: Candidate, uncovered: set[int], seen: set[int]) -> tuple[int, float, int]:
    new = [j for j in c.task_scores if j in uncovered]
    return len(new), sum(c.task_scores[j] for j in new), len(c.active - seen)


def select(candidates: Sequence[Candidate], task: set[int], covered: set[int], *, k: int | None = None,
           goal_covered: int | None = None) -> list[Pick]:
    """Greedy picks until `k` rows are chosen or `goal_covered` task features are covered (seed included).

    With `k`, once no candidate adds a task feature the remaining picks maximise the features no pick has
    fired yet (diversity in the whole feature space), so k rows come back while the pool has new features;
    with `goal_covered`, picking stops when nothing adds a task feature."""
    if (k is None) == (goal_covered is None):
        raise ConfigError("give exactly one of --k and --goal-fac")
    if k is not None and k < 1:
        raise ConfigError(f"--k {k}: expected at least 1 pick")
    uncovered = set(task) - covered
    seen: set[int] = set()
    n_covered = len(task) - len(uncovered)
    heap = [(tuple(-x for x in _key(c, uncovered, seen)), i) for i, c in enumerate(candidates)]
    heapq.heapify(heap)
    picks: list[Pick] = []
    while heap and (k is None or len(picks) < k) and (goal_covered is None or n_covered < goal_covered):
        _, i = heapq.heappop(heap)
        fresh = tuple(-x for x in _key(candidates[i], uncovered, seen))
        if heap and (fresh, i) > heap[0]:  # stale: its gain shrank below the next bound; re-queue
            heapq.heappush(heap, (fresh, i))
            continue
        if fresh[0] == 0 and (k is None or fresh[2] == 0):  # nothing new to add, task-wise (or at all, with k)
            break
        added = tuple(sorted(j for j in candidates[i].task_scores if j in uncovered))
        uncovered -= set(added)
        seen |= candidates[i].active
        n_covered += len(added)
        picks.append(Pick(i, added, n_covered))
    return picks
