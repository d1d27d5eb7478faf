"""Reading a generator reply: the one sample it holds in the run's output format, or None.

Weak generators wrap their sample in preambles ("Sure, here is..."), labels ("Example 2:"), bullets,
quotes and further items; the parser keeps the first sample and drops the rest. `SCAFFOLD` matches the
contrastive prompt's own wording, which a draft that copied the prompt still holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fac.graph.config import OutputFormat
from fac.tools.text.formats import ab_letter, ab_options, ab_sides, ab_stem, instruction_messages, pair_sides

_PREAMBLE = re.compile(r"^\s*(?:(?:sure|okay|ok|certainly|of course|here(?:'s| is| are))\b[^\n]*|[^\n]{0,60}:)[ \t]*\n",
                       re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_LABEL = re.compile(r"^\s*(?:(?:the|my|a|here(?:'s| is)(?: the| a| my)?)\s+)?(?:(?:new|final|good|best)\s+)?"
                    r"(?:example|text|query|user query|user|message|sample|output|tweet)\s*\d*"
                    r"(?:\s+(?:is|would be))?\s*:\s*", re.I)
_NEXT_ITEM = re.compile(r"\n\s*\n|\n\s*(?:[-*•]|\d+[.)])\s"
                        r"|\n\s*(?:new\s+)?(?:example|text|query|sample|note)\s*\d*\s*:"
                        r"|\n\s*(?:the\s+)?(?:part that scored|last attempt|(?:good|bad|best|worst) example|score\b)",
                        re.I)
# The contrastive prompt's own scaffolding: a draft that still holds it copied the prompt, not wrote a sample.
SCAFFOLD = re.compile(r"part that scored|last attempt was rejected|(?:good|bad) example|nothing in it scored"
                      r"|\(score \d", re.I)
# Each structured format's layouts, tried in order. A small model often drops the `Response:` label: the
# instruction's line, a blank line, then the response.
_SECTION = {
    "instruction": (re.compile(r"instructions?\s*:\s*(?P<instruction>.+?)\s*response\s*:\s*(?P<response>.+)",
                               re.I | re.S),
                    re.compile(r"^\s*instructions?\s*:[ \t]*(?P<instruction>[^\n]+)\n\s*\n(?P<response>.+)",
                               re.I | re.S)),
    "pair": (re.compile(r"prompt\s*:\s*(?P<prompt>.+?)\s*chosen\s*:\s*(?P<chosen>.+?)"
                        r"\s*rejected\s*:\s*(?P<rejected>.+)", re.I | re.S),),
}

# Options as "(A) …", "A) …", "A. …" or "A: …" on their own lines (weak generators vary); "Answer: (A)" or "Answer: A".
_QUESTION = re.compile(r"(?:^|\n)\s*question\s*:\s*", re.I)
_AB = re.compile(r"^(?P<question>.+?)\n(?:\s*(?i:options|choices)\s*:?\s*\n)?"
                 r"[ \t]*\(?A[).:][ \t]*(?P<a>[^\n]+?)[ \t]*\n[ \t]*\(?B[).:][ \t]*"
                 r"(?P<b>[^\n]+?)[ \t]*"
                 r"(?:\n\s*(?i:(?:the\s+)?(?:matching\s+)?answer)\s*:\s*\(?(?P<answer>[AB])\b|\n|$)",
                 re.S)


def _ab_item(text: str) -> tuple[str, dict[str, str]] | None:
    """An A/B item in anthropic-evals' shape (question with its choices, matching and other answer), or None.

    A reply without an `Answer:` line keeps only the question: the verifier names the missing answer."""
    asked = _QUESTION.search(text)
    match = _AB.search(text[asked.end() :] if asked else text)
    if match is None:
        return None
    question, a, b = (match.group(k).strip().strip('"').strip() for k in ("question", "a", "b"))
    if not (question and a and b):
        return None
    fields = {"question": f"{question}\n\nChoices:\n (A) {a}\n (B) {b}"}
    answer = (match.group("answer") or "").upper()
    if answer:
        fields.update(answer_matching_behavior=f" ({answer})",
                      answer_not_matching_behavior=" (B)" if answer == "A" else " (A)")
    return fields["question"] + (f"\n\nAnswer: ({answer})" if answer else ""), fields


def layout(row: Mapping[str, Any], output_format: OutputFormat) -> str | None:
    """A seed record in the layout the generator is asked to write (what `parse_reply` reads back), or None."""
    if output_format == "ab" and (sides := ab_sides(row)) is not None:
        options = ab_options(row["question"])
        letter = ab_letter(row["answer_matching_behavior"])
        return (f"Question: {ab_stem(row['question'])}\n(A) {options['A']}\n(B) {options['B']}\nAnswer: ({letter})"
                if sides and set(options) == {"A", "B"} else None)
    if output_format == "pair" and (pair := pair_sides(row)) is not None:
        (*_, ask, good), bad = pair[0], pair[1][-1]
        return f"Prompt: {ask['content']}\nChosen: {good['content']}\nRejected: {bad['content']}" if ask else None
    if output_format == "instruction" and (turns := instruction_messages(row)) is not None:
        return f"Instruction: {turns[0]['content']}\nResponse: {turns[1]['content']}"
    return None


def _unquote(text: str) -> str:
    """A text that opens with a quote: what the quotes enclose."""
    if text[:1] in ('"', "“"):
        end = text.find('"' if text[0] == '"' else "”", 1)
        return (text[1:end] if end > 0 else text[1:]).strip()
    return text


def parse_reply(reply: str, output_format: OutputFormat) -> tuple[str, dict[str, str]] | None:
    """The sample in a reply as (text, format fields), or None when it holds no usable sample."""
    text = _PREAMBLE.sub("", reply.strip(), count=1).strip()
    if output_format in _SECTION:
        match = next((m for pattern in _SECTION[output_format] if (m := pattern.search(text))), None)
        if match is None:
            return None
        fields = {k: v.strip().strip('"').strip() for k, v in match.groupdict().items()}
        if not all(fields.values()):
            return None
        return "\n\n".join(fields.values()), fields
    if output_format == "ab":
        return _ab_item(text)
    text = _LABEL.sub("", _BULLET.sub("", text, count=1), count=1)
    cut = _NEXT_ITEM.search(text)
    text = text[: cut.start()] if cut and cut.start() > 0 else text
    text = _unquote(_BULLET.sub("", text.strip(), count=1).strip())
    return (text, {}) if text else None
