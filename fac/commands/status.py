"""`fac status RUN`: a run's figures from its run.json, without loading any model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fac.console import stdout


def status_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `fac run` (e.g. runs/NAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print run.json as one JSON object."),
) -> None:
    """Show where a run stands: phase, FAC before/now against the goal, samples, tokens, stop reason."""
    from fac.graph.run_dir import RunDir

    run = RunDir(run_dir)
    config, status = run.config_values(), run.read_status()
    if as_json:
        sys.stdout.write(json.dumps({"run_dir": str(run_dir), **status}, ensure_ascii=False) + "\n")
        return
    if not status:
        stdout.print(f"{run_dir}: created, no step finished yet (task {config.get('task')}, seed {config.get('seed')})",
                     highlight=False)
        return
    lines = [
        f"run {status.get('run_id')} · {status.get('phase')}"
        + (f" ({status['interrupted']})" if status.get("interrupted") else ""),
        f"FAC {status.get('fac_before', 0.0):.3f} -> {status.get('fac_now', 0.0):.3f} (goal {status.get('goal_fac')})"
        f" · covered {status.get('covered')}/{status.get('n_task')} · missing {status.get('missing')}"
        f" · exhausted {status.get('exhausted')} · short {status.get('short')}",
        f"accepted {status.get('accepted')} · tokens {status.get('tokens_used', 0):,}"
        f"/{status.get('budget_tokens', 0):,} · round {status.get('round')} · updated {status.get('updated_at')}",
    ]
    if status.get("stop_reason"):
        lines.append(f"stop: {status['stop_reason']} ({status.get('stop_detail', '')})")
    if status.get("rejections"):
        lines.append("rejected drafts: " + ", ".join(f"{k} {v}" for k, v in sorted(status["rejections"].items())))
    stdout.print("\n".join(lines), highlight=False)
