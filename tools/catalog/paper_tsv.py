"""Import the FAC-Synthesis authors' TSV of feature explanations and relevance decisions as a judge Catalog.

Their annotate_<task>.py writes `FeatureID, Task, Verify, Summary, Words` (tabs and newlines inside a field
escaped as \\t and \\n): Task is `decision|||judge reply` (or `-` when not judged), Verify the explanation check's
decision, Summary the explanation ("Cannot Tell." when none), Words the evidence (`Span 1: ... Span 2: ...`).
Relevant as in their identify_fac.py: Task and Verify are yes/probably/maybe, and the analysis and the
explanation do not say "cannot tell".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fac.tools.catalog.records import Catalog, Decision, FeatureEvidence, FeatureRecord
from fac.tools.errors import InputError

COLUMNS = ("FeatureID", "Task", "Verify", "Summary", "Words")
RELEVANT_DECISIONS = {"yes", "probably", "maybe"}
_SPAN = re.compile(r"Span \d+:\s*")
_QUERY = re.compile(r"Query-\d+:\s*")


def _unescape(field: str) -> str:
    return field.replace("\\n", "\n").replace("\\t", "\t")


def _decision(text: str) -> str:
    """`yes|||...` -> "yes"; `-` or empty -> "-" (their extract_final_decision)."""
    return text.split("|||")[0].strip().lower() or "-"


def _analysis(task: str) -> str:
    """The judge's analysis, as their extract_analysis reads it."""
    for pattern in (r"Analysis\s*:\s*(.*?)\s*Final Decision", r"\|\|\|\s*(.*?)\s*Final Decision", r"\|\|\|\s*(.*)"):
        if match := re.search(pattern, task, flags=re.S | re.I):
            return match.group(1).strip()
    return ""


def _spans(words: str) -> tuple[FeatureEvidence, ...]:
    """Their `Span N: ...` evidence; the activation scores are not in the file (0.0)."""
    found = []
    for part in _SPAN.split(words.replace("<s>[INST]", "")):
        span = _QUERY.split(part)[-1].strip()
        if span and span not in found:
            found.append(span)
    return tuple(FeatureEvidence(score=0.0, span=s, sample=s) for s in found)


def _as_decision(word: str) -> Decision | None:
    title = word.capitalize()
    return title if title in ("Yes", "Probably", "Maybe", "No") else None  # type: ignore[return-value]


def read_paper_tsv(path: Path, task: str, space: dict[str, Any]) -> Catalog:
    """The authors' TSV as a judge Catalog of `task` in the feature space `space` (FeatureSpace.describe())."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    header = [h.strip() for h in lines[0].split("\t")]
    if missing := [c for c in COLUMNS if c not in header]:
        raise InputError(f"{path}:1: no column {', '.join(missing)}; expected the FAC-Synthesis annotate_*.py "
                         f"header {' '.join(COLUMNS)}, found {' '.join(header) or 'nothing'}")
    at = {c: header.index(c) for c in COLUMNS}
    d_sae = int(space.get("d_sae") or 0)
    records: dict[int, FeatureRecord] = {}
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = [_unescape(f) for f in line.rstrip("\r").split("\t")]
        if len(fields) != len(header):
            raise InputError(f"{path}:{number}: {len(fields)} fields but the header has {len(header)}")
        row = {c: fields[i] for c, i in at.items()}
        try:
            feature = int(float(row["FeatureID"]))  # pandas round trips may have written 12.0
        except ValueError:
            raise InputError(f"{path}:{number}: FeatureID {row['FeatureID']!r} is not a number") from None
        if feature < 0 or (d_sae and feature >= d_sae):
            raise InputError(f"{path}:{number}: FeatureID {feature} is outside the SAE's 0..{d_sae - 1}: the file "
                             "is for another SAE")
        if feature in records:
            raise InputError(f"{path}:{number}: FeatureID {feature} appears twice")
        relevance, verify = _decision(row["Task"]), _decision(row["Verify"])
        analysis, summary = _analysis(row["Task"]), row["Summary"].strip()
        cannot_tell = "cannot tell" in analysis.lower() or "cannot tell" in summary.lower()
        relevant = relevance in RELEVANT_DECISIONS and verify in RELEVANT_DECISIONS and not cannot_tell
        reason = analysis or (f"not judged (Task {row['Task'].strip()!r})" if relevance == "-" else relevance)
        records[feature] = FeatureRecord(
            feature=feature, relevant=relevant, decision=_as_decision(relevance),
            reason=f"{reason} [verify: {verify}]", explanation=None if cannot_tell or not summary else summary,
            activation_rate=0.0, evidence=_spans(row["Words"]), method="judge",
            stats={},
        )
    if not records:
        raise InputError(f"{path}: no feature rows under the header")
    return Catalog(task=task, method="judge", space=space, anchor=f"imported from {path.name} (FAC-Synthesis TSV)",
                   records=tuple(records[j] for j in sorted(records)))
