"""Benchmark synthesis on the demo seed: the fac loop vs the paper's open-loop recipe vs untargeted generation.

All three use the same generator (the embedded SmolLM2-135M-Instruct, batched), the same feature space,
catalog and seed, and the same generator-token budget (prompt + completion tokens):

- fac        : the LangGraph loop (`fac run`), every kept sample verified, retries contrastive.
- open_loop  : the paper's recipe (METHOD §4): per missing feature, in the planner's priority order,
               2 drafts -> SAE picks Good/Bad (fallback: the top anchor span) -> 2 contrastive finals,
               all kept, never re-checked; until the budget is spent.
- untargeted : "write more examples like these" with 3 random seed examples; every non-empty reply kept.

Reported: FAC reached (seed + kept samples), kept samples, generator tokens, tokens per newly covered
feature, and the tokens the fac loop needed to reach the open loop's final FAC.
Run:  .venv/bin/python bench/synthesis.py [--budget-tokens 40000] [--out bench/runs/synthesis]
      .venv/bin/python bench/synthesis.py --generator   # generator tokens/s, fp32 vs bf16 weights
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

ROOT = Path(__file__).resolve().parents[1]


def covered_by(space: Any, texts: list[Any], task: set[int], threshold: float) -> set[int]:
    from fac.tools.coverage import activated_features

    usable = [t for t in texts if (t if isinstance(t, str) else "x").strip()]
    return activated_features(space.score(usable), threshold) & task if usable else set()


def spent(reply: Any) -> int:
    """Generator tokens of one reply (prompt + completion); failed requests spend nothing."""
    from fac.tools.llm.client import usage

    return sum(usage(reply)) if isinstance(reply, BaseMessage) else 0


def reply_text(reply: Any) -> str:
    return reply.text if isinstance(reply, BaseMessage) else ""


def run_fac(deps_args: dict[str, Any], cfg: Any, out: Path) -> dict[str, Any]:
    from fac.graph.runner import make_deps, open_run, run

    if out.exists():
        shutil.rmtree(out)
    cfg, paths = open_run(out, cfg)
    deps = make_deps(cfg, paths, **deps_args)
    trajectory: list[tuple[int, float]] = []
    result = run(deps, paths, on_status=lambda node, s: trajectory.append((s.tokens_used, s.fac_now)))
    s = result.status
    return {"fac": s.fac_now, "fac_before": s.fac_before, "kept": s.accepted, "tokens": s.tokens_used,
            "newly_covered": s.covered - round(s.fac_before * s.n_task), "stop": f"{s.stop_reason}: {s.stop_detail}",
            "trajectory": trajectory, "exhausted": len(result.exhausted), "rejections": result.rejections}


def run_open_loop(deps: Any, budget: int) -> dict[str, Any]:
    """The paper's recipe, batched 8 features at a time, in the planner's priority order, until the budget."""
    from fac.agents.generator import call_generator
    from fac.agents.planner import priority
    from fac.agents.prompting import build_requests
    from fac.agents.replies import parse_reply
    from fac.graph.state import GenState, Verdict

    cfg, space = deps.config, deps.space
    task = set(deps.catalog.task_features())
    seen = covered_by(space, list(deps.seed), task, cfg.threshold)
    missing = tuple(sorted(task - seen))
    state = GenState(task_features=tuple(sorted(task)), missing=missing, round=1)
    keys = priority(state, deps.catalog)
    queue = sorted(missing, key=keys.__getitem__)
    tokens, finals, on_target = 0, [], 0
    per_feature_guess = 4 * (400 + cfg.max_new_tokens)
    while queue and tokens + per_feature_guess <= budget:
        batch = queue[: max(1, min(8, (budget - tokens) // per_feature_guess))]
        queue = queue[len(batch) :]
        step = GenState(task_features=state.task_features, missing=missing, round=1, plan=tuple(batch))
        requests = build_requests(step, deps)
        drafts: dict[int, list[str]] = {j: [] for j in batch}
        for request, reply in zip(requests, call_generator(deps.writer, requests, cfg), strict=True):
            tokens += spent(reply)
            parsed = parse_reply(reply_text(reply), cfg.sample_format)
            if parsed:
                drafts[request.feature].append(parsed[0])
        best: dict[int, Verdict] = {}
        worst: dict[int, Verdict] = {}
        for j, texts in drafts.items():
            scored = sorted(((s.score_of(j), t, (s.hit(j).span if s.hit(j) else "")) for t, s in
                             zip(texts, space.score(texts), strict=True)) if texts else [], reverse=True)
            if scored:
                best[j] = Verdict(text=scored[0][1], score=scored[0][0], span=scored[0][2], reason="")
            if len(scored) > 1:
                worst[j] = Verdict(text=scored[1][1], score=scored[1][0], span=scored[1][2], reason="")
        final_state = GenState(task_features=state.task_features, missing=missing, round=2, plan=tuple(batch),
                               best=best, worst=worst)
        final_requests = build_requests(final_state, deps)
        for request, reply in zip(final_requests, call_generator(deps.writer, final_requests, cfg), strict=True):
            tokens += spent(reply)
            parsed = parse_reply(reply_text(reply), cfg.sample_format)
            if parsed:
                finals.append((request.feature, parsed[0]))
        print(f"  open loop: {len(finals)} finals, {tokens:,} tokens", file=sys.stderr)
    scores = space.score([t for _, t in finals]) if finals else []
    on_target = sum(s.score_of(j) > cfg.delta_accept for (j, _), s in zip(finals, scores, strict=True))
    covered = covered_by(space, [*deps.seed, *(t for _, t in finals)], task, cfg.threshold)
    return {"fac": len(covered) / len(task), "fac_before": len(seen) / len(task), "kept": len(finals),
            "tokens": tokens, "newly_covered": len(covered) - len(seen), "finals_on_target": int(on_target),
            "samples": [t for _, t in finals]}


def run_untargeted(deps: Any, budget: int) -> dict[str, Any]:
    from fac.agents.generator import call_generator
    from fac.agents.prompting import untargeted_request
    from fac.agents.replies import parse_reply

    cfg, space = deps.config, deps.space
    task = set(deps.catalog.task_features())
    seen = covered_by(space, list(deps.seed), task, cfg.threshold)
    tokens, kept, n = 0, [], 0
    rng = random.Random(cfg.random_seed)
    while tokens + 8 * (300 + cfg.max_new_tokens) <= budget:
        requests = []
        for _ in range(8):
            requests.append(untargeted_request(deps, f"untargeted:{n}", rng.randrange(2**31)))
            n += 1
        for reply in call_generator(deps.writer, requests, cfg):
            tokens += spent(reply)
            parsed = parse_reply(reply_text(reply), cfg.sample_format)
            if parsed:
                kept.append(parsed[0])
        print(f"  untargeted: {len(kept)} kept, {tokens:,} tokens", file=sys.stderr)
    covered = covered_by(space, [*deps.seed, *kept], task, cfg.threshold)
    return {"fac": len(covered) / len(task), "fac_before": len(seen) / len(task), "kept": len(kept),
            "tokens": tokens, "newly_covered": len(covered) - len(seen), "samples": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", default=str(ROOT / "examples" / "toxicity" / "seed.jsonl"))
    parser.add_argument("--task", default="toxicity")
    parser.add_argument("--budget-tokens", type=int, default=40_000)
    parser.add_argument("--methods", default="open_loop,fac,untargeted")
    parser.add_argument("--out", default=str(ROOT / "bench" / "runs" / "synthesis"))
    parser.add_argument("--sae", default="default", help="SAE directory (default: the shipped one)")
    parser.add_argument("--catalog", default=None, help="catalog file (default: the task's)")
    parser.add_argument("--threshold", type=float, default=0.0, help="δ (the demo seed needs 5: see RESULTS.md)")
    parser.add_argument("--fewshot-style", default="auto", choices=["auto", "list", "turns"],
                        help="seed examples as a list in the prompt or as earlier turns (auto: a list for text)")
    parser.add_argument("--generator", action="store_true",
                        help="only the generator's tokens/s, fp32 vs bf16 weights (bench/generator.py)")
    parser.add_argument("--generator-prompts", type=int, default=48)
    args = parser.parse_args()
    if args.generator:
        sys.path.insert(0, str(ROOT / "bench"))
        from generator import main as generator_main

        generator_main(["--prompts", str(args.generator_prompts)])
        return

    from fac.graph.config import RunConfig
    from fac.graph.run_dir import RunDir
    from fac.graph.runner import load_catalog, make_deps, make_writer
    from fac.tools.space.features import FeatureSpace

    out = Path(args.out)
    cfg = RunConfig(seed=args.seed, task=args.task, budget_tokens=args.budget_tokens, goal_fac=1.0,
                    max_rounds=1000, sae=args.sae, catalog=args.catalog, threshold=args.threshold,
                    fewshot_style=args.fewshot_style)
    started = time.time()
    space = FeatureSpace.load(cfg.model, cfg.sae, mode=cfg.mode, threshold=cfg.threshold, max_tokens=cfg.max_tokens)
    shared = {"space": space, "catalog": load_catalog(cfg, space), "writer": make_writer(cfg, space)}
    scratch = RunDir(out / "baselines")
    if scratch.root.exists():
        shutil.rmtree(scratch.root)
    scratch.root.mkdir(parents=True)
    deps = make_deps(cfg, scratch, **shared)
    print(f"loaded in {time.time() - started:.0f} s; F_task = {len(shared['catalog'].task_features())} features",
          file=sys.stderr)
    results: dict[str, Any] = {"budget_tokens": args.budget_tokens, "seed": args.seed, "task": args.task,
                               "threshold": args.threshold, "fewshot_style": args.fewshot_style}
    for method in args.methods.split(","):
        t0 = time.time()
        print(f"{method} …", file=sys.stderr)
        if method == "fac":
            res = run_fac(shared, cfg, out / "fac")
        elif method == "open_loop":
            res = run_open_loop(deps, args.budget_tokens)
        elif method == "untargeted":
            res = run_untargeted(deps, args.budget_tokens)
        else:
            raise SystemExit(f"unknown method {method}")
        res["seconds"] = round(time.time() - t0)
        res["tokens_per_new_feature"] = round(res["tokens"] / res["newly_covered"]) if res["newly_covered"] else None
        res.pop("samples", None)  # bench/downstream.py uses them; results.json keeps the figures
        results[method] = res
        print(json.dumps({k: v for k, v in res.items() if k != "trajectory"}), file=sys.stderr)
    if "fac" in results and "open_loop" in results:
        target = results["open_loop"]["fac"]
        reached = next((t for t, f in results["fac"]["trajectory"] if f >= target - 1e-9), None)
        results["fac"]["tokens_to_open_loop_fac"] = reached
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("| method | FAC before → after | kept samples | generator tokens | tokens / new feature | time |")
    print("|---|---|---|---|---|---|")
    for method in ("fac", "open_loop", "untargeted"):
        if method in results:
            r = results[method]
            print(f"| {method} | {r['fac_before']:.3f} → {r['fac']:.3f} | {r['kept']} | {r['tokens']:,} | "
                  f"{r['tokens_per_new_feature'] or '–'} | {r['seconds']} s |")
    if results.get("fac", {}).get("tokens_to_open_loop_fac") is not None:
        print(f"\nfac reached the open loop's FAC ({results['open_loop']['fac']:.3f}) after "
              f"{results['fac']['tokens_to_open_loop_fac']:,} generator tokens "
              f"(open loop: {results['open_loop']['tokens']:,}).")


if __name__ == "__main__":
    main()
