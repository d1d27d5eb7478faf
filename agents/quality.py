"""The verifier's quality gates for one run, built from its config, catalog, seed and task (tools/quality/).

The meta-text gate gets the generator's fixed instruction text (its templates rendered without content),
the regurgitation gate the texts a prompt can show (anchor corpus, catalog evidence, seed), the membership
gate the task's classifier (tools/catalog/membership.py) or, with `membership_judge_model`, an LLM judge
asked with prompts/verifier.membership.*.j2.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from fac.graph.config import RunConfig
from fac.prompts import render
from fac.tools.catalog.judge import ask_for_decision, decision_follow_up, parse_decision, parse_one_word_answer
from fac.tools.errors import TransientError
from fac.tools.llm.calls import transient_fault
from fac.tools.quality.gates import QualityGates
from fac.tools.quality.meta_text import InstructionEcho, MetaTextGate
from fac.tools.quality.regurgitation import CopyIndex
from fac.tools.space.rendering import sample_text
from fac.tools.text.datasets import read_samples

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from fac.tools.catalog.records import Catalog
    from fac.tools.catalog.tasks import TaskSpec
    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)

LIST_FORMATS = ("text", "query")  # formats whose sample is one text: a list of several items is a scaffold
MEMBER_DECISIONS = frozenset({"Yes", "Probably"})


def instruction_texts(cfg: RunConfig) -> list[str]:
    """The generator's fixed prompt text (system, draft, contrastive, format rules) without any content."""
    rules = render("generator.format", output_format=cfg.sample_format)
    good = {"text": "", "score": 0.0, "span": "", "reason": ""}
    return [render("generator.system", task_summary=""), rules,
            *(render("generator.demo", first=first, format_rules=rules) for first in (False, True)),
            *(render("generator.draft", explanation="", spans=[], examples=[], continued=more, format_rules=rules)
              for more in (False, True)),
            *(render("generator.contrastive", explanation="", good=good, bad=None, keep_verbatim=keep,
                     feedback="", continued=more, format_rules=rules)
              for keep in (False, True) for more in (False, True))]


def reference_texts(catalog: Catalog, seed: Sequence[Sample], anchor: Path | None,
                    text_field: str | None = None) -> Iterator[str]:
    """What a generator prompt can show: the anchor corpus, the catalog's evidence samples and spans, the seed."""
    if anchor is not None:
        yield from (sample_text(s) for s in read_samples(str(anchor), text_field))
    for record in catalog.records:
        for ev in record.evidence:
            yield ev.sample
            yield ev.span
    yield from (sample_text(s) for s in seed)


@dataclass(frozen=True)
class ChatMembershipJudge:
    """Asks a chat model whether a draft is a positive example of the task (Yes/Probably = member)."""

    chat: BaseChatModel
    task: str
    guideline: str
    model: str = "judge"  # names the endpoint in fault messages

    def judge(self, text: str) -> tuple[bool, str]:
        """Member or not, and why; an endpoint fault (down, 429, 5xx, timeout) is a TransientError (exit 3)."""
        messages: list[BaseMessage] = [
            SystemMessage(render("verifier.membership.system", task=self.task, guideline=self.guideline)),
            HumanMessage(render("verifier.membership.user", sample=text))]
        try:
            reply = str(self.chat.invoke(messages).text)
            decision = parse_decision(reply)
            if decision is None:
                word = str(ask_for_decision(self.chat, decision_follow_up(messages, reply))().text)
                decision = parse_one_word_answer(word)
        except Exception as err:
            fault = transient_fault(err, self.model)
            if fault is None:
                raise
            raise TransientError(f"membership judge {self.model!r}: {fault}") from None
        why = " ".join(reply.split())[:200]
        return decision in MEMBER_DECISIONS, f"decision {decision or 'none'}: {why}"


def make_gates(cfg: RunConfig, catalog: Catalog, seed: Sequence[Sample], task: TaskSpec, space: FeatureSpace,
               judge_chat: BaseChatModel | None = None) -> QualityGates:
    """The gates the config turns on, with their thresholds."""
    from fac.tools.catalog.membership import resolve_membership

    meta = None
    if cfg.gate_meta_text:
        meta = MetaTextGate(echo=InstructionEcho(instruction_texts(cfg)), lists=cfg.sample_format in LIST_FORMATS)
    copies = CopyIndex(reference_texts(catalog, seed, task.anchor, task.text_field)) if cfg.gate_regurgitation else None
    membership, judge = None, None
    if cfg.gate_membership and judge_chat is not None:
        judge = ChatMembershipJudge(judge_chat, task.name, task.guideline, cfg.membership_judge_model or "judge")
    elif cfg.gate_membership:
        path = Path(cfg.membership_model) if cfg.membership_model else None
        membership = resolve_membership(space, task, path)
    logger.info("quality gates: meta-text %s, regurgitation %s, membership %s, novelty %s",
                "on" if meta else "off", f"< {cfg.max_copied_share:.2f} copied" if copies else "off",
                "judge" if judge else (f"p >= {cfg.membership_threshold or membership.threshold:.3f}" if membership
                                       else "off"),
                f">= {cfg.novelty_distance:.3f}" if cfg.novelty_distance > 0 else "off")
    return QualityGates(meta=meta, copies=copies, max_copied_share=cfg.max_copied_share, membership=membership,
                        membership_threshold=cfg.membership_threshold, judge=judge,
                        novelty_distance=cfg.novelty_distance if cfg.novelty_distance > 0 else None)
