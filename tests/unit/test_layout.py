"""The import rules of the README's "Layout" section hold for every module (imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("tools", "agents", "graph", "traces", "prompts")
NODE_MODULES = {"fac.agents.generator", "fac.agents.planner", "fac.agents.verifier", "fac.agents.measurer"}
GRAPH_CORE = {"fac.graph.config", "fac.graph.context", "fac.graph.state", "fac.graph.status", "fac.graph.checkpoint",
              "fac.graph.run_dir"}


def _modules() -> dict[str, set[str]]:
    """Every module of the top-level folders, as `fac.<folder>...`, with the absolute names it imports."""
    found: dict[str, set[str]] = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            name = ".".join(("fac", *path.relative_to(REPO).with_suffix("").parts)).removesuffix(".__init__")
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            found[name] = imported
    return found


MODULES = _modules()


def _ours(imported: set[str], prefix: str) -> set[str]:
    return {m for m in imported if m == prefix or m.startswith(prefix + ".")}


def test_the_walk_sees_every_folder() -> None:
    assert {m.split(".")[1] for m in MODULES} == set(FOLDERS) and len(MODULES) > 50


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("fac.prompts")))
def test_prompts_import_nothing_of_ours(module: str) -> None:
    assert not _ours(MODULES[module], "fac") - _ours(MODULES[module], "fac.prompts")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("fac.tools")))
def test_tools_never_import_langgraph_agents_graph_or_traces(module: str) -> None:
    imported = MODULES[module]
    assert not _ours(imported, "langgraph")
    assert not (_ours(imported, "fac.agents") | _ours(imported, "fac.graph") | _ours(imported, "fac.traces")
                | _ours(imported, "fac.commands") | _ours(imported, "fac.cli"))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("fac.agents")))
def test_no_agent_imports_another_agents_node_module_or_the_traces(module: str) -> None:
    imported = MODULES[module]
    assert not {m for m in imported if any(m == n or m.startswith(n + ".") for n in NODE_MODULES - {module})}
    assert not _ours(imported, "fac.traces")
    assert {m.rsplit(".", 1)[0] if m not in GRAPH_CORE else m for m in _ours(imported, "fac.graph")} <= GRAPH_CORE


@pytest.mark.parametrize("module", sorted(GRAPH_CORE))
def test_the_graph_core_imports_no_agent_and_no_trace(module: str) -> None:
    assert not (_ours(MODULES[module], "fac.agents") | _ours(MODULES[module], "fac.traces"))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("fac.traces")))
def test_traces_observe_the_graph_but_never_import_the_agents(module: str) -> None:
    assert not _ours(MODULES[module], "fac.agents")


def test_only_the_builder_and_studio_wire_the_agents_into_the_graph() -> None:
    wiring = {m for m in MODULES if m.startswith("fac.graph") and _ours(MODULES[m], "fac.agents")}
    assert wiring <= {"fac.graph.builder", "fac.graph.studio", "fac.graph.runner"}
