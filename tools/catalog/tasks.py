"""Tasks: a name, a relevance guideline for the LLM judge, and the corpora the catalog is built on.

Built-in tasks follow the paper (toxicity, helpfulness, instruction following, sycophancy, survival
instinct). Each ships corpora in the package assets (`fac/assets/tasks/<name>/`): an anchor of
task-positive samples and a background to contrast them with (toxic vs benign tweets; the preferred vs the
other side of hh-rlhf pairs; the behaviour-matching vs the other answer of A/B items; instructions vs chat
exchanges), with its prebuilt catalog and licence (examples/make_task_assets.py rebuilds them).
A guideline file makes a custom task; its corpora come from the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fac.tools.errors import InputError

logger = logging.getLogger(__name__)

ANCHOR_FILE = "anchor.jsonl"
BACKGROUND_FILE = "background.jsonl"
CATALOG_FILE = "catalog.json.gz"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")

# One line per task: what `fac catalog show` prints, and the judge's guideline when prompts/ has none.
SUMMARIES = {
    "toxicity": "Text that is toxic: crimes, sexual content, defamation, slurs, demeaning people for who they are, "
    "self-harm, requests for private information.",
    "helpfulness": "Responses a reward model should prefer: clear and polite, hard questions (code, math, reasoning), "
    "cultural sensitivity, asking for clarification, concision, broad knowledge.",
    "instruction_following": "Instructions with constraints (length, start/end phrases, negatives), requested formats, "
    "multi-step requests, personas and styles, directness, reasoning.",
    "sycophancy": "Echoing the user's stated view; changing an answer to match what the user wants to hear.",
    "survival_instinct": "An AI wanting to avoid shutdown or modification, wanting to stay on.",
}


@dataclass(frozen=True)
class TaskSpec:
    """What a catalog is built for and from."""

    name: str
    guideline: str
    summary: str = ""
    anchor: Path | None = None  # task-positive text (or a labelled corpus with label_field)
    background: Path | None = None  # text to contrast against
    label_field: str | None = None  # with positive_labels: split `anchor` into task-positive and background
    positive_labels: tuple[str, ...] = ()
    text_field: str | None = None
    catalog: Path | None = None  # a prebuilt catalog shipped with the task
    builtin: bool = True

    def with_corpora(
        self,
        *,
        anchor: Path | None = None,
        background: Path | None = None,
        label_field: str | None = None,
        positive_labels: tuple[str, ...] | None = None,
        text_field: str | None = None,
    ) -> TaskSpec:
        """This task with the given corpora replacing the shipped ones (the shipped catalog no longer applies)."""
        changes: dict[str, object] = {}
        if anchor is not None:
            changes.update(anchor=anchor, background=None, label_field=None, positive_labels=())
        if background is not None:
            changes["background"] = background
        if label_field is not None:
            changes["label_field"] = label_field
        if positive_labels is not None:
            changes["positive_labels"] = tuple(positive_labels)
        if text_field is not None:
            changes["text_field"] = text_field
        if not changes:
            return self
        return dataclasses.replace(self, catalog=None, **changes)  # type: ignore[arg-type]

    def describe_corpora(self) -> str:
        """The anchor (and background or labels) as one line, recorded in the catalog."""
        if self.anchor is None:
            return ""
        text = _display(self.anchor)
        if self.label_field:
            text += f" [{self.label_field} in {','.join(self.positive_labels)}]"
        if self.background is not None:
            text += f" vs {_display(self.background)}"
        return text


def _display(path: Path) -> str:
    """A path relative to the working directory (or, if shipped, to the `fac` package's parent), else as given."""
    resolved = path.resolve()
    for root in (Path.cwd(), Path(str(resources.files("fac"))).parent):
        if resolved.is_relative_to(root.resolve()):
            return str(resolved.relative_to(root.resolve()))
    return str(path)


def known_tasks() -> list[str]:
    return sorted(SUMMARIES)


def normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def task_data_dir(name: str) -> Path | None:
    """Where the shipped corpora of a built-in task lie (package assets `fac/assets/tasks/<name>/`), if any."""
    packaged = Path(str(resources.files("fac") / "assets" / "tasks" / name))
    return packaged if (packaged / ANCHOR_FILE).is_file() else None


def _builtin_guideline(name: str) -> str:
    """The judge's guideline from prompts/guidelines, or the one-line summary when prompts has none."""
    try:
        from fac.prompts import guideline, known_guidelines
    except ImportError:
        return SUMMARIES[name]
    for candidate in (name, name.replace("_", "-")):
        if candidate in known_guidelines():
            return str(guideline(candidate))
    return SUMMARIES[name]


def _read_guideline(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such guideline file")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    if not text:
        raise InputError(f"{path}: the guideline file is empty; expected a description of the task")
    return text


def check_name(name: str) -> str:
    """The normalised task name (lower case, '-' as '_'); names that cannot key a catalog are refused."""
    key = normalise_name(name)
    if not _NAME.match(key):
        raise InputError(f"task name {name!r}: use letters, digits, '_' or '-' (at most 63 characters)")
    return key


def get_task(name: str, guideline_file: Path | None = None) -> TaskSpec:
    """A built-in task by name, or a custom task when a guideline file is given."""
    key = check_name(name)
    if key not in SUMMARIES:
        if guideline_file is None:
            raise InputError(f"unknown task {name!r}; known tasks: {', '.join(known_tasks())} "
                             "(or pass --guideline FILE for a custom task)")
        return TaskSpec(name=key, guideline=_read_guideline(guideline_file), summary=f"custom task ({guideline_file})",
                        builtin=False)
    data = task_data_dir(key)
    spec = TaskSpec(
        name=key,
        guideline=_read_guideline(guideline_file) if guideline_file else _builtin_guideline(key),
        summary=SUMMARIES[key],
        anchor=data / ANCHOR_FILE if data else None,
        background=data / BACKGROUND_FILE if data and (data / BACKGROUND_FILE).is_file() else None,
        catalog=data / CATALOG_FILE if data and (data / CATALOG_FILE).is_file() else None,
    )
    logger.debug("task %s: anchor %s, background %s, shipped catalog %s", key, spec.anchor, spec.background,
                 spec.catalog)
    return spec
