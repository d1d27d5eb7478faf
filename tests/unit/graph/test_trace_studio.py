"""langgraph.json's Studio graph: the same topology as build_graph(), runnable with a JSON context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedChat
from trace_world import HIT, MISS, Demo, tiny_space

from fac.graph.builder import build_graph
from fac.graph.checkpoint import memory_saver
from fac.graph.studio import graph, studio_graph
from fac.tools.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _shape(g: Any) -> tuple[list[str], list[tuple[str, str, bool]]]:
    drawn = g.get_graph()
    return sorted(drawn.nodes), sorted((e.source, e.target, e.conditional) for e in drawn.edges)


def test_langgraph_json_names_the_studio_graph_with_the_loops_shape() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    path, _, name = config["graphs"]["fac"].partition(":")
    assert (ROOT / path).resolve() == ROOT / "graph" / "studio.py" and name == "graph"
    assert _shape(graph) == _shape(build_graph().compile())
    schema = graph.get_context_jsonschema()
    assert schema is not None and list(schema["properties"]) == ["run_dir"]


def test_studio_graph_runs_the_loop_from_a_json_context(tiny_lm: Any, tiny_tokenizer: Any, tiny_sae: Any,
                                                       tmp_path: Path) -> None:
    demo = Demo(tiny_space(tiny_lm, tiny_tokenizer, tiny_sae, tmp_path), tmp_path)
    (tmp_path / "run").mkdir()
    deps = demo.deps(demo.config(), ScriptedChat(script=[MISS, HIT]), tmp_path / "run")
    asked: list[str] = []
    app = studio_graph(lambda run_dir: asked.append(run_dir) or deps).compile(checkpointer=memory_saver())
    thread: Any = {"configurable": {"thread_id": "studio"}}
    chunks = list(app.stream({}, thread, context={"run_dir": "/runs/demo"}, stream_mode="custom"))
    assert [c["verdict"]["reason"].split(":")[0] for c in chunks] == ["target-not-activated", "accepted"]
    assert app.get_state(thread).values["stop_reason"] == "goal" and set(asked) == {"/runs/demo"}


def test_studio_without_a_run_dir_says_what_to_set() -> None:
    from fac.graph.studio import load_deps

    with pytest.raises(ConfigError, match="run_dir"):
        load_deps("")
