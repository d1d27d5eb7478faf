"""The graph for `langgraph dev` / LangGraph Studio (see langgraph.json): the same nodes and edges as
`build_graph()`, with a JSON-able context.

Studio sends the run context as JSON, but `Deps` holds a feature space, a catalog and a chat model. So here
the context is `StudioContext(run_dir=...)`: a run directory made by `fac run ... --out DIR` (its config.json
names the seed, task, model, SAE and generator); each node loads that run's `Deps` once (cached) and calls
the real node. A Studio user supplies, in the context panel: {"run_dir": "/abs/path/to/runs/NAME"} and an
empty input {}. The run writes accepted samples to that directory's samples.jsonl and chroma index like
`fac run --resume` would (use a copy for experiments); Studio keeps its own checkpoints and threads.
LangSmith tracing needs only its usual environment variables (LANGSMITH_TRACING, LANGSMITH_API_KEY).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from fac.graph.builder import build_graph
from fac.graph.context import Deps
from fac.graph.state import GenState
from fac.tools.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudioContext:
    """What a Studio user types into the context panel."""

    run_dir: str = field(default="", metadata={"description": "A run directory made by `fac run --out DIR`."})


@lru_cache(maxsize=2)
def load_deps(run_dir: str) -> Deps:
    """The run's dependencies, loaded from its config.json (seconds to minutes: models load once per directory)."""
    from fac.graph.run_dir import RunDir
    from fac.graph.runner import make_deps

    if not run_dir:
        raise ConfigError("set the context's run_dir to a directory made by `fac run SEED --task NAME --out DIR`")
    paths = RunDir(Path(run_dir).expanduser())
    if not paths.config.is_file():
        raise ConfigError(f"{run_dir}: no config.json; make the run directory with `fac run ... --out {run_dir}`")
    return make_deps(paths.saved_config(), paths)


Node = Callable[..., dict[str, Any]]
StudioGraph = StateGraph[GenState, StudioContext, GenState, GenState]


def bind(name: str, node: Node, deps_for: Callable[[str], Deps] = load_deps) -> Node:
    """`node` as a Studio node: the StudioContext's run directory becomes the Deps the node expects."""
    takes_config = "config" in inspect.signature(node).parameters

    def studio_node(state: GenState, runtime: Runtime[StudioContext], config: RunnableConfig) -> dict[str, Any]:
        context = runtime.context if isinstance(runtime.context, StudioContext) else StudioContext()
        inner = Runtime(context=deps_for(context.run_dir), store=runtime.store, stream_writer=runtime.stream_writer)
        return node(state, inner, config) if takes_config else node(state, inner)

    studio_node.__name__ = studio_node.__qualname__ = name
    studio_node.__doc__ = node.__doc__
    return studio_node


def _function(runnable: object) -> Callable[..., Any]:
    """The plain function LangGraph wrapped in a node or router runnable."""
    func = getattr(runnable, "func", None)
    if not callable(func):
        raise TypeError(f"{runnable!r} wraps no function; build_graph() must add plain functions as nodes")
    return cast("Callable[..., Any]", func)


def studio_graph(deps_for: Callable[[str], Deps] = load_deps) -> StudioGraph:
    """`build_graph()` with every node bound to a run directory's Deps (edges and routers unchanged)."""
    base = build_graph()
    graph: StudioGraph = StateGraph(GenState, context_schema=StudioContext)
    for name, spec in base.nodes.items():
        graph.add_node(name, bind(name, _function(spec.runnable), deps_for))
    for start, end in base.edges:
        graph.add_edge(start, end)
    for start, branches in base.branches.items():
        for branch in branches.values():
            graph.add_conditional_edges(start, _function(branch.path), branch.ends)
    return graph


def make_graph() -> CompiledStateGraph[GenState, StudioContext, GenState, GenState]:
    """The compiled Studio graph (the server adds its own checkpointer)."""
    return studio_graph().compile()


graph = make_graph()
