"""Meta text: commentary about the example, lists of several samples and echoed instructions are rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fac.agents.quality import instruction_texts
from fac.graph.config import RunConfig
from fac.tools.quality.meta_text import InstructionEcho, MetaTextGate, list_items

CASES = json.loads((Path(__file__).resolve().parents[3] / "bench" / "gate_cases.json").read_text(encoding="utf-8"))
REAL = ["@HuffingtonPost if the faggots can have a page y cant they?faggots offend me more than them",
        "Same. RT @TylerIAm That was back when i found myself listening to mad real hip hop. Zero bitches in sight",
        "I'm up hoe", "A bitch can't tell me nothing", "Here we go again, trash ass refs",
        "my top 3: a) wings b) beer", "Plan B: stay home"]


def _gate(fmt: str = "text") -> MetaTextGate:
    cfg = RunConfig(seed="s", task="toxicity", output_format=fmt)  # type: ignore[arg-type]
    return MetaTextGate(echo=InstructionEcho(instruction_texts(cfg)), lists=fmt in ("text", "query"))


@pytest.mark.parametrize("text", [c["text"] for c in CASES if c["kind"] == "meta"])
def test_the_issues_meta_cases_are_rejected(text: str) -> None:
    problem = _gate().problem(text)
    assert problem is not None and problem.startswith("meta-text:")


@pytest.mark.parametrize("text", REAL + [c["text"] for c in CASES if c["kind"] != "meta"])
def test_real_tweets_and_other_cases_pass(text: str) -> None:
    assert _gate().problem(text) is None


def test_an_echoed_instruction_names_the_ngrams_and_threshold() -> None:
    problem = _gate().problem("you ugly hoe, keep it under 80 words")
    assert problem is not None and "echoes the prompt's instructions" in problem and "threshold 1" in problem


def test_lists_count_only_items_in_sequence() -> None:
    assert list_items("A: you B: are C: trash") == 3
    assert list_items("1. one 2. two 3. three 4. four") == 4
    assert list_items("(A) yes (B) no") == 2  # an A/B item is no list of samples
    assert list_items("B: late C: later D: latest") == 0  # a run must start at a / 1


def test_repeated_letter_labels_are_a_scaffold() -> None:  # seen in a real run: "A: ... A: ..."
    problem = _gate().problem("A: The way some people are used to be. A: Many people who work for them")
    assert problem is not None and "2 lettered labels" in problem
    assert _gate().problem("Plan B: stay home") is None


def test_an_instructions_numbered_response_may_hold_a_list() -> None:
    response = "Instruction: give three steps\n\nResponse: 1. wash 2. dry 3. fold"
    assert _gate("instruction").problem(response) is None
    assert _gate("text").problem(response) is not None


def test_an_echo_of_the_demonstration_turns_request_is_rejected() -> None:
    problem = _gate("instruction").problem("Write another, different one in the same layout. Response: ok")
    assert problem is not None and "echoes the prompt's instructions" in problem
