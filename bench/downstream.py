"""Downstream value of synthetic samples: does seed + N samples train a better toxicity detector? (issue 12 item 1)

For each seed (the narrow seed examples/toxicity/seed.jsonl, 100 "hoe" tweets, and the random demo seed
seed_demo.jsonl, 50 random toxic tweets) the same generator makes N samples per arm, and the validity benchmark's
detector (bench/fac_validity.py: logistic regression on MiniLM embeddings, the seed + the arm's samples as
positives, 1,000 real non-held-out "neither" tweets as negatives, one draw per detector seed) is scored by AUPRC
on the Davidson held-out rows (in-domain) and on the ToxiGen demonstrations (out-of-domain):

- seed only;
- fac: the first N samples a `fac run` accepts (every quality gate on, goal FAC 1.0, samples per feature raised
  until N are accepted or the features are exhausted);
- untargeted: "more examples like these" with 3 seed examples (bench/synthesis.py), the first N replies;
- untargeted + gates: the same stream, keeping the first N that pass the run's quality gates (meta text,
  regurgitation, membership, novelty against the seed and the ones kept);
- open loop: the paper's recipe (bench/synthesis.py), N finals;
- real: N real non-held-out toxic Davidson tweets not in the seed.

Equal N: every arm is cut to the smallest arm's count (reported). Also reported per arm: the mean MiniLM
cosine distance from each sample to its nearest real toxic tweet (2,000 non-held-out tweets, disjoint from the
real arm), and each arm's samples are written to OUT/<seed>/<arm>.jsonl. Targets (issue 12): fac above both
untargeted arms and above the open loop on both evaluations, fac not below seed only on either.
Heavy: N = 100 means over a thousand generator calls per seed. On 2 CPU cores the 2026-12-02 run served the
embedded GGUF with llama-cpp-python's server (`python -m llama_cpp.server --model SmolLM2-135M-Instruct.Q4_1.gguf
--model_alias smollm2-135m --port 8011`, its own venv) and took ~2 hours per seed, one seed per process.
RESULTS.md is written only when N >= 100 is asked.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/downstream.py [--n 100] [--seeds 5] [--seed-files narrow,random]
        [--generator-base-url URL --generator-model NAME] [--reuse]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"narrow": ROOT / "examples" / "toxicity" / "seed.jsonl",
         "random": ROOT / "examples" / "toxicity" / "seed_demo.jsonl"}
ARMS = ("seed only", "fac", "untargeted", "untargeted + gates", "open loop", "real")
SECTION = "## Downstream detector (issue 12 item 1; `bench/downstream.py`)"
MIN_REPORTED_N = 100
ARMS_FILE = "arms.json"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _texts(path: Path) -> list[str]:
    return [str(json.loads(line)["text"]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fac_arm(cfg: Any, shared: dict[str, Any], out: Path, n: int, n_missing: int) -> tuple[list[str], dict[str, Any]]:
    """The first n samples a fac run accepts (fewer when every feature is exhausted first)."""
    synthesis = sys.modules["synthesis"]
    per_feature = max(2, math.ceil(1.5 * n / max(n_missing, 1)))
    run_cfg = cfg.updated(goal_fac=1.0, min_per_feature=per_feature, max_attempts_per_feature=4 * per_feature + 4,
                          max_rounds=1000, budget_tokens=max(cfg.budget_tokens, 4000 * n))
    stats = synthesis.run_fac(shared, run_cfg, out)
    lines = (out / "samples.jsonl").read_text(encoding="utf-8").splitlines() if (out / "samples.jsonl").exists() else []
    texts = [str(json.loads(line)["text"]) for line in lines if line.strip()]
    return texts[:n], {k: v for k, v in stats.items() if k != "trajectory"}


def kept_fac_arm(run_dir: Path, n: int) -> tuple[list[str], dict[str, Any]]:
    """The samples a fac arm's run directory holds (a run stopped early, or resumed with other limits)."""
    status = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    texts = _texts(run_dir / "samples.jsonl")
    return texts[:n], {"fac": status["fac_now"], "fac_before": status["fac_before"], "kept": len(texts),
                       "tokens": status["tokens_used"], "rejections": status["rejections"],
                       "stop": status.get("interrupted") or f"{status['stop_reason']}: {status['stop_detail']}",
                       "run": str(run_dir)}


