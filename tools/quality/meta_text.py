"""Meta text and scaffolds: drafts that write about the prompt instead of being a sample.

Three signs, each named in the rejection reason:
- commentary: writing about "the original example", "the sentence", "the word X is ...", "this dataset", or an
  assistant's preamble ("Sure, ...", "Here is ...");
- a list of several samples: lettered or numbered items "A: ... B: ... C: ..." (three or more in sequence), or
  two or more capital letter labels ("A: ... A: ..."), only where the sample format is one text (an
  instruction's response may hold a real list);
- the prompt's instructions echoed back: word n-grams of the generator's fixed prompt text in the draft.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from fac.tools.quality.regurgitation import words

_NOUN = r"(?:example|sample|sentence|text|tweet|message|phrase|wording|prompt|instruction|output|response)s?"
COMMENTARY = re.compile(
    r"\b(?:the|this|that|these|my|your|an?)\s+(?:original|above|following|given|previous|new|same|provided)\s+"
    + _NOUN + r"\b"
    r"|\b(?:this|these|the)\s+examples?\b"
    r"|\bdataset\b"
    r"|\bthe (?:phrase|wording)\b"
    r"|\bexample (?:text|tweet|sentence)\b"
    r"|\bthe word\s+\S+(?:\s+\S+)?\s+(?:is|was|means|refers|here)\b"
    r"|\b(?:part|parts|rest|meaning|context|tone) of the (?:sentence|text|example|phrase|tweet)\b"
    r"|\b(?:in|of) (?:this|the) (?:sentence|example)\b"
    r"|\bthe (?:sentence|example|text) (?:is|was|shows|uses|contains|has|expresses|implies|suggests)\b",
    re.I)
PREAMBLE = re.compile(r"^\s*(?:(?:sure|certainly|of course|absolutely)\b\s*[,!.:]|here(?:'s| is| are) (?:an?|the|my|"
                      r"some|one|another|your)\s+(?:new\s+|revised\s+|rewritten\s+)?" + _NOUN + r"\b)", re.I)
_LETTERED = re.compile(r"(?:^|(?<=\s))\(?([A-Ea-e])\s*[:)]\s")
_NUMBERED = re.compile(r"(?:^|(?<=\s))\(?([1-9])\s*[.:)]\s")
_LABEL = re.compile(r"(?:^|(?<=\s))([A-E]):\s")  # "A: ... A: ..." (none of 3,250 real tweets holds two)
MIN_LIST_ITEMS = 3
MIN_LABELS = 2
ECHO_NGRAM = 5


def _in_sequence(labels: list[str]) -> int:
    """The longest run of consecutive labels in order (a, b, c / 1, 2, 3) among those found."""
    best = run = 0
    previous: str | None = None
    for label in (x.lower() for x in labels):
        run = run + 1 if previous is not None and ord(label) == ord(previous) + 1 else (1 if label in "a1" else 0)
        previous = label if run else None
        best = max(best, run)
    return best


def list_items(text: str) -> int:
    """How many lettered or numbered items in sequence the text holds (0 or 1 for a plain text)."""
    return max(_in_sequence(_LETTERED.findall(text)), _in_sequence(_NUMBERED.findall(text)))


class InstructionEcho:
    """Word n-grams of the generator's fixed prompt text: a draft holding them echoes the instructions."""

    def __init__(self, instructions: Iterable[str], ngram: int = ECHO_NGRAM) -> None:
        self.ngram = ngram
        self._grams: set[tuple[str, ...]] = set()
        for text in instructions:
            tokens = words(text)
            self._grams.update(tuple(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1))

    def echoed(self, text: str) -> int:
        """How many of the text's word n-grams occur in the instructions."""
        tokens = words(text)
        return sum(tuple(tokens[i : i + self.ngram]) in self._grams for i in range(len(tokens) - self.ngram + 1))


@dataclass(frozen=True)
class MetaTextGate:
    """The three checks; `lists` is False for formats whose samples may hold a real list."""

    echo: InstructionEcho | None = None
    max_echoed: int = 1  # n-grams of the instructions a draft may hold; reject at this many
    lists: bool = True

    def problem(self, text: str) -> str | None:
        """The rejection reason ('meta-text: ...') or None."""
        found = PREAMBLE.search(text) or COMMENTARY.search(text)
        if found:
            return f"meta-text: writes about the prompt ({found.group(0).strip()!r}) instead of being a sample"
        items = list_items(text) if self.lists else 0
        if items >= MIN_LIST_ITEMS:
            return f"meta-text: a list of {items} items (threshold {MIN_LIST_ITEMS}), not one sample"
        labels = len(_LABEL.findall(text)) if self.lists else 0
        if labels >= MIN_LABELS:
            return f"meta-text: {labels} lettered labels ('A: ...'; threshold {MIN_LABELS}), a scaffold of samples"
        if self.echo is not None and (echoed := self.echo.echoed(text)) >= self.max_echoed:
            return (f"meta-text: echoes the prompt's instructions ({echoed} word {self.echo.ngram}-grams of it; "
                    f"threshold {self.max_echoed})")
        return None
