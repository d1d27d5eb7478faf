"""`fac trace RUN`: a run's rounds and steps, one feature's story (--feature), or a step's LLM calls (--step)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from fac.console import stdout
from fac.tools.errors import ConfigError, InputError

if TYPE_CHECKING:  # fac.traces.store imports langchain: loaded when the command runs, not for `fac --help`
    from fac.traces.store import FeatureStory, TraceCall, TraceStep, TraceStore, TraceVerdict

TEXT_CHARS = 160


def _t(value: Any, style: str = "") -> Text:
    """User and model text as a rich Text (never parsed as markup: seed data is hostile), keys redacted."""
    from fac.tools.redaction import redact

    return Text(redact(str(value)), style=style)


def _clip(text: str, limit: int = TEXT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ids(values: Any, limit: int = 8) -> str:
    values = list(values)
    return ", ".join(map(str, values[:limit])) + (f" +{len(values) - limit}" if len(values) > limit else "")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _min_per_feature(run: Path) -> int:
    """The run's min_per_feature (1 when its config.json is missing or damaged: the trace alone still reads)."""
    from fac.graph.run_dir import RunDir
    from fac.tools.errors import InputError

    try:
        value = RunDir(run).config_values().get("min_per_feature", 1)
    except InputError:
        return 1
    return value if isinstance(value, int) and value >= 1 else 1


def step_summary(step: TraceStep) -> str:
    """One line on what a step did."""
    out = step.outputs
    if step.status in ("error", "crashed"):
        return f"{step.status}: {_clip(step.error, 100)}"
    if step.status == "running":
        return "running (or the process died mid-step)"
    stop = f" · stop: {out['stop_reason']}" if out.get("stop_reason") else ""
    if step.node == "measure":
        return (f"seed FAC {out.get('fac_before', 0.0):.3f} · {len(out.get('missing', []))} of "
                f"{out.get('task_features', '?')} task features missing{stop}")
    if step.node == "plan":
        return f"picked {_ids(out.get('plan', []))}{stop}" if out.get("plan") else f"no pick{stop}"
    if step.node == "generate":
        return f"{out.get('drafts', 0)} drafts ({out.get('empty', 0)} empty)"
    if step.node == "verify":
        rejected = ", ".join(f"{k} {v}" for k, v in sorted((out.get("rejected") or {}).items()))
        return f"{out.get('accepted', 0)} accepted" + (f" · rejected: {rejected}" if rejected else "") + stop
    return ", ".join(sorted(out))


