"""`fac select POOL`: the smallest subset of a pool that covers the task features a seed misses (lazy greedy)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from fac.commands import options as opt
from fac.console import setup_logging, stdout
from fac.tools.errors import ConfigError


def select_command(
    pool: Path = typer.Argument(..., help="Candidate pool: jsonl/csv/parquet/txt, HF dir or hf:OWNER/NAME[:SPLIT]."),
    task: str = typer.Option(..., "--task", help="Task whose features are to be covered (e.g. toxicity)."),
    out: Path = typer.Option(..., "--out", help="Where to write the chosen rows (jsonl; the pool's own fields)."),
    k: int | None = typer.Option(None, "--k", min=1, help="Pick this many rows."),
    goal_fac: float | None = typer.Option(None, "--goal-fac", min=0.0, max=1.0,
                                          help="Pick until FAC (seed + picks) reaches this."),
    seed: Path | None = typer.Option(None, "--seed", help="Data already held: its covered features are not sought."),
    catalog: Path | None = typer.Option(None, "--catalog", help="Feature catalog file (default: the task's)."),
    text_field: str | None = typer.Option(None, "--text-field", help="Field holding the text (default: detected)."),
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    threshold: float = opt.THRESHOLD,
    device: str | None = opt.DEVICE,
    dtype: str = opt.DTYPE,
    max_tokens: int = opt.MAX_TOKENS,
    no_cache: bool = opt.NO_CACHE,
    verbose: int = opt.VERBOSE,
) -> None:
    """Choose rows of POOL by lazy-greedy max coverage of the task features the seed does not cover; writes the
    rows to --out and a report (FAC after each pick, the features each pick adds) beside it."""
    from fac.tools.catalog.resolve import catalog_file, resolve_catalog
    from fac.tools.catalog.store import open_store
    from fac.tools.catalog.tasks import get_task
    from fac.tools.coverage import activated_features, fac_score
    from fac.tools.selection import Candidate, select
    from fac.tools.text.datasets import read_records, read_samples

    setup_logging(verbose)
    if (k is None) == (goal_fac is None):
        raise ConfigError("give exactly one of --k N and --goal-fac X")
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; expected a .jsonl file to write")
    from_file = catalog_file(catalog, task) if catalog is not None else None
    if from_file is None:
        get_task(task)
    records = list(read_records(pool, text_field))
    if not records:
        raise ConfigError(f"{pool}: the pool is empty")
    held = read_samples(seed, text_field) if seed is not None else []
    space = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, no_cache).load()
    found = from_file or resolve_catalog(space, task, store=open_store())
    found.check_space(space.describe())
    task_features = set(found.task_features())
    covered = activated_features(space.score(held), threshold) & task_features if held else set()
    candidates = [Candidate.of(s, task_features, threshold) for s in space.score([r.sample for r in records])]
    goal = math.ceil(goal_fac * len(task_features) - 1e-9) if goal_fac is not None else None
    picks = select(candidates, task_features, covered, k=k, goal_covered=goal)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(dict(records[p.index].fields), ensure_ascii=False, default=str) + "\n"
                           for p in picks), encoding="utf-8")
    steps: list[dict[str, Any]] = [{"pick": n, "row": records[p.index].line, "added": list(p.added),
                                    "fac": p.covered_after / len(task_features)} for n, p in enumerate(picks, 1)]
    fac_seed = fac_score(task_features, covered)
    fac_after = picks[-1].covered_after / len(task_features) if picks else fac_seed
    report = {"pool": str(pool), "seed": str(seed) if seed else None, "task": found.task, "k": k,
              "goal_fac": goal_fac, "n_pool": len(records), "n_task_features": len(task_features),
              "fac_seed": fac_seed, "fac_after": fac_after, "picks": steps, "space": space.describe()}
    report_path = out.with_suffix(".report.json")
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    short = goal_fac is not None and fac_after < goal_fac - 1e-9
    reached = f" (goal {goal_fac} not reachable from this pool)" if short else ""
    stdout.print(f"FAC {fac_seed:.3f} -> {fac_after:.3f} with {len(picks)} of {len(records)} pool rows{reached}; "
                 f"rows -> {out}, report -> {report_path}", highlight=False)
