"""Reward modelling (helpfulness): a Bradley-Terry linear head on frozen model features, trained on seed pairs vs
seed + fac pairs vs seed + the same number of untargeted pairs; pairwise accuracy on held-out hh-rlhf pairs.

Features: the embedded SmolLM2-135M-Instruct's block `--layer` output (default 15, the shipped SAE's), averaged
over the reply's tokens of the chat-templated conversation. Head: r(x) = w·φ(x), fitted by L2-regularised logistic
regression on φ(chosen) − φ(rejected) (and its negation as the other class), no intercept, features standardised
on the training pairs, C fixed at 1.0 (not tuned). Each arm is fitted on `--seeds` bootstrap resamples of its
pairs (spread = their sd). Accuracy: the share of held-out pairs with r(chosen) > r(rejected).

Held out: the hh-rlhf pairs in corpus/heldout_ids.json, cut as the shipped corpora are (examples/make_task_assets.py).
Training pairs: examples/helpfulness/seed.jsonl, the pairs a `fac run` kept (bench/runs/tasks/helpfulness/fac/)
and untargeted ones (untargeted.jsonl), both made by bench/task_samples.py; fac and untargeted cut to one count.
Run:  python bench/reward_model.py [--data ../shared/data] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples"))

from lm_probe import Probe  # noqa: E402
from results_file import write_section  # noqa: E402

from fac.tools.text.formats import Messages, missing_parts, pair_sides  # noqa: E402

Pair = tuple[Messages, Messages]


def read_pairs(path: Path, nested: bool = False) -> list[Pair]:
    """The complete pairs of a jsonl file (`nested`: a run's samples.jsonl, fields under `fields`); [] if none."""
    if not path.is_file():
        print(f"{path}: missing; that arm is skipped", file=sys.stderr)
        return []
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        row = row.get("fields", {}) if nested else row
        if all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")) and missing_parts(row, "pair"):
            continue
        sides = pair_sides(row)
        if sides is not None:
            pairs.append(sides)
    return pairs


def features(probe: Probe, conversations: list[Messages]) -> np.ndarray:  # (n, d_model)
    """The block's output averaged over each conversation's last turn (the reply)."""
    seqs, starts = [], []
    for messages in conversations:
        full = probe.ids(probe.chat(messages))
        head = probe.ids(probe.chat(messages[:-1], generation_prompt=True))
        seqs.append(full[:512])
        starts.append(min(len(head), len(seqs[-1]) - 1))
    rows: list[np.ndarray] = []
    for hidden, _ in probe.run(seqs, logits=False):
        for i in range(hidden.shape[0]):
            k = len(rows)
            rows.append(hidden[i, starts[k] : len(seqs[k])].mean(0).numpy())
    return np.stack(rows)


def fit(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's weights and the per-feature scale the differences were divided by."""
    from sklearn.linear_model import LogisticRegression

    scale = diffs.std(0) + 1e-6
    x = np.concatenate([diffs, -diffs]) / scale
    y = np.concatenate([np.ones(len(diffs)), np.zeros(len(diffs))])
    head = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000).fit(x, y)
    return head.coef_[0], scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "runs" / "tasks")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write-results", action="store_true", help="rewrite its bench/RESULTS.md section")
    parser.add_argument("--n-eval", type=int, default=None, help="held-out pairs (default: all that fit)")
    parser.add_argument("--n", type=int, default=None, help="fac/untargeted pairs per arm (default: the fewer)")
    args = parser.parse_args()
    import make_task_assets as assets

    started = time.time()
    seed = read_pairs(ROOT / "examples" / "helpfulness" / "seed.jsonl")
    fac = read_pairs(args.runs / "helpfulness" / "fac" / "samples.jsonl", nested=True)
    untargeted = read_pairs(args.runs / "helpfulness" / "untargeted.jsonl")
    n = args.n if args.n is not None else min(len(fac), len(untargeted))
    held = assets.hh_pairs(args.data, assets.held_out(args.data)["hh"], held_out_only=True)[: args.n_eval]
    evaluation = [s for s in (pair_sides(r) for r in held) if s is not None]
    probe = Probe.load(args.layer)

    def diffs_of(pairs: list[Pair]) -> np.ndarray:
        if not pairs:
            return np.zeros((0, probe.model.config.hidden_size))
        phi = features(probe, [c for pair in pairs for c in pair])
        return phi[0::2] - phi[1::2]

    eval_diffs = diffs_of(evaluation)
    parts = {"seed": diffs_of(seed), "fac": diffs_of(fac[:n]), "untargeted": diffs_of(untargeted[:n])}
    arms = {"seed": ["seed"], "seed + fac": ["seed", "fac"], "seed + untargeted": ["seed", "untargeted"]}
    results: dict[str, Any] = {"layer": args.layer, "n_seed": len(seed), "n_added": n, "n_fac_kept": len(fac),
                               "n_untargeted_complete": len(untargeted), "n_eval": len(evaluation), "arms": {}}
    for arm, names in arms.items():
        if any(len(parts[p]) == 0 for p in names):
            continue
        pool = np.concatenate([parts[p] for p in names])
        accuracies = []
        for s in range(args.seeds):
            rng = random.Random(s)
            w, scale = fit(pool[[rng.randrange(len(pool)) for _ in range(len(pool))]])
            accuracies.append(float(((eval_diffs / scale) @ w > 0).mean()))
        results["arms"][arm] = {"n_pairs": len(pool), "per_seed": accuracies, "mean": statistics.mean(accuracies),
                                "sd": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}
        print(f"{arm}: accuracy {results['arms'][arm]['mean']:.3f} ± {results['arms'][arm]['sd']:.3f}",
              file=sys.stderr)
    results["seconds"] = round(time.time() - started)
    out = args.runs / "helpfulness" / "reward_model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    table = [f"| arm | training pairs | held-out pairwise accuracy (mean ± sd over {args.seeds} bootstrap seeds) |",
             "|---|---:|---:|"]
    table += [f"| {arm} | {r['n_pairs']} | {r['mean']:.3f} ± {r['sd']:.3f} |" for arm, r in results["arms"].items()]
    body = (f"## Downstream: reward model (helpfulness)\n\n`python bench/reward_model.py` (layer {args.layer}, "
            f"{len(evaluation)} held-out hh-rlhf pairs; fac kept {len(fac)} complete pairs, untargeted "
            f"{len(untargeted)}, {n} of each used; {results['seconds']} s):\n\n" + "\n".join(table) + "\n")
    print(body)
    if args.write_results:
        write_section("## Downstream: reward model (helpfulness)", body)


if __name__ == "__main__":
    main()