def _overview(store: TraceStore, as_json: bool) -> None:
    steps, calls, sessions = store.steps(), store.calls(), store.sessions()
    per_step: dict[int, list[TraceCall]] = {}
    for call in calls:
        if call.step is not None:
            per_step.setdefault(call.step, []).append(call)
    if as_json:
        _json({"run_id": store.run_id(), "sessions": [s.model_dump() for s in sessions],
               "steps": [{**s.model_dump(), "summary": step_summary(s), "calls": len(per_step.get(s.id, [])),
                          "tokens_in": sum(c.tokens_in for c in per_step.get(s.id, [])),
                          "tokens_out": sum(c.tokens_out for c in per_step.get(s.id, []))} for s in steps]})
        return
    stdout.print(_t(f"run {store.run_id()}: {len(steps)} steps, {len(calls)} LLM calls", "bold"))
    for session in sessions:
        stdout.print(_t(f"session {session.id}: {session.outcome}" + ("" if session.ended_at else
                                                                      " (no end recorded)"), "dim"))
    table = Table(show_lines=False)
    for name, justify in (("step", "right"), ("round", "right"), ("node", "left"), ("targets", "left"),
                          ("what happened", "left"), ("LLM calls", "right"), ("tokens in/out", "right"),
                          ("s", "right"), ("FAC after", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    last_round: int | None = None
    for s in steps:
        if last_round is not None and s.round != last_round:
            table.add_section()
        last_round = s.round
        own = per_step.get(s.id, [])
        tokens = f"{sum(c.tokens_in for c in own):,}/{sum(c.tokens_out for c in own):,}" if own else ""
        fac = f"{s.coverage['fac_now']:.3f}" if "fac_now" in s.coverage else ""
        style = "red" if s.status in ("error", "crashed") else "yellow" if s.status == "running" else ""
        table.add_row(str(s.id), str(s.round), s.node, _t(_ids(s.targets)), _t(step_summary(s), style),
                      str(len(own)) if own else "", tokens, _seconds(s.latency_s), fac)
    stdout.print(table)
    stdout.print(_t("details: --step ID (a step's LLM calls in full), --feature J (one feature's story)", "dim"))


def _story(store: TraceStore, feature: int, min_per_feature: int, as_json: bool) -> None:
    from fac.traces.store import feature_story

    story = feature_story(store, feature, min_per_feature)
    if as_json:
        _json(_story_json(story))
        return
    info = story.info
    stdout.print(_t(f"feature {feature}: {story.status}", "bold"))
    if info is not None:
        stdout.print(_t(f"explanation: {info.explanation or '—'} (relevance: {info.relevance})"))
        if info.spans:
            stdout.print(_t("anchor spans: " + " · ".join(f"“{s}”" for s in info.spans)))
    stdout.print(_t(f"planned in rounds: {_ids(story.planned, 30) or 'never'} · {len(story.attempts)} attempts · "
                    f"{story.accepted} accepted samples activate it"))
    if story.attempts:
        table = Table()
        for name in ("#", "round", "call", "kind", "score", "span", "decision", "reason", "text"):
            table.add_column(name, justify="right" if name in ("#", "round", "score") else "left")
        for i, attempt in enumerate(story.attempts, 1):
            v = attempt.verdict
            style = "green" if v.decision == "accepted" else ""
            table.add_row(str(i), str(v.round), attempt.call.ref if attempt.call else "", v.kind, f"{v.score:.3f}",
                          _t(v.span), _t(v.decision, style), _t(_clip(v.reason, 80)), _t(_clip(v.text)))
        stdout.print(table)
    for call in story.failed_calls:
        stdout.print(_t(f"call {call.ref} failed: {_clip(call.error, 200)}", "red"))
    for v in story.credited_by:
        stdout.print(_t(f"also activated by a sample accepted for feature {v.feature} in round {v.round}: "
                        f"{_clip(v.text, 100)}", "dim"))


def _story_json(story: FeatureStory) -> dict[str, Any]:
    return {"feature": story.feature, "status": story.status, "info": story.info.model_dump() if story.info else None,
            "planned_rounds": list(story.planned), "accepted": story.accepted,
            "attempts": [{**a.verdict.model_dump(), "call_ref": a.call.ref if a.call else None}
                         for a in story.attempts],
            "failed_calls": [c.model_dump() for c in story.failed_calls],
            "credited_by": [v.model_dump() for v in story.credited_by]}


def _step(store: TraceStore, ref: str, as_json: bool) -> None:
    from fac.traces.store import parse_step_ref

    step_id, ordinal = parse_step_ref(ref)
    step = store.step(step_id)
    if step is None:
        n = len(store.steps())
        raise InputError(f"step {step_id} is not in the trace of run {store.run_id()!r} "
                         f"({f'steps 1-{n}' if n else 'no steps yet'}; see `fac trace RUN`)")
    calls = store.calls(step=step_id)
    if ordinal is not None:
        if not 1 <= ordinal <= len(calls):
            raise InputError(f"step {step_id} ({step.node}) has {len(calls)} LLM calls; there is no call {ref}")
        calls = [calls[ordinal - 1]]
    verdicts = store.verdicts(step=step_id)
    if as_json:
        _json({"step": step.model_dump(), "calls": [c.model_dump() | {"ref": c.ref} for c in calls],
               "verdicts": [v.model_dump() for v in verdicts] if ordinal is None else []})
        return
    if ordinal is None:
        stdout.print(_t(f"step {step.id}: {step.node}, round {step.round}, {step.status}, "
                        f"{_seconds(step.latency_s)} s · targets {_ids(step.targets, 30) or '—'}", "bold"))
        stdout.print(_t(f"inputs:  {json.dumps(step.inputs, ensure_ascii=False)}"))
        stdout.print(_t(f"outputs: {json.dumps(step.outputs, ensure_ascii=False)}"))
        if step.coverage:
            c = step.coverage
            stdout.print(_t(f"after:   FAC {c.get('fac_now', 0.0):.3f} · covered {c.get('covered')}/{c.get('n_task')} "
                            f"· accepted {c.get('accepted')} · tokens {c.get('tokens_used', 0):,}"))
        if step.error:
            stdout.print(_t(f"error:   {step.error}", "red"))
        if verdicts:
            _verdict_table(verdicts)
    for call in calls:
        _call(call)


def _verdict_table(verdicts: list[TraceVerdict]) -> None:
    table = Table(title="verdicts")
    for name in ("feature", "kind", "score", "span", "decision", "reason", "text"):
        table.add_column(name, justify="right" if name in ("feature", "score") else "left")
    for v in verdicts:
        table.add_row(str(v.feature), v.kind, f"{v.score:.3f}", _t(v.span), _t(v.decision),
                      _t(_clip(v.reason, 80)), _t(_clip(v.text)))
    stdout.print(table)


def _call(call: TraceCall) -> None:
    feature = f" · feature {call.feature}" if call.feature is not None else ""
    stdout.print(Rule(_t(f"call {call.ref} · {call.model} · {call.tokens_in:,} in / {call.tokens_out:,} out · "
                         f"{_seconds(call.latency_s)} s{feature}")))
    for message in call.prompt:
        stdout.print(_t(f"[{message.get('role', '?')}]", "bold cyan"))
        stdout.print(_t(message.get("content", "")))
    stdout.print(_t("[response]", "bold green"))
    stdout.print(_t(call.response) if not call.error else _t(f"error: {call.error}", "red"))


def _json(data: Any) -> None:
    from fac.tools.redaction import redact

    sys.stdout.write(redact(json.dumps(data, ensure_ascii=False, default=str)) + "\n")


def trace_command(
    run: Path = typer.Argument(..., help="Run directory (the --out of `fac run`)."),
    feature: int | None = typer.Option(None, "--feature", help="One feature's story: every attempt, score and "
                                       "decision, in order."),
    step: str | None = typer.Option(None, "--step", help="A step's full LLM prompts and replies (e.g. 12), or one "
                                    "call (12.3)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Show a run's trace: rounds and steps, one feature's story, or a step's LLM calls in full."""
    from fac.traces.store import reading

    if feature is not None and step is not None:
        raise ConfigError("give --feature or --step, not both")
    with reading(run) as store:
        if feature is not None:
            _story(store, feature, _min_per_feature(run), as_json)
        elif step is not None:
            _step(store, step, as_json)
        else:
            _overview(store, as_json)
