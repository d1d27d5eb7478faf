"""Tasks: built-ins with their guideline and shipped corpora, custom tasks from a guideline file, bad names."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from fac.prompts import guideline
from fac.tools.catalog.tasks import get_task, known_tasks
from fac.tools.errors import InputError


def test_toxicity_ships_its_anchor_background_and_catalog_inside_the_package() -> None:
    task = get_task("toxicity")
    package = Path(str(resources.files("fac"))).resolve() / "assets" / "tasks" / "toxicity"
    assert task.anchor == package / "anchor.jsonl" and task.anchor.is_file()
    assert task.background == package / "background.jsonl" and task.background.is_file()
    assert task.catalog == package / "catalog.json.gz" and (package / "LICENSE").is_file()
    assert task.guideline == guideline("toxicity")
    assert task.describe_corpora() == ("fac/assets/tasks/toxicity/anchor.jsonl vs "
                                       "fac/assets/tasks/toxicity/background.jsonl")


def test_every_builtin_has_a_guideline_shipped_corpora_and_a_licence() -> None:
    assert known_tasks() == ["helpfulness", "instruction_following", "survival_instinct", "sycophancy", "toxicity"]
    for name in known_tasks():
        task = get_task(name)
        assert task.guideline.strip() and task.builtin
        assert task.anchor is not None and task.anchor.is_file() and task.background is not None
        assert (task.anchor.parent / "LICENSE").is_file()


def test_names_are_case_and_dash_insensitive() -> None:
    assert get_task("Instruction-Following").name == "instruction_following"


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as err:
        get_task("toxicityy")
    message = str(err.value)
    assert "unknown task 'toxicityy'" in message and "\n" not in message
    assert all(name in message for name in known_tasks()) and "--guideline" in message


def test_a_guideline_file_makes_a_custom_task(tmp_path: Path) -> None:
    file = tmp_path / "legal.md"
    file.write_text("Legal advice: contracts, liability, courts.\n")
    task = get_task("legal-advice", file)
    assert (task.name, task.guideline, task.builtin, task.anchor) == (
        "legal_advice", "Legal advice: contracts, liability, courts.", False, None)


def test_an_empty_or_missing_guideline_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(InputError, match="empty"):
        get_task("custom", tmp_path / "empty.md")
    with pytest.raises(InputError, match="no such guideline file"):
        get_task("custom", tmp_path / "missing.md")


def test_bad_task_names_are_refused() -> None:
    with pytest.raises(InputError, match="task name"):
        get_task("../etc")


def test_user_corpora_replace_the_shipped_ones_and_drop_the_shipped_catalog(tmp_path: Path) -> None:
    mine = tmp_path / "mine.jsonl"
    task = get_task("toxicity").with_corpora(anchor=mine, label_field="label", positive_labels=("1",))
    assert (task.anchor, task.background, task.label_field, task.positive_labels, task.catalog) == (
        mine, None, "label", ("1",), None)
    assert task.describe_corpora().endswith("mine.jsonl [label in 1]")
    unchanged = get_task("toxicity")
    assert unchanged.with_corpora() is unchanged
