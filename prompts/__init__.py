"""Jinja2 prompt templates of the agents and the judge, and the built-in task guidelines.

Each template `prompts/<agent>.<role>.j2` opens with `{# vars: a, b #}`, the variables it takes;
`render` refuses missing or unexpected variables and renders with StrictUndefined. Guidelines are
markdown files in `prompts/guidelines/`. This package imports nothing of ours: an unknown guideline
raises `UnknownGuidelineError` (a ValueError), which callers in `fac.tools` turn into InputError.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROMPTS_DIR = Path(__file__).resolve().parent
GUIDELINES_DIR = PROMPTS_DIR / "guidelines"
_VARS_LINE = re.compile(r"^\{#-?\s*vars:(?P<names>[^#]*)-?#\}")


class UnknownGuidelineError(ValueError):
    """A guideline name that is neither built in nor a readable file."""


class TemplateVarsError(ValueError):
    """A template without a valid vars line, or rendered with the wrong variables."""


@cache
def environment() -> Environment:
    """The shared Jinja2 environment over the prompts folder (StrictUndefined, trailing newline kept)."""
    return Environment(
        loader=FileSystemLoader(PROMPTS_DIR),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _filename(name: str) -> str:
    return name if name.endswith(".j2") else f"{name}.j2"


def template_names() -> list[str]:
    """All template names (without `.j2`), sorted."""
    return sorted(p.name[: -len(".j2")] for p in PROMPTS_DIR.glob("*.j2"))


def template_source(name: str) -> str:
    """The raw text of template `name`."""
    path = PROMPTS_DIR / _filename(name)
    if not path.is_file():
        raise TemplateVarsError(f"no prompt template {path.name}; known: {', '.join(template_names())}")
    return path.read_text(encoding="utf-8")


def template_vars(name: str) -> set[str]:
    """The variables declared on the template's first line, `{# vars: a, b #}` (may be empty)."""
    first = template_source(name).split("\n", 1)[0]
    match = _VARS_LINE.match(first)
    if match is None:
        raise TemplateVarsError(f"{_filename(name)}: first line must be '{{# vars: a, b #}}', found {first[:60]!r}")
    return {v.strip() for v in match["names"].split(",") if v.strip()}


def render(name: str, **variables: Any) -> str:
    """Render template `name` (e.g. "judge.explain.user") with exactly its declared variables."""
    declared = template_vars(name)
    missing, extra = declared - variables.keys(), variables.keys() - declared
    if missing or extra:
        raise TemplateVarsError(f"{_filename(name)} takes {sorted(declared)}; missing {sorted(missing)}, "
                                f"unexpected {sorted(extra)}")
    return environment().get_template(_filename(name)).render(**variables)


def known_guidelines() -> list[str]:
    """Names of the built-in task guidelines, sorted."""
    return sorted(p.stem for p in GUIDELINES_DIR.glob("*.md"))


def guideline(name: str) -> str:
    """A built-in guideline by name, or the text of a user-written guideline file (.md/.txt path)."""
    builtin = GUIDELINES_DIR / f"{name}.md"
    if "/" not in name and "\\" not in name and builtin.is_file():
        return builtin.read_text(encoding="utf-8").strip()
    path = Path(name).expanduser()
    if path.suffix.lower() in {".md", ".txt"} and path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise UnknownGuidelineError(f"guideline file {path} is empty; expected a description of the task")
        return text
    raise UnknownGuidelineError(f"unknown guideline {name!r}: expected one of {', '.join(known_guidelines())} "
                                "or a path to a .md/.txt guideline file")
