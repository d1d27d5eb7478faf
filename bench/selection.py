"""Selection from a pool: lazy-greedy max coverage (`fac select`) vs random vs the longest texts, at equal k.

"Less is enough" for selection (issue 15; arXiv 2502.14050 selects by SAE feature coverage and finds that
length drives feature counts): given the demo seed (examples/toxicity/seed.jsonl, 100 narrow toxic tweets)
and a pool of real non-held-out toxic tweets, pick k rows three ways and report, for seed + picks, FAC and
the AUPRC of the validity benchmark's detector (logistic regression on MiniLM embeddings, the same fixed
negatives per seed; Davidson held-out rows in-domain, ToxiGen out-of-domain). Random selection is repeated
over the detector seeds; greedy and longest are deterministic. Data: ../shared/data (bench only).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/selection.py [--pool 2000] [--k 10 25 50] [--seeds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _validity() -> ModuleType:
    """bench/fac_validity.py: its data loaders, detector and embedding cache."""
    spec = importlib.util.spec_from_file_location("fac_validity", ROOT / "bench" / "fac_validity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fac_validity"] = module
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    from fac.tools.cache_dir import default_cache_dir
    from fac.tools.catalog.build import load_catalog_file
    from fac.tools.catalog.tasks import get_task
    from fac.tools.coverage import activated_features
    from fac.tools.selection import Candidate, select
    from fac.tools.space.features import FeatureSpace
    from fac.tools.text.datasets import read_samples
    from fac.tools.text.embeddings import default_embedder

    v = _validity()
    data = Path(args.data)
    tweets, held_out = v.load_davidson(data)
    tox_texts, tox_labels = v.load_toxigen(data)
    seed = [s for s in read_samples(ROOT / "examples" / "toxicity" / "seed.jsonl") if isinstance(s, str)]
    seen = {s.casefold() for s in seed}
    toxic = [t for t in tweets if t.label != v.NEITHER and t.text.casefold() not in seen]
    pool = random.Random(args.pool_seed).sample(toxic, args.pool)
    negatives = [t for t in tweets if t.label == v.NEITHER]
    catalog = load_catalog_file(get_task("toxicity").catalog)
    task = set(catalog.task_features())
    space = FeatureSpace.load("default", "default")
    embedder = v.CachedEmbedder(default_embedder(), default_cache_dir() / "bench" / "validity_minilm.npz")
    t0 = time.perf_counter()
    pool_scores = space.score([t.text for t in pool])
    covered = activated_features(space.score(seed), space.threshold) & task
    candidates = [Candidate.of(s, task, space.threshold) for s in pool_scores]
    t_score = time.perf_counter() - t0
    evals = {"in_domain": (embedder.embed([t.text for t in held_out]),
                           np.array([int(t.label != v.NEITHER) for t in held_out])),
             "out_of_domain": (embedder.embed(tox_texts), np.array(tox_labels))}
    negative_vectors = embedder.embed([t.text for t in negatives])
    seed_vectors = embedder.embed(seed)
    pool_vectors = embedder.embed([t.text for t in pool])
    by_length = sorted(range(len(pool)), key=lambda i: (-pool_scores[i].n_tokens, i))

    def fac_of(picked: list[int]) -> float:
        union = set(covered).union(*(candidates[i].task_scores for i in picked))
        return len(union & task) / len(task)

    def detector(picked: list[int], seed_no: int) -> dict[str, float]:
        chosen = np.random.default_rng(seed_no).choice(len(negatives), args.negatives, replace=False)
        positives = np.vstack([seed_vectors, pool_vectors[picked]]) if picked else seed_vectors
        scored: dict[str, float] = v.train_and_score(positives, negative_vectors[chosen], evals, args.c)
        return scored

    rows: list[dict[str, Any]] = []
    base = [detector([], s) for s in range(args.seeds)]
    rows.append({"k": 0, "method": "seed only", "fac": [fac_of([])], "auprc": base})
    for k in args.k:
        greedy = [p.index for p in select(candidates, task, covered, k=k)]
        longest = by_length[:k]
        randoms = [random.Random(1000 + s).sample(range(len(pool)), k) for s in range(args.seeds)]
        rows.append({"k": k, "method": "lazy greedy (fac select)", "picked": len(greedy), "fac": [fac_of(greedy)],
                     "auprc": [detector(greedy, s) for s in range(args.seeds)],
                     "mean_tokens": float(np.mean([pool_scores[i].n_tokens for i in greedy])) if greedy else 0.0})
        rows.append({"k": k, "method": "random", "picked": k, "fac": [fac_of(r) for r in randoms],
                     "auprc": [detector(r, s) for s, r in enumerate(randoms)],
                     "mean_tokens": float(np.mean([pool_scores[i].n_tokens for r in randoms for i in r]))})
        rows.append({"k": k, "method": "longest", "picked": k, "fac": [fac_of(longest)],
                     "auprc": [detector(longest, s) for s in range(args.seeds)],
                     "mean_tokens": float(np.mean([pool_scores[i].n_tokens for i in longest]))})
    embedder.save()
    for row in rows:
        for ev in v.EVALS:
            values = [a[ev] for a in row["auprc"]]
            row[ev] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "command": "bench/selection.py " + " ".join(sys.argv[1:]), "space": space.describe(),
            "n_task_features": len(task), "seed_covered": len(covered), "pool": len(pool),
            "config": {"k": args.k, "seeds": args.seeds, "negatives": args.negatives, "c": args.c,
                       "pool_seed": args.pool_seed},
            "rows": rows, "seconds": {"scoring": round(t_score, 1), "total": round(time.perf_counter() - started, 1)}}


def format_table(result: dict[str, Any]) -> str:
    lines = ["| k | method | rows picked | FAC (seed + picks) | mean tokens | AUPRC in-domain | AUPRC ToxiGen |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        fac = np.mean(row["fac"])
        fac_text = f"{fac:.3f}" + (f" ± {np.std(row['fac'], ddof=1):.3f}" if len(row["fac"]) > 1 else "")
        tokens = f"{row['mean_tokens']:.1f}" if "mean_tokens" in row else "—"
        lines.append(f"| {row['k']} | {row['method']} | {row.get('picked', 0)} | {fac_text} | {tokens} | "
                     f"{row['in_domain']['mean']:.4f} ± {row['in_domain']['sd']:.4f} | "
                     f"{row['out_of_domain']['mean']:.4f} ± {row['out_of_domain']['sd']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=2000, help="pool size (random non-held-out toxic tweets)")
    parser.add_argument("--pool-seed", type=int, default=0)
    parser.add_argument("--k", type=int, nargs="+", default=[10, 25, 50], help="picks per method")
    parser.add_argument("--seeds", type=int, default=5, help="detector seeds (and random draws)")
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "runs" / "selection.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(format_table(result))
    print(f"F_task {result['n_task_features']}, seed covers {result['seed_covered']}; pool {result['pool']}; "
          f"{result['seconds']['total']:.0f} s; JSON in {out}")


if __name__ == "__main__":
    main()
