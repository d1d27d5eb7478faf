"""Prompt templates declare their variables truthfully; rendering is strict; guidelines resolve or fail clearly."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta

import fac.prompts as prompts
from fac.prompts import (
    TemplateVarsError,
    UnknownGuidelineError,
    environment,
    guideline,
    known_guidelines,
    render,
    template_names,
    template_source,
    template_vars,
)

JUDGE_TEMPLATES = [f"judge.{step}.{role}" for step in ("explain", "verify", "relevance") for role in ("system", "user")]


def test_judge_templates_exist() -> None:
    assert set(JUDGE_TEMPLATES) <= set(template_names())


@pytest.mark.parametrize("name", template_names())
def test_every_template_declares_exactly_the_variables_it_uses(name: str) -> None:
    used = meta.find_undeclared_variables(environment().parse(template_source(name)))
    assert template_vars(name) == used, f"{name}.j2: fix its '{{# vars: ... #}}' line"


def test_render_fills_the_spans_in_order_and_keeps_the_trailing_newline() -> None:
    text = render("judge.verify.user", explanation="Cat words.", spans=["the cat", "a cat sat"])
    assert "Description: Cat words." in text
    assert "Span 1: the cat\nSpan 2: a cat sat\n" in text
    assert text.endswith("\n") and not text.startswith("{#")


def test_render_puts_task_and_guideline_in_the_relevance_prompt() -> None:
    text = render("judge.relevance.system", task="toxicity", guideline="GUIDE-LINE-TEXT")
    assert '"toxicity"' in text and "GUIDE-LINE-TEXT" in text


def test_render_refuses_missing_and_unexpected_variables() -> None:
    with pytest.raises(TemplateVarsError, match=r"missing \['spans'\]"):
        render("judge.verify.user", explanation="x")
    with pytest.raises(TemplateVarsError, match=r"unexpected \['spanz'\]"):
        render("judge.explain.user", spans=["a"], spanz=["b"])


def test_environment_is_strict_about_undefined_values() -> None:
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("{{ x.missing }}").render(x={})


def test_template_vars_requires_the_vars_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.j2").write_text("Hello {{ name }}\n")
    (tmp_path / "empty.j2").write_text("{# vars: #}\nNo variables.\n")
    monkeypatch.setattr(prompts, "PROMPTS_DIR", tmp_path)
    with pytest.raises(TemplateVarsError, match="first line must be"):
        template_vars("bad")
    assert template_vars("empty") == set()
    with pytest.raises(TemplateVarsError, match=r"no prompt template nope\.j2"):
        template_vars("nope")


def test_known_guidelines_are_the_five_builtin_tasks() -> None:
    assert known_guidelines() == ["helpfulness", "instruction_following", "survival_instinct", "sycophancy",
                                  "toxicity"]
    for name in known_guidelines():
        text = guideline(name)
        assert text.startswith("# ") and len(text.split()) > 60 and text == text.strip()


def test_unknown_guideline_names_the_known_ones() -> None:
    with pytest.raises(UnknownGuidelineError, match=r"unknown guideline 'toxic'.*sycophancy.*toxicity"):
        guideline("toxic")
    assert issubclass(UnknownGuidelineError, ValueError)


def test_user_guideline_file_is_read_and_an_empty_one_refused(tmp_path: Path) -> None:
    mine = tmp_path / "legal.md"
    mine.write_text("\n# Legal\n- contracts and clauses\n\n")
    assert guideline(str(mine)) == "# Legal\n- contracts and clauses"
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(UnknownGuidelineError, match="is empty"):
        guideline(str(empty))
    with pytest.raises(UnknownGuidelineError, match="unknown guideline"):
        guideline(str(tmp_path / "missing.md"))


def test_prompts_package_imports_nothing_of_ours() -> None:
    tree = ast.parse(Path(prompts.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m.split(".")[0] == "fac"]
