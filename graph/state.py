"""GenState: what must survive a crash (ids, counts, texts, small records); never tensors or clients."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from fac.tools.coverage import fac_score
from fac.tools.space.rendering import Sample
from fac.tools.text.formats import ab_messages

DraftKind = Literal["draft", "contrastive"]
StopReason = Literal["goal", "budget", "rounds", "exhausted", "seed"]


class Draft(BaseModel):
    """A generated candidate for one target feature, waiting for the verifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feature: int = Field(ge=0, description="The target feature.")
    kind: DraftKind
    text: str = Field(description="The sample as one text; empty when the reply held no usable sample.")
    fields: dict[str, str] = Field(default_factory=dict, description="Format parts (prompt/response, chosen/...).")
    prompt_hash: str
    tokens: int = Field(0, ge=0, description="Generator tokens spent on it (prompt + completion).")
    raw: str = Field("", description="Start of the reply, kept when it held no usable sample.")

    def sample(self) -> Sample:
        """What the feature space scores: a conversation for instruction/pair/A-B formats (the preferred side, the
        behaviour-matching answer), else the text."""
        if "response" in self.fields:
            return [{"role": "user", "content": self.fields["instruction"]},
                    {"role": "assistant", "content": self.fields["response"]}]
        if "answer_matching_behavior" in self.fields:
            return ab_messages(self.fields["question"], self.fields["answer_matching_behavior"])
        if "chosen" in self.fields:
            return [{"role": "user", "content": self.fields["prompt"]},
                    {"role": "assistant", "content": self.fields["chosen"]}]
        return self.text


class Verdict(BaseModel):
    """The verifier's view of one draft: its target score, the span that fired, the outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    score: float
    span: str = Field("", description="The target feature's evidence span ('' when it did not fire).")
    reason: str = Field(description="'accepted' or why it was rejected.")


class AcceptedSample(BaseModel):
    """One line of samples.jsonl (the source of truth for accepted samples) and its chroma metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(description="sha256(run id, prompt hash, text)[:16]: the same draft always gets the same id.")
    text: str
    target_feature: int
    score: float = Field(description="The target feature's score a_j(x).")
    span: str = Field(description="The span that fired the target feature.")
    round: int
    prompt_hash: str
    kind: DraftKind
    features: tuple[int, ...] = Field(description="Missing features this sample activates (credited to each).")
    fields: dict[str, str] = Field(default_factory=dict)


@dataclass(kw_only=True)
class GenState:
    """The loop's state. Lists come back from a checkpoint as lists: read sequences, never compare types."""

    task_features: tuple[int, ...] = ()  # F_task
    n_seed_covered: int = 0  # |F_task ∩ A(seed)|
    fac_before: float = 0.0
    missing: tuple[int, ...] = ()  # F_task − A(seed): the work queue
    round: int = 0
    plan: tuple[int, ...] = ()  # features of the current round
    drafts: tuple[Draft, ...] = ()  # the current round's candidates
    attempts: dict[int, int] = field(default_factory=dict)  # drafts generated per feature
    counts: dict[int, int] = field(default_factory=dict)  # accepted samples activating each missing feature
    best: dict[int, Verdict] = field(default_factory=dict)  # highest-scoring draft per feature
    worst: dict[int, Verdict] = field(default_factory=dict)  # lowest-scoring draft per feature
    feedback: dict[int, str] = field(default_factory=dict)  # last rejection reason per feature
    exhausted: frozenset[int] = frozenset()
    rejections: dict[str, int] = field(default_factory=dict)  # rejection kind -> drafts
    accepted_ids: Annotated[frozenset[str], operator.or_] = frozenset()
    tokens_used: Annotated[int, operator.add] = 0
    drafts_made: Annotated[int, operator.add] = 0
    stop_reason: StopReason | None = None
    stop_detail: str = ""

    def newly_covered(self) -> set[int]:
        """Missing features with at least one accepted sample."""
        return {j for j in self.missing if self.counts.get(j, 0) > 0}

    def covered(self) -> set[int]:
        """Task features the seed or an accepted sample activates: F_task ∩ A(seed + samples)."""
        return (set(self.task_features) - set(self.missing)) | self.newly_covered()

    def fac_now(self) -> float:
        """FAC of seed + accepted samples, by the same formula as `fac coverage` (0 before the seed is measured)."""
        return fac_score(self.task_features, self.covered()) if self.task_features else 0.0

    @property
    def n_accepted(self) -> int:
        return len(self.accepted_ids)


RECORD_TYPES: tuple[type[BaseModel], ...] = (Draft, Verdict, AcceptedSample)