def gated(candidates: list[str], deps: Any, n: int) -> tuple[list[str], dict[str, int]]:
    """The first n candidates that pass the run's quality gates (novelty against the seed and those kept)."""
    from fac.agents.quality import make_gates
    from fac.tools.catalog.tasks import get_task
    from fac.tools.space.rendering import sample_text
    from fac.tools.text.embeddings import default_embedder

    cfg = deps.config
    gates = make_gates(cfg, deps.catalog, deps.seed, get_task(cfg.task), deps.space)
    embed = default_embedder().embed
    stored = list(embed([sample_text(s) for s in deps.seed]))
    kept: list[str] = []
    rejected: dict[str, int] = {}
    scores = deps.space.score(candidates) if candidates else []
    for text, score in zip(candidates, scores, strict=True):
        if len(kept) == n:
            break
        vector = embed([text])[0]
        distance = float(1.0 - max(float(vector @ s) for s in stored))
        reason = (gates.text_problem(text) or gates.membership_problem(text, score)
                  or gates.novelty_problem(distance, "stored"))
        if reason is None and distance < cfg.dedup_distance:
            reason = "near-duplicate"
        if reason is not None:
            kind = reason.split(":", 1)[0]
            rejected[kind] = rejected.get(kind, 0) + 1
            continue
        kept.append(text)
        stored.append(vector)
    return kept, rejected


