"""`fac report`: one self-contained HTML page of a run, built from its trace, run.json and config.json.

The page holds the coverage curve over rounds (an inline SVG drawn here, no script, no network), FAC before
and after, a per-feature table (explanation, spans, attempts, accepted samples, status), the rejected drafts
with their reasons and a token/time ledger per node. Jinja2 autoescapes every value (seed and generated
texts are hostile input), a Content-Security-Policy forbids scripts anyway, and keys are redacted.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from fac.graph.run_dir import RunDir, read_json_object
from fac.tools.errors import InputError
from fac.tools.redaction import redact
from fac.traces.store import (
    TraceCall,
    TraceStep,
    TraceStore,
    TraceVerdict,
    feature_status,
    missing_features,
    reading,
    recorded_exhausted,
)

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
REPORT_FILE = "report.html"
PLOT_W, PLOT_H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 260, 48, 16, 14, 34


@dataclass(frozen=True)
class FeatureRow:
    feature: int
    explanation: str
    relevance: str
    status: str
    spans: tuple[str, ...]  # catalog evidence spans
    fired: tuple[str, ...]  # spans that fired it in drafts
    attempts: int
    best_score: float | None
    accepted: tuple[str, ...]  # texts of accepted samples that activate it
    last_reason: str
    prompts: list[tuple[str, list[dict[str, str]]]] = field(default_factory=list)  # (label, messages)


@dataclass(frozen=True)
class LedgerRow:
    node: str
    steps: int
    seconds: float
    calls: int
    tokens_in: int
    tokens_out: int
    llm_seconds: float


@dataclass(frozen=True)
class Plot:
    """The coverage curve in SVG coordinates."""

    points: list[tuple[float, float, int, float]]  # x, y, round, fac
    x_ticks: list[tuple[float, int]]
    y_ticks: list[tuple[float, str]]
    goal_y: float | None
    width: int = PLOT_W
    height: int = PLOT_H

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in self.points)


def coverage_curve(steps: list[TraceStep], fac_before: float) -> list[tuple[int, float]]:
    """(round, FAC) after each round's verify step, starting at round 0 with the seed's FAC."""
    by_round: dict[int, float] = {0: fac_before}
    for step in steps:
        if step.node == "verify" and step.status == "done" and "fac_now" in step.coverage:
            by_round[step.round] = float(step.coverage["fac_now"])
    return sorted(by_round.items())


def plot(curve: list[tuple[int, float]], goal: float | None) -> Plot:
    """Scale the curve into the SVG box: x = rounds, y = FAC in [0, 1]."""
    last = max((r for r, _ in curve), default=0)
    span = max(last, 1)
    inner_w, inner_h = PLOT_W - PAD_L - PAD_R, PLOT_H - PAD_T - PAD_B

    def x(r: float) -> float:
        return PAD_L + inner_w * r / span

    def y(v: float) -> float:
        return PAD_T + inner_h * (1.0 - min(max(v, 0.0), 1.0))

    step = max(1, round(span / 10))
    return Plot(points=[(x(r), y(v), r, v) for r, v in curve],
                x_ticks=[(x(r), r) for r in range(0, last + 1, step)] or [(x(0), 0)],
                y_ticks=[(y(v / 4), f"{v / 4:.2f}") for v in range(5)],
                goal_y=y(goal) if goal is not None else None)


def ledger(steps: list[TraceStep], calls: list[TraceCall]) -> list[LedgerRow]:
    """Per node: steps, wall time, LLM calls, tokens in/out, LLM time; a total row last."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in steps:
        rows[s.node]["steps"] += 1
        rows[s.node]["seconds"] += s.latency_s or 0.0
    for c in calls:
        row = rows[c.node or "?"]
        row["calls"] += 1
        row["tokens_in"] += c.tokens_in
        row["tokens_out"] += c.tokens_out
        row["llm_seconds"] += c.latency_s or 0.0
    order = {"measure": 0, "plan": 1, "generate": 2, "verify": 3}
    out = [LedgerRow(node, int(r["steps"]), r["seconds"], int(r["calls"]), int(r["tokens_in"]), int(r["tokens_out"]),
                     r["llm_seconds"]) for node, r in sorted(rows.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))]
    total = LedgerRow("total", sum(r.steps for r in out), sum(r.seconds for r in out), sum(r.calls for r in out),
                      sum(r.tokens_in for r in out), sum(r.tokens_out for r in out), sum(r.llm_seconds for r in out))
    return [*out, total]


