"""The verifier's quality gates in one object: each check returns a rejection reason ('kind: ...') or None.

Kinds: `meta-text` and `regurgitation` (on the text, before anything else), `not-task-member` (on the
draft's SAE scores, or by an LLM judge), `not-novel` (on the distance to the nearest seed or accepted
sample). A gate set to None is off. Each reason names the gate's score and its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fac.tools.quality.membership import MembershipModel, membership_problem
from fac.tools.quality.meta_text import MetaTextGate
from fac.tools.quality.novelty import novelty_problem
from fac.tools.quality.regurgitation import CopyIndex, regurgitation_problem

if TYPE_CHECKING:
    from fac.tools.space.features import SampleScores

GATE_KINDS = ("meta-text", "regurgitation", "not-task-member", "not-novel")


class MembershipJudge(Protocol):
    """An LLM asked whether a draft is a positive example of the task: (is a member, the judge's reason)."""

    def judge(self, text: str) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class QualityGates:
    """The gates a run applies (None = off) and their thresholds."""

    meta: MetaTextGate | None = None
    copies: CopyIndex | None = None
    max_copied_share: float = 0.5
    membership: MembershipModel | None = None
    membership_threshold: float | None = None  # None: the model's calibrated threshold
    judge: MembershipJudge | None = None  # with a judge, membership asks it instead of the classifier
    novelty_distance: float | None = None

    def text_problem(self, text: str) -> str | None:
        """Meta text, then regurgitation."""
        if self.meta is not None and (problem := self.meta.problem(text)):
            return problem
        if self.copies is not None:
            return regurgitation_problem(self.copies.copy(text), self.max_copied_share)
        return None

    def membership_problem(self, text: str, scores: SampleScores) -> str | None:
        """Task membership by the LLM judge when there is one, else by the classifier over the SAE scores."""
        if self.judge is not None:
            member, why = self.judge.judge(text)
            return None if member else f"not-task-member: the judge says it is no positive example ({why})"
        if self.membership is None:
            return None
        threshold = self.membership.threshold if self.membership_threshold is None else self.membership_threshold
        return membership_problem(self.membership.probability(scores), threshold)

    def novelty_problem(self, distance: float, near_id: str | None) -> str | None:
        if self.novelty_distance is None:
            return None
        return novelty_problem(distance, near_id, self.novelty_distance)