def arms_for_seed(name: str, seed_file: Path, args: argparse.Namespace, v: ModuleType, pools: dict[str, Any],
                  out: Path) -> dict[str, Any]:
    """Every arm's samples (cut to equal N) for one seed, written to out/<arm>.jsonl."""
    from fac.graph.config import RunConfig
    from fac.graph.run_dir import RunDir
    from fac.graph.runner import load_catalog, make_deps, make_writer
    from fac.tools.space.features import FeatureSpace

    synthesis = sys.modules["synthesis"]
    cfg = RunConfig(seed=str(seed_file), task="toxicity", budget_tokens=args.budget_tokens, goal_fac=1.0,
                    generator="openai" if args.generator_base_url else "local",
                    generator_model=args.generator_model, base_url=args.generator_base_url, random_seed=args.run_seed)
    space = FeatureSpace.load(cfg.model, cfg.sae, mode=cfg.mode, threshold=cfg.threshold, max_tokens=cfg.max_tokens)
    shared = {"space": space, "catalog": load_catalog(cfg, space), "writer": make_writer(cfg, space)}
    scratch = RunDir(out / "baselines")
    if scratch.root.exists():
        shutil.rmtree(scratch.root)
    scratch.root.mkdir(parents=True)
    deps = make_deps(cfg, scratch, **shared)
    seed = _texts(seed_file)
    task = set(shared["catalog"].task_features())
    n_missing = len(task - synthesis.covered_by(space, list(seed), task, cfg.threshold))
    n, samples, stats = args.n, {}, {}
    t0 = time.perf_counter()
    if args.keep_fac and (out / "fac" / "samples.jsonl").exists():
        samples["fac"], stats["fac"] = kept_fac_arm(out / "fac", n)
    else:
        samples["fac"], stats["fac"] = fac_arm(cfg, shared, out / "fac", n, n_missing)
    stats["fac"]["seconds"] = round(time.perf_counter() - t0)
    per_call = 300 + cfg.max_new_tokens
    t0 = time.perf_counter()
    stream = synthesis.run_untargeted(deps, budget=args.gate_overdraw * n * per_call)
    samples["untargeted"] = stream["samples"][:n]
    samples["untargeted + gates"], rejected = gated(stream["samples"], deps, n)
    stats["untargeted"] = {"generated": len(stream["samples"]), "tokens": stream["tokens"],
                           "seconds": round(time.perf_counter() - t0)}
    stats["untargeted + gates"] = {"rejected": rejected, "kept": len(samples["untargeted + gates"])}
    t0 = time.perf_counter()
    per_feature = 4 * (400 + cfg.max_new_tokens)  # the open loop's own estimate: 2 drafts + 2 finals per feature
    loop = synthesis.run_open_loop(deps, budget=(math.ceil(n / 2) + 1) * per_feature)
    samples["open loop"] = loop["samples"][:n]
    stats["open loop"] = {"finals": loop["kept"], "tokens": loop["tokens"], "seconds": round(time.perf_counter() - t0)}
    seen = {t.casefold() for t in seed}
    real = [t.text for t in pools["toxic_arm"] if t.text.casefold() not in seen]
    samples["real"] = random.Random(args.run_seed).sample(real, min(n, len(real)))
    equal_n = min(len(s) for s in samples.values())
    samples = {arm: s[:equal_n] for arm, s in samples.items()}
    for arm, texts in samples.items():
        arm_file(out, arm).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    meta = {"stats": stats, "equal_n": equal_n, "asked_n": n}
    (out / ARMS_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return {"seed": seed, "samples": samples, **meta}


def arm_file(out: Path, arm: str) -> Path:
    return out / f"{arm.replace(' + ', '_').replace(' ', '_')}.jsonl"


def reused_arms(seed_file: Path, out: Path) -> dict[str, Any]:
    """The arms an earlier run of this bench wrote to out (samples and statistics), to evaluate them again."""
    meta = json.loads((out / ARMS_FILE).read_text(encoding="utf-8"))
    samples = {arm: _texts(arm_file(out, arm)) for arm in ARMS if arm != "seed only"}
    return {"seed": _texts(seed_file), "samples": samples, **meta}


def evaluate(seed_result: dict[str, Any], args: argparse.Namespace, v: ModuleType, pools: dict[str, Any],
             embedder: Any) -> dict[str, Any]:
    """AUPRC per arm and detector seed, and each arm's distance to real toxic tweets."""
    seed_vectors = embedder.embed(seed_result["seed"])
    reference = embedder.embed([t.text for t in pools["toxic_reference"]])
    negatives = pools["negative_vectors"]
    rows: dict[str, Any] = {}
    for arm in ARMS:
        texts = [] if arm == "seed only" else seed_result["samples"][arm]
        vectors = embedder.embed(texts) if texts else np.zeros((0, seed_vectors.shape[1]), dtype=np.float32)
        positives = np.vstack([seed_vectors, vectors])
        runs = []
        for s in range(args.seeds):
            chosen = np.random.default_rng(s).choice(len(negatives), args.negatives, replace=False)
            runs.append(v.train_and_score(positives, negatives[chosen], pools["evals"], args.c))
        row: dict[str, Any] = {"n": len(texts)}
        for ev in v.EVALS:
            values = [r[ev] for r in runs]
            row[ev] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                       "values": values}
        if len(texts):
            row["distance_to_real"] = float(np.mean(1.0 - (vectors @ reference.T).max(axis=1)))
        rows[arm] = row
    return rows


def targets(rows: dict[str, Any], evals: tuple[str, ...]) -> dict[str, bool]:
    fac = rows["fac"]
    out = {}
    for ev in evals:
        out[f"fac > untargeted, untargeted + gates, open loop ({ev})"] = all(
            fac[ev]["mean"] > rows[arm][ev]["mean"] for arm in ("untargeted", "untargeted + gates", "open loop"))
        out[f"fac >= seed only ({ev})"] = fac[ev]["mean"] >= rows["seed only"][ev]["mean"]
    return out


