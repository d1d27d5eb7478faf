"""The samples the downstream benches train on: a real `fac run` on a task's demo seed, and untargeted drafts.

Both come from the same generator (the embedded SmolLM2-135M-Instruct), the same seed and the same
generator-token budget, in the task's format (pairs, A/B items, instructions):
- fac        : the LangGraph loop; kept samples are verified (target fires, well-formed, every part present);
- untargeted : "write more examples like these" with 3 random seed examples; every reply that parses into a
               complete sample of the format is kept (no feature check), as bench/synthesis.py does for text.

Writes bench/runs/tasks/<task>/fac/ (the run directory: samples.jsonl, run.json, ...) and
bench/runs/tasks/<task>/untargeted.jsonl (rows with the format's fields), and prints a summary line; with
`--fewshot-style list|turns` the folder is <task>-<style> (the downstream benches read <task>/, the default).
Run:  python bench/task_samples.py --task sycophancy [--budget-tokens 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "tasks"
sys.path.insert(0, str(ROOT / "bench"))


def untargeted(deps: Any, budget: int) -> tuple[list[dict[str, Any]], int, int]:
    """Untargeted drafts of the run's format within `budget` generator tokens: (complete rows, drafts, tokens)."""
    from synthesis import reply_text, spent

    from fac.agents.generator import call_generator
    from fac.agents.prompting import untargeted_request
    from fac.agents.replies import parse_reply
    from fac.tools.text.formats import missing_parts

    cfg = deps.config
    rng = random.Random(cfg.random_seed)
    tokens, drafts, kept = 0, 0, []
    while tokens + 8 * (300 + cfg.max_new_tokens) <= budget:
        requests = []
        for _ in range(8):
            requests.append(untargeted_request(deps, f"untargeted:{drafts}", rng.randrange(2**31)))
            drafts += 1
        for reply in call_generator(deps.writer, requests, cfg):
            tokens += spent(reply)
            parsed = parse_reply(reply_text(reply), cfg.sample_format)
            if parsed and parsed[0].strip() and missing_parts(parsed[1], cfg.sample_format) is None:
                kept.append({"text": parsed[0], **parsed[1]})
        print(f"  untargeted: {len(kept)} complete of {drafts} drafts, {tokens:,} tokens", file=sys.stderr)
    return kept, drafts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", default=None, help="default: examples/<task>/seed.jsonl")
    parser.add_argument("--budget-tokens", type=int, default=20_000)
    parser.add_argument("--methods", default="fac,untargeted")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--fewshot-style", default="auto", choices=["auto", "list", "turns"],
                        help="seed examples as a list in the prompt or as earlier turns (auto: turns here)")
    parser.add_argument("--out", type=Path, default=RUNS)
    parser.add_argument("--write-results", action="store_true", help="rewrite the bench/RESULTS.md section")
    args = parser.parse_args()

    from synthesis import run_fac

    from fac.graph.config import RunConfig
    from fac.graph.run_dir import RunDir
    from fac.graph.runner import load_catalog, make_deps, make_writer
    from fac.tools.space.features import FeatureSpace

    out = args.out / (args.task if args.fewshot_style == "auto" else f"{args.task}-{args.fewshot_style}")
    seed = args.seed or str(ROOT / "examples" / args.task / "seed.jsonl")
    cfg = RunConfig(seed=seed, task=args.task, budget_tokens=args.budget_tokens, goal_fac=1.0, max_rounds=1000,
                    max_new_tokens=args.max_new_tokens, fewshot_style=args.fewshot_style)
    started = time.time()
    space = FeatureSpace.load(cfg.model, cfg.sae, mode=cfg.mode, threshold=cfg.threshold, max_tokens=cfg.max_tokens)
    shared = {"space": space, "catalog": load_catalog(cfg, space), "writer": make_writer(cfg, space)}
    summary: dict[str, Any] = {"task": args.task, "budget_tokens": args.budget_tokens, "format": cfg.sample_format,
                               "fewshot": "turns" if cfg.fewshot_turns else "list"}
    for method in args.methods.split(","):
        t0 = time.time()
        if method == "fac":
            res = run_fac(shared, cfg, out / "fac")
            summary["fac"] = {k: v for k, v in res.items() if k != "trajectory"}
        elif method == "untargeted":
            scratch = RunDir(out / "untargeted-run")
            scratch.root.mkdir(parents=True, exist_ok=True)
            rows, drafts, tokens = untargeted(make_deps(cfg, scratch, **shared), args.budget_tokens)
            (out / "untargeted.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                  encoding="utf-8")
            summary["untargeted"] = {"kept": len(rows), "drafts": drafts, "tokens": tokens}
        else:
            raise SystemExit(f"unknown method {method}")
        summary[method]["seconds"] = round(time.time() - t0)
    summary["seconds"] = round(time.time() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    if args.write_results:
        write_results(args.out)


def write_results(runs: Path) -> None:
    """bench/RESULTS.md's section: per task and few-shot style, what the fac run and the untargeted drafts kept."""
    from results_file import write_section

    lines = ["## Downstream: task samples", "", "`python bench/task_samples.py --task T [--fewshot-style S --out DIR]` "
             "(the embedded SmolLM2-135M-Instruct as generator, the demo seed, the same generator-token budget per "
             "method; kept = complete samples of the format, for fac also verified; few-shot: the seed examples as "
             "a list inside the prompt, or as earlier turns of the conversation):", "",
             "| task | format | few-shot | budget | fac: kept (drafts rejected, why) | FAC before → after "
             "| untargeted: complete / drafts | time |", "|---|---|---|---:|---|---|---|---:|"]
    for path in sorted(runs.glob("*/summary.json")):
        s = json.loads(path.read_text())
        fac, un = s.get("fac", {}), s.get("untargeted", {})
        why = ", ".join(f"{k} {v}" for k, v in sorted(fac.get("rejections", {}).items()))
        lines.append(f"| {s['task']} | {s['format']} | {s.get('fewshot', 'list')} | {s['budget_tokens']:,} "
                     f"| {fac.get('kept', '–')} ({why}) | "
                     f"{fac.get('fac_before', 0):.3f} → {fac.get('fac', 0):.3f} | {un.get('kept', '–')} / "
                     f"{un.get('drafts', '–')} | {s['seconds']} s |")
    write_section("## Downstream: task samples", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
