"""The loop as a graph: measure → plan → generate → verify → plan … until a router says stop."""

from __future__ import annotations

from langgraph.graph import START, StateGraph

from fac.agents.generator import generate
from fac.agents.measurer import measure, route_after_measure
from fac.agents.planner import plan, route_after_plan
from fac.agents.verifier import route_after_verify, verify
from fac.graph.context import Deps
from fac.graph.state import GenState


def build_graph() -> StateGraph[GenState, Deps, GenState, GenState]:
    """The uncompiled graph; the runner compiles it with a checkpointer."""
    graph: StateGraph[GenState, Deps, GenState, GenState] = StateGraph(GenState, context_schema=Deps)
    graph.add_node(measure)
    graph.add_node(plan)
    graph.add_node(generate)
    graph.add_node(verify)
    graph.add_edge(START, "measure")
    graph.add_conditional_edges("measure", route_after_measure)
    graph.add_conditional_edges("plan", route_after_plan)
    graph.add_edge("generate", "verify")
    graph.add_conditional_edges("verify", route_after_verify)
    return graph