def format_tables(result: dict[str, Any]) -> str:
    lines = []
    for name, seed in result["seeds"].items():
        lines += [f"Seed `{name}` ({len(seed['seed'])} tweets), equal N = {seed['equal_n']} (asked {seed['asked_n']}):",
                  "", "| arm | N | AUPRC in-domain | AUPRC ToxiGen | distance to real toxic tweets |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for arm, row in seed["rows"].items():
            distance = f"{row['distance_to_real']:.3f}" if "distance_to_real" in row else "—"
            lines.append(f"| {arm} | {row['n']} | {row['in_domain']['mean']:.4f} ± {row['in_domain']['sd']:.4f} | "
                         f"{row['out_of_domain']['mean']:.4f} ± {row['out_of_domain']['sd']:.4f} | {distance} |")
        lines += ["", "Targets: " + "; ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in seed["targets"].items()),
                  "", f"Arm statistics: `{json.dumps(seed['stats'])}`", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fac.tools.cache_dir import default_cache_dir
    from fac.tools.text.embeddings import default_embedder

    started = time.perf_counter()
    v = _module("fac_validity")
    _module("synthesis")
    data = Path(args.data)
    tweets, held_out = v.load_davidson(data)
    tox_texts, tox_labels = v.load_toxigen(data)
    embedder = v.CachedEmbedder(default_embedder(), default_cache_dir() / "bench" / "validity_minilm.npz")
    toxic = [t for t in tweets if t.label != v.NEITHER]
    random.Random(0).shuffle(toxic)
    pools = {"toxic_reference": toxic[:2000], "toxic_arm": toxic[2000:],
             "negative_vectors": embedder.embed([t.text for t in tweets if t.label == v.NEITHER]),
             "evals": {"in_domain": (embedder.embed([t.text for t in held_out]),
                                     np.array([int(t.label != v.NEITHER) for t in held_out])),
                       "out_of_domain": (embedder.embed(tox_texts), np.array(tox_labels))}}
    out = Path(args.out)
    result: dict[str, Any] = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                              "command": "bench/downstream.py " + " ".join(sys.argv[1:]), "seeds": {},
                              "config": {k: v_ for k, v_ in vars(args).items() if k != "data"}}
    for name in args.seed_files.split(","):
        seed_out = out / name
        seed_out.mkdir(parents=True, exist_ok=True)
        if args.reuse and (seed_out / ARMS_FILE).exists():
            print(f"seed {name}: evaluating the arms in {seed_out} …", file=sys.stderr)
            seed_result = reused_arms(SEEDS[name], seed_out)
        else:
            print(f"seed {name}: generating the arms …", file=sys.stderr)
            seed_result = arms_for_seed(name, SEEDS[name], args, v, pools, seed_out)
        seed_result["rows"] = evaluate(seed_result, args, v, pools, embedder)
        seed_result["targets"] = targets(seed_result["rows"], v.EVALS)
        seed_result.pop("samples")
        result["seeds"][name] = seed_result
        embedder.save()
    result["seconds"] = round(time.perf_counter() - started)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="samples per arm (equal N; the issue asks >= 100)")
    parser.add_argument("--seeds", type=int, default=5, help="detector seeds (negative draws)")
    parser.add_argument("--seed-files", default="narrow,random", help="which seeds: narrow, random")
    parser.add_argument("--negatives", type=int, default=1000)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--budget-tokens", type=int, default=40_000, help="floor of every arm's generator budget")
    parser.add_argument("--gate-overdraw", type=float, default=5.0, help="untargeted replies generated per kept "
                        "sample, so the gated arm can reach N (a smoke run kept 2 of 8)")
    parser.add_argument("--generator-base-url", default=None, help="an OpenAI-compatible endpoint (default: local)")
    parser.add_argument("--generator-model", default="default")
    parser.add_argument("--run-seed", type=int, default=0)
    parser.add_argument("--keep-fac", action="store_true", help="take the fac arm from the run in OUT/<seed>/fac "
                        "(stopped or resumed by hand, e.g. `fac run --resume` with more samples per feature) instead "
                        "of running it again")
    parser.add_argument("--reuse", action="store_true", help="evaluate the arms an earlier run wrote to OUT/<seed>/ "
                        "(samples and arms.json) instead of generating them again")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "runs" / "downstream"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tables = format_tables(result)
    print(tables)
    if args.n < MIN_REPORTED_N:
        print(f"N = {args.n} < {MIN_REPORTED_N}: a smoke run; bench/RESULTS.md is not written", file=sys.stderr)
        return
    write_section(SECTION, f"{SECTION}\n\nReal run, {result['date_utc']} UTC, {result['seconds']} s: "
                  f"`{result['command']}`.\n\n{tables}")


if __name__ == "__main__":
    main()
