"""Behaviour steering (sycophancy, survival instinct): a CAA vector from seed A/B items vs seed + fac items vs seed +
the same number of untargeted items; steering control rate on held-out items.

Contrastive activation addition (Rimsky et al. 2024) on the embedded SmolLM2-135M-Instruct at block `--layer`
(default 15, the shipped SAE's): for each training item, the chat-templated question followed by the assistant's
"(" and the behaviour-matching letter, minus the same with the other letter, read at the letter token; the vector is
the mean difference. Evaluation: on held-out items the vector times the multiplier is added to the block's output
at the answer's "(" position, and an item counts as behaviour-matching when the matching letter's logit there
beats the other's.
Control rate = matching rate at multiplier +1 minus at -1. Each arm's vector is fitted on `--seeds` bootstrap
resamples of its items (spread = their sd).

Held out: sycophancy, the caa-sycophancy held-out ids (the first --n-eval of them in file order); survival instinct,
the last 20 % of the human-written file. Training items: examples/<task>/seed.jsonl, the A/B items a `fac run` kept
(bench/runs/tasks/<task>/fac/samples.jsonl) and untargeted ones (untargeted.jsonl), both made by
bench/task_samples.py; fac and untargeted are cut to the same count.
Run:  python bench/steering.py --task sycophancy [--data ../shared/data] [--seeds 5]
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "examples"))

from lm_probe import Probe  # noqa: E402
from results_file import write_section  # noqa: E402

from fac.tools.text.formats import ab_letter, ab_options, missing_parts  # noqa: E402

Item = tuple[str, str, str]  # (question with choices, matching letter, other letter)
SURVIVAL_HUMAN = "anthropic-evals/advanced-ai-risk/human_generated_evals/survival-instinct.jsonl"


def as_item(row: dict[str, Any]) -> Item | None:
    """A complete A/B row as (question, matching letter, other letter)."""
    fields = {k: str(row.get(k, "")) for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior")}
    if missing_parts(fields, "ab") is not None:
        return None
    match, other = ab_letter(fields["answer_matching_behavior"]), ab_letter(fields["answer_not_matching_behavior"])
    assert match is not None and other is not None
    return fields["question"], match, other


def read_items(path: Path, nested: bool = False) -> list[Item]:
    """The complete A/B items of a jsonl file (`nested`: a run's samples.jsonl, fields under `fields`); [] if none."""
    if not path.is_file():
        print(f"{path}: missing; that arm is skipped", file=sys.stderr)
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [as_item(r.get("fields", {}) if nested else r) for r in rows]
    return [i for i in items if i is not None]


def held_out(task: str, data: Path, n_eval: int) -> list[Item]:
    if task == "sycophancy":
        import make_task_assets as assets

        held = assets.held_out(data)["caa"]
        rows = assets.caa_items(data, held, held_out_only=True)[:n_eval]
    else:
        lines = [json.loads(x) for x in (data / SURVIVAL_HUMAN).read_text(encoding="utf-8").splitlines() if x.strip()]
        rows = lines[int(0.8 * len(lines)) :]
    items = [as_item(r) for r in rows]
    return [i for i in items if i is not None and set(ab_options(i[0])) == {"A", "B"}]


class Steering:
    """The probe with the letter tokens after "(" and the prompt rendering of an A/B question."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        shell = probe.chat([{"role": "user", "content": "x"}], generation_prompt=True)
        base = probe.ids(shell + "(")
        self.paren = base[-1]
        assert [*probe.ids(shell), self.paren] == base, "'(' must be one token after the assistant header"
        self.letter = {}
        for letter in "AB":
            ids = probe.ids(shell + "(" + letter)
            assert ids[: len(base)] == base and len(ids) == len(base) + 1, "a letter must be one token after '('"
            self.letter[letter] = ids[-1]

    def prompt(self, question: str) -> list[int]:
        """The chat-templated question up to the assistant's turn (the answer's "(" comes next)."""
        return self.probe.ids(self.probe.chat([{"role": "user", "content": question}], generation_prompt=True))

    def differences(self, items: list[Item]) -> torch.Tensor:  # (n, d_model)
        """Per item: the block's output at the matching letter minus at the other letter (after "(")."""
        rows = []
        for question, match, other in items:
            past = self.probe.prefix([*self.prompt(question), self.paren])
            rows.append(self.probe.step(past, self.letter[match])[0] - self.probe.step(past, self.letter[other])[0])
        return torch.stack(rows)

    def matching_rates(self, items: list[Item], settings: list[tuple[torch.Tensor, float]]) -> list[float]:
        """Per (vector, multiplier): the share of items whose matching letter beats the other after "(", the vector
        added at the answer's "(" position (the prompt's cache is shared by all settings)."""
        hits = [0] * len(settings)
        for question, match, other in items:
            past = self.probe.prefix(self.prompt(question))
            for k, (vector, multiplier) in enumerate(settings):
                with self.probe.steer(vector, multiplier):
                    logits = self.probe.step(past, self.paren)[1]
                hits[k] += int(logits[self.letter[match]] > logits[self.letter[other]])
        return [h / len(items) for h in hits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sycophancy", "survival_instinct"), required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "runs" / "tasks")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-eval", type=int, default=200)
    parser.add_argument("--write-results", action="store_true", help="rewrite this task's bench/RESULTS.md section")
    parser.add_argument("--multiplier", type=float, default=1.0, help="steer at +M and -M (default 1, as CAA)")
    parser.add_argument("--n", type=int, default=None, help="fac/untargeted items per arm (default: the fewer)")
    args = parser.parse_args()
    started = time.time()
    seed = read_items(ROOT / "examples" / args.task / "seed.jsonl")
    fac = read_items(args.runs / args.task / "fac" / "samples.jsonl", nested=True)
    untargeted = read_items(args.runs / args.task / "untargeted.jsonl")
    n = args.n if args.n is not None else min(len(fac), len(untargeted))
    evaluation = held_out(args.task, args.data, args.n_eval)
    steering = Steering(Probe.load(args.layer))
    diffs = {name: steering.differences(items) for name, items in
             (("seed", seed), ("fac", fac[:n]), ("untargeted", untargeted[:n])) if items}
    arms = {"seed": ["seed"], "seed + fac": ["seed", "fac"], "seed + untargeted": ["seed", "untargeted"]}
    zero = torch.zeros(steering.probe.model.config.hidden_size)
    fitted: list[tuple[str, int, torch.Tensor]] = []
    sizes = {}
    for arm, parts in arms.items():
        if any(p not in diffs for p in parts):
            continue
        pool = torch.cat([diffs[p] for p in parts])
        sizes[arm] = len(pool)
        for s in range(args.seeds):
            rng = random.Random(s)
            fitted.append((arm, s, pool[[rng.randrange(len(pool)) for _ in range(len(pool))]].mean(0)))
    settings = [(zero, 0.0)] + [(v, m) for _, _, v in fitted for m in (args.multiplier, -args.multiplier)]
    rates = steering.matching_rates(evaluation, settings)
    results: dict[str, Any] = {"task": args.task, "layer": args.layer, "multiplier": args.multiplier,
                               "n_seed": len(seed), "n_added": n, "n_fac_kept": len(fac),
                               "n_untargeted_complete": len(untargeted), "n_eval": len(evaluation),
                               "unsteered_matching_rate": rates[0], "arms": {}}
    for arm in sizes:
        per_seed = [{"seed": s, "norm": float(v.norm()), "plus": rates[1 + 2 * k], "minus": rates[2 + 2 * k],
                     "control": rates[1 + 2 * k] - rates[2 + 2 * k]}
                    for k, (a, s, v) in enumerate(fitted) if a == arm]
        controls = [r["control"] for r in per_seed]
        results["arms"][arm] = {"n_items": sizes[arm], "per_seed": per_seed, "control_mean": statistics.mean(controls),
                                "control_sd": statistics.stdev(controls) if len(controls) > 1 else 0.0,
                                "plus_mean": statistics.mean(r["plus"] for r in per_seed),
                                "minus_mean": statistics.mean(r["minus"] for r in per_seed)}
        print(f"{arm}: control {results['arms'][arm]['control_mean']:.3f} ± {results['arms'][arm]['control_sd']:.3f}",
              file=sys.stderr)
    results["seconds"] = round(time.time() - started)
    out = args.runs / args.task / "steering.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    m = args.multiplier
    table = [f"| arm | training items | matching rate at +{m:g} | at -{m:g} | control rate (mean ± sd over "
             f"{args.seeds} bootstrap seeds) |", "|---|---:|---:|---:|---:|"]
    table += [f"| {arm} | {r['n_items']} | {r['plus_mean']:.3f} | {r['minus_mean']:.3f} | "
              f"{r['control_mean']:+.3f} ± {r['control_sd']:.3f} |" for arm, r in results["arms"].items()]
    body = (f"## Downstream: steering ({args.task})\n\n`python bench/steering.py --task {args.task}` "
            f"(layer {args.layer}, {results['n_eval']} held-out items, unsteered matching rate "
            f"{results['unsteered_matching_rate']:.3f}; fac kept {len(fac)} complete A/B items, untargeted "
            f"{len(untargeted)}, {n} of each used; {results['seconds']} s):\n\n" + "\n".join(table) + "\n")
    print(body)
    if args.write_results:
        write_section(f"## Downstream: steering ({args.task})", body)


if __name__ == "__main__":
    main()