def feature_rows(store: TraceStore, steps: list[TraceStep], verdicts: list[TraceVerdict], calls: list[TraceCall],
                 min_per_feature: int) -> list[FeatureRow]:
    """One row per feature the run worked on (the seed's missing features), in id order."""
    info = store.features()
    missing = missing_features(steps)
    exhausted = recorded_exhausted(steps)
    targeted = {v.feature for v in verdicts} | {j for s in steps if s.node == "plan" for j in s.targets}
    features = sorted(set(missing) if missing is not None else targeted)
    by_call = {c.id: c for c in calls}
    rows = []
    for j in features:
        own = [v for v in verdicts if v.feature == j]
        accepted = tuple(v.text for v in verdicts if v.decision == "accepted" and j in v.credited)
        fired = tuple(dict.fromkeys(v.span for v in own if v.span))
        own_calls = [by_call[v.call] for v in own if v.call in by_call]
        prompts = [(f"first prompt (call {own_calls[0].ref})", own_calls[0].prompt)] if own_calls else []
        if len(own_calls) > 1:
            prompts.append((f"last prompt (call {own_calls[-1].ref})", own_calls[-1].prompt))
        record = info.get(j)
        rows.append(FeatureRow(
            feature=j, explanation=record.explanation if record else "", relevance=record.relevance if record else "",
            status=feature_status(j, missing, exhausted, len(accepted), len(own), min_per_feature),
            spans=record.spans if record else (), fired=fired, attempts=len(own),
            best_score=max((v.score for v in own), default=None), accepted=accepted,
            last_reason=own[-1].reason if own else "", prompts=prompts))
    return rows


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "—"


def render_report(run_dir: Path) -> str:
    """The report page of `run_dir` as one HTML string (raises InputError on a missing or damaged run)."""
    run = RunDir(run_dir)
    config_file = read_json_object(run.config)  # damaged run files are named first, then a missing trace
    status = run.read_status()
    with reading(run_dir) as store:  # checks the directory and the trace
        steps, calls, verdicts = store.steps(), store.calls(), store.verdicts()
        sessions = store.sessions()
        config: dict[str, Any] = (config_file or {}).get("config", {})
        min_per_feature = int(config.get("min_per_feature", 1))
        features = feature_rows(store, steps, verdicts, calls, min_per_feature)
        run_id = str((config_file or {}).get("run_id") or store.run_id() or run_dir.name)
    measure = next((s for s in steps if s.node == "measure" and s.status == "done"), None)
    fac_before = float(status.get("fac_before", measure.outputs.get("fac_before", 0.0) if measure else 0.0))
    curve = coverage_curve(steps, fac_before)
    fac_now = float(status.get("fac_now", curve[-1][1]))
    goal = config.get("goal_fac")
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    html = env.get_template(TEMPLATE).render(
        run_id=run_id, run_dir=str(run_dir), config=config, status=status, sessions=sessions,
        fac_before=fac_before, fac_now=fac_now, goal=goal, curve=curve, plot=plot(curve, goal),
        features=features, rejected=[v for v in verdicts if v.decision == "rejected"],
        rejections=sorted(dict(status.get("rejections") or {}).items()),  # counted by the verifier, per kind
        accepted=sum(1 for v in verdicts if v.decision == "accepted"), ledger=ledger(steps, calls),
        n_steps=len(steps), generated_at=_when(time.time()))
    clean: str = redact(html)
    return clean


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report (default: RUN/report.html) and return its path."""
    html = render_report(run_dir)
    path = out or run_dir / REPORT_FILE
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot write the report ({err.strerror})") from None
    logger.info("report: %s (%d bytes)", path, len(html))
    return path
