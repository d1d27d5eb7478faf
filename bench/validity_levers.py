"""Build the toxicity catalogs of issue 11's levers in one feature space, for `bench/fac_validity.py --variant`.

Levers, each a catalog file in OUT_DIR (the anchor and background are the shipped toxicity task's, never the
held-out ids):
  raw            the plain contrast (toxic vs benign tweets) on raw TopK activations (no floors)
  rho<R>         the same contrast with per-latent floors at ρ = R (a text activates j iff a_j > R · m_j)
  rho<R>-matched the contrast on length-matched task and background tweets (`--match-length`)
  rho<R>-hate    the union with a second contrast, hate vs merely offensive tweets of the anchor's labels
                 (the guideline's attacks on protected characteristics; `fac catalog merge`)
Scores come from fac's score cache, so each lever after the first costs no forward pass. Prints the
`--variant` flags to pass to bench/fac_validity.py.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/validity_levers.py --sae DIR [--rhos 0.25,0.5] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", default="default")
    parser.add_argument("--model", default="default")
    parser.add_argument("--rhos", default="0.25,0.5", help="comma-separated floor fractions ρ to build")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "runs" / "levers"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fac.tools.catalog.build import build_catalog
    from fac.tools.catalog.merge import merge_catalogs
    from fac.tools.catalog.tasks import get_task
    from fac.tools.space.features import FeatureSpace

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = FeatureSpace.load(args.model, args.sae)
    if space.floors is None:
        raise SystemExit(f"{args.sae} has no feature floors: run `fac sae calibrate --sae {args.sae} ...` first")
    task = get_task("toxicity")
    assert task.anchor is not None
    hate = task.with_corpora(anchor=task.anchor, background=None, label_field="label", positive_labels=("hate",))
    flags = []

    def save(name: str, catalog: Any, lever_space: FeatureSpace, started: float) -> None:
        path = out / f"{name}.json"
        catalog.save_json(path)
        rho = lever_space.floors.relative if lever_space.floors is not None else None
        flags.append(f"--variant {name}={path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
                     f"@{'raw' if rho is None else f'{rho:g}'}")
        print(f"{name}: {len(catalog.task_features())} task features of {len(catalog.records)}, "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)

    started = time.perf_counter()
    raw = dataclasses.replace(space, floors=None)
    save("raw", build_catalog(raw, task), raw, started)
    for rho in (float(r) for r in args.rhos.split(",")):
        floored = dataclasses.replace(space, floors=space.floors.with_relative(rho))
        started = time.perf_counter()
        plain = build_catalog(floored, task)
        save(f"rho{rho:g}", plain, floored, started)
        started = time.perf_counter()
        save(f"rho{rho:g}-matched", build_catalog(floored, task, match_length=True), floored, started)
        started = time.perf_counter()
        save(f"rho{rho:g}-hate", merge_catalogs([plain, build_catalog(floored, hate)], task="toxicity"), floored,
             started)
    print(" ".join(flags))


if __name__ == "__main__":
    main()
