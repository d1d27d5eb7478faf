"""The sample formats of the built-in tasks as conversations: preference pairs, A/B items, instructions.

One home for how each format becomes what the model reads (METHOD §1: a conversation, chat template as is):
- pair: TRL's preference record, `prompt` (a string or messages) with `chosen` and `rejected` (strings or
  assistant messages), or an hh-rlhf dialogue string (`"\\n\\nHuman: …\\n\\nAssistant: …"`); scored as the
  preferred side's conversation;
- A/B item: anthropic-evals' `question` (ending in `Choices:\\n (A) …\\n (B) …`) with
  `answer_matching_behavior` and `answer_not_matching_behavior` (`" (A)"`/`" (B)"`); scored as the question's stem
  and the behaviour-matching option's text (exported with the choices and the letter, as trainers and CAA read it);
- instruction: `instruction` (+ optional `input`) with `response` (or `output`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Messages = list[dict[str, str]]

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_OPTION = re.compile(r"^[ \t]*\(([AB])\)[ \t]*(.*?)[ \t]*$", re.M)
_LETTER = re.compile(r"^\s*\(?([AB])\)?\s*$")
AB_FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")
PAIR_FIELDS = ("prompt", "chosen", "rejected")
INSTRUCTION_FIELDS = ("instruction", "response")


def hh_messages(dialogue: str) -> Messages | None:
    """An hh-rlhf dialogue string as user/assistant messages; None when it holds no Human/Assistant turn."""
    text = dialogue if dialogue.startswith("\n\n") else "\n\n" + dialogue
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        return None
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[role], "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2],
                                                                                       strict=True)]


def _turns(value: Any, role: str) -> Messages | None:
    """A string as one turn of `role`, or a list of {role, content} messages as they are."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role", role)), "content": str(m["content"])} for m in value]
    return None


def pair_sides(row: Mapping[str, Any]) -> tuple[Messages, Messages] | None:
    """The chosen and rejected conversations of a preference record, or None when it is no pair."""
    if "chosen" not in row or "rejected" not in row:
        return None
    if "prompt" not in row:
        if isinstance(row["chosen"], str) and isinstance(row["rejected"], str):
            chosen, rejected = hh_messages(row["chosen"]), hh_messages(row["rejected"])
            return (chosen, rejected) if chosen and rejected else None
        return None
    prompt = _turns(row["prompt"], "user")
    chosen, rejected = _turns(row["chosen"], "assistant"), _turns(row["rejected"], "assistant")
    if prompt is None or chosen is None or rejected is None:
        return None
    return prompt + chosen, prompt + rejected


def ab_options(question: str) -> dict[str, str]:
    """The options of an A/B question by letter ({"A": text, "B": text}); a letter missing is left out."""
    options: dict[str, str] = {}
    for letter, text in _OPTION.findall(question):
        options.setdefault(letter, text)
    return options


def ab_letter(answer: str) -> str | None:
    """The letter of an A/B answer (" (A)", "A", "(B)"), or None."""
    match = _LETTER.match(answer)
    return match.group(1) if match else None


def ab_answer(question: str, answer: str) -> str:
    """The answer as the model would say it: its letter and the option's text ("(A) I do not concur.")."""
    letter = ab_letter(answer)
    if letter is None:
        return answer.strip()
    option = ab_options(question).get(letter, "")
    return f"({letter}) {option}".strip()


def ab_stem(question: str) -> str:
    """The question without its choices block (`Choices:` and the option lines)."""
    stem = question.split("Choices:", 1)[0] if "Choices:" in question else _OPTION.sub("", question)
    return stem.strip() or question.strip()


def ab_messages(question: str, answer: str) -> Messages:
    """An A/B item with one of its answers as the conversation fac scores: the question's stem, then the answer's
    option text. The choices are left out of the question: both options there would fire the same features on
    either side, and the side's own answer is what sets a behaviour-matching item apart."""
    letter = ab_letter(answer)
    option = ab_options(question).get(letter, "") if letter else ""
    return [{"role": "user", "content": ab_stem(question)}, {"role": "assistant", "content": option or answer.strip()}]


def ab_dialogue(question: str, answer: str) -> Messages:
    """An A/B item as a trainer reads it: the whole question with its choices, then the letter and option text."""
    return [{"role": "user", "content": question.strip()},
            {"role": "assistant", "content": ab_answer(question, answer)}]


def ab_sides(row: Mapping[str, Any]) -> tuple[Messages, Messages] | None:
    """The behaviour-matching and the other conversation of an A/B record, or None when it is no A/B item."""
    if not all(isinstance(row.get(k), str) for k in AB_FIELDS):
        return None
    return (ab_messages(row["question"], row["answer_matching_behavior"]),
            ab_messages(row["question"], row["answer_not_matching_behavior"]))


def instruction_messages(row: Mapping[str, Any]) -> Messages | None:
    """An instruction record (`instruction` [+ `input`] with `response` or `output`) as a conversation, or None."""
    answer = row.get("response", row.get("output"))
    if not isinstance(row.get("instruction"), str) or not isinstance(answer, str):
        return None
    ask = row["instruction"].strip()
    if isinstance(row.get("input"), str) and row["input"].strip():
        ask += "\n\n" + row["input"].strip()
    return [{"role": "user", "content": ask}, {"role": "assistant", "content": answer.strip()}]


def missing_parts(fields: Mapping[str, str], output_format: str) -> str | None:
    """What a sample of `output_format` lacks (a side of a pair, an A/B option or a matching answer), or None."""
    wanted = {"pair": PAIR_FIELDS, "ab": AB_FIELDS, "instruction": INSTRUCTION_FIELDS}.get(output_format, ())
    empty = [k for k in wanted if not str(fields.get(k, "")).strip()]
    if empty:
        return f"no {', '.join(empty)}"
    if output_format == "pair" and fields["chosen"].strip() == fields["rejected"].strip():
        return "chosen and rejected are the same reply"
    if output_format == "ab":
        options = ab_options(fields["question"])
        if set(options) != {"A", "B"} or not all(options.values()):
            return "the question does not hold both options (A) and (B)"
        if options["A"].strip().lower() == options["B"].strip().lower():
            return "options (A) and (B) are the same"
        letters = {ab_letter(fields["answer_matching_behavior"]), ab_letter(fields["answer_not_matching_behavior"])}
        if letters != {"A", "B"}:
            return "the matching answer is not one of (A) and (B)"
    return None
