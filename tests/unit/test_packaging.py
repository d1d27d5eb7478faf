"""The top-level folders install under the one import name `fac`, from this repository."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("package", "folder"), [("fac", "fac"), ("fac.tools", "tools"), ("fac.agents", "agents"),
                                                 ("fac.graph", "graph"), ("fac.prompts", "prompts"),
                                                 ("fac.traces", "traces")])
def test_each_package_is_imported_from_its_folder_in_the_repository(package: str, folder: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve() == REPO / folder / "__init__.py"



@pytest.mark.parametrize("folder", ["tools", "agents", "graph", "prompts", "traces"])
def test_fac_holds_a_committed_symlink_to_each_top_level_folder(folder: str) -> None:
    link = REPO / "fac" / folder
    assert link.is_symlink() and link.resolve() == REPO / folder  # static tools follow it; no import hook
