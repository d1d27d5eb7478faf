"""`fac report RUN`: one self-contained HTML page of a run (coverage curve, features, rejections, ledger)."""

from __future__ import annotations

from pathlib import Path

import typer

from fac.console import stdout


def report_command(
    run: Path = typer.Argument(..., help="Run directory (the --out of `fac run`)."),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write [RUN/report.html]."),
) -> None:
    """Write a run's report: coverage curve, FAC before/after, per-feature table, rejections, token/time ledger."""
    from fac.traces.report import write_report

    path = write_report(run, out)
    stdout.print(f"report: {path}", highlight=False, markup=False)
