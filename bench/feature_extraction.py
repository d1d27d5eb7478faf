"""Benchmark: the feature space's paths on the real default model: fp32 early exit, the default
(early exit; bf16 weights on a CPU with bf16 units, the SAE in fp32) and the naive fp32 full forward.

Speed: FeatureSpace.score on the same texts in one process, score cache off. The texts go in chunks (the
batches one score() call would form) and the paths rotate which goes first per chunk, so a background load
that comes and goes falls on all alike; the naive path runs on a prefix of the texts, rotating with fp32
early exit on it. Blocks' GFLOP/s are set against this machine's measured matmul peak at the blocks'
own shapes (torch linear, the padded batch's tokens). A variants table measures the other choices (bf16
autocast over fp32 weights, int8 dynamic quantisation, eager attention, one thread, token budgets,
torch.compile with --compile)
on a subset, rotating likewise.
Agreement with fp32: active-feature Jaccard per text; the demo's FAC (examples/toxicity/seed.jsonl against the
shipped toxicity catalog); the contrast catalog's relevance decisions rebuilt in both precisions on a seeded
subset of the shipped anchor and background. fp32 early exit must equal the naive path exactly (ids, spans;
scores within rtol 1e-4).
Memory: each path runs in a fresh subprocess on the longest texts (the worst-case batches); we reset
the kernel's peak-RSS mark (/proc/self/clear_refs) after loading, so VmHWM is the peak *while scoring*.

    .venv/bin/python bench/feature_extraction.py            # shipped SAE, 300 texts, writes bench/RESULTS.md
    .venv/bin/python bench/feature_extraction.py --sae DIR  # another SAE (sae-lens disk format)
    .venv/bin/python bench/feature_extraction.py --sae random  # random TopK SAE of the shipped shape
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from results_file import write_section

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "sae_corpus" / "corpus.jsonl.gz"
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Feature extraction"
LAYER = 15
SEED = REPO / "examples" / "toxicity" / "seed.jsonl"
TASK = REPO / "fac" / "assets" / "tasks" / "toxicity"
PATHS = ("fp32 early exit", "default", "naive")
RANDOM_SAE_SHAPE = {"d_in": 576, "d_sae": 4096, "k": 64, "hook_name": f"blocks.{LAYER - 1}.hook_resid_post"}


def pick_texts(n: int, seed: int) -> list[str]:
    """A seeded uniform sample of the SAE corpus: its own mix of tweets, dialogues and instructions."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    chosen = random.Random(seed).sample(rows, n)
    print("texts per source:", dict(Counter(r["source"] for r in chosen).most_common()))
    return [r["text"] for r in chosen]


def random_sae_dir(root: Path) -> str:
    """A random TopK SAE with the shipped SAE's shape, saved like the shipped one (fp16)."""
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from fac.tools.space.sae_training import save_sae

    torch.manual_seed(0)
    shape = RANDOM_SAE_SHAPE
    cfg = TopKSAEConfig(d_in=shape["d_in"], d_sae=shape["d_sae"], k=shape["k"], dtype="float32", device="cpu",
                        metadata=SAEMetadata(hook_name=shape["hook_name"], model_name="random"))
    sae = TopKSAE(cfg)
    out = root / "random-topk4096"
    save_sae(sae, out)
    return str(out)


def load_space(sae: str, max_tokens: int, token_budget: int, dtype: str = "auto") -> Any:
    from fac.tools.space.features import FeatureSpace

    return FeatureSpace.load("default", sae, max_tokens=max_tokens, token_budget=token_budget, device="cpu",
                             dtype=dtype, use_cache=False)


def with_autocast(space: Any, dtype: Any) -> Any:
    """The same space and weights with autocast set to `dtype` (None: off)."""
    return replace(space, reader=replace(space.reader, autocast=dtype))


class PartTimer:
    """Wall seconds inside the first L blocks, the later blocks, the LM head and the SAE encoder, per path.

    Forward hooks on the blocks and the LM head, a wrapper around `sae.encode`; about 60 clock reads per batch.
    """

    def __init__(self, *spaces: Any) -> None:
        from fac.tools.space.residual import decoder_blocks

        self.path = ""
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.handles: list[Any] = []
        self.saes = [space.sae for space in spaces]
        for space in spaces:
            blocks = decoder_blocks(space.reader.model)
            self.parts = (f"blocks 1-{space.layer}", f"blocks {space.layer + 1}-{len(blocks)}", "LM head",
                          "SAE encoder")
            for i, block in enumerate(blocks):
                self._time(block, self.parts[0] if i < space.layer else self.parts[1])
            self._time(space.reader.model.get_output_embeddings(), self.parts[2])
            self._wrap(space.sae)

    def _wrap(self, sae: Any) -> None:
        encode = sae.encode

        def timed_encode(x: Any) -> Any:
            began = time.perf_counter()
            out = encode(x)
            self.seconds[(self.path, self.parts[3])] += time.perf_counter() - began
            return out

        sae.encode = timed_encode

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        for sae in self.saes:
            del sae.encode

    def _time(self, module: Any, part: str) -> None:
        began: list[float] = [0.0]

        def start(*_args: Any) -> None:
            began[0] = time.perf_counter()

        def stop(*_args: Any) -> None:
            self.seconds[(self.path, part)] += time.perf_counter() - began[0]

        self.handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop)]


def rotate(
    runners: dict[str, Any], chunks: list[list[int]], n_texts: int, timer: PartTimer | None = None
) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """Seconds per runner over all chunks, rotating which runner goes first per chunk; and each one's results.

    A runner maps a list of text indices to their SampleScores."""
    seconds = dict.fromkeys(runners, 0.0)
    results: dict[str, list[Any]] = {name: [None] * n_texts for name in runners}
    names = list(runners)
    for turn, chunk in enumerate(chunks):
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            if timer is not None:
                timer.path = name
            began = time.perf_counter()
            scored = runners[name](chunk)
            seconds[name] += time.perf_counter() - began
            for i, scores in zip(chunk, scored, strict=True):
                results[name][i] = scores
        if (turn + 1) % 4 == 0 or turn + 1 == len(chunks):
            done = ", ".join(f"{name} {sec:.1f} s" for name, sec in seconds.items())
            print(f"chunk {turn + 1}/{len(chunks)}: {done}", flush=True)
    return seconds, results


def compare(early: list[Any], naive: list[Any]) -> list[str]:
    """Differences between two exact paths' results, one line per sample that differs."""
    problems = []
    for i, (a, b) in enumerate(zip(early, naive, strict=True)):
        if not np.array_equal(a.feature_ids, b.feature_ids):
            only = set(a.feature_ids.tolist()) ^ set(b.feature_ids.tolist())
            problems.append(f"text {i}: feature ids differ ({len(only)} features in one path only)")
        elif not np.allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5):
            problems.append(f"text {i}: scores differ by up to {float(np.abs(a.scores - b.scores).max()):.2e}")
        elif not (np.array_equal(a.span_starts, b.span_starts) and np.array_equal(a.span_ends, b.span_ends)):
            problems.append(f"text {i}: spans differ")
    return problems


def jaccards(a: list[Any], b: list[Any], threshold: float = 0.0) -> np.ndarray:
    """Per text, |A ∩ B| / |A ∪ B| of the active feature sets (1 when both are empty)."""
    out = []
    for x, y in zip(a, b, strict=True):
        fx, fy = set(x.active(threshold).tolist()), set(y.active(threshold).tolist())
        out.append(len(fx & fy) / len(fx | fy) if fx | fy else 1.0)
    return np.array(out)


def score_error(a: list[Any], b: list[Any]) -> float:
    """Median relative score difference over the features both active."""
    errors = []
    for x, y in zip(a, b, strict=True):
        shared = np.intersect1d(x.feature_ids, y.feature_ids)
        sx = x.scores[np.searchsorted(x.feature_ids, shared)]
        sy = y.scores[np.searchsorted(y.feature_ids, shared)]
        errors.append(np.abs(sx - sy) / np.maximum(np.abs(sy), 1e-6))
    return float(np.median(np.concatenate(errors)))


def flops_per_token(config: Any, d_sae: int, layer: int, mean_context: float, scored_share: float) -> dict[str, float]:
    """Forward FLOPs per input token (a multiply-add = 2) of each part of the two paths."""
    d, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attention_proj = d * heads * head_dim + 2 * d * kv * head_dim + heads * head_dim * d  # q, k, v, o
    linear = 2 * (attention_proj + 3 * d * config.intermediate_size)  # + gate, up, down
    attention = 2 * 2 * heads * head_dim * mean_context  # QK^T and AV over the causal context
    block = linear + attention
    lm_head = 2 * d * config.vocab_size
    sae = 2 * d * d_sae
    depth = config.num_hidden_layers
    return {
        "block": block,
        "block_linear": linear,
        "attention_share_of_block": attention / block,
        "lm_head": lm_head,
        "sae": sae,
        "naive": depth * block + lm_head + sae,  # the SAE on every position
        "early": layer * block + scored_share * sae,  # the SAE on the scored tokens only
    }


def linear_shapes(config: Any) -> list[tuple[int, int]]:
    """(in, out) of a decoder block's linear layers: q, k, v, o, gate, up, down."""
    d, heads, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    inter = config.intermediate_size
    return [(d, heads * head_dim), (d, kv * head_dim), (d, kv * head_dim), (heads * head_dim, d),
            (d, inter), (d, inter), (inter, d)]


def matmul_peak(config: Any, tokens: int, dtype: Any, seconds: float = 3.0) -> float:
    """GFLOP/s of torch linear at the blocks' shapes on `tokens` rows, in `dtype`: this machine's peak there."""
    import torch

    torch.manual_seed(0)
    shapes = linear_shapes(config)
    inputs = {k: torch.randn(tokens, k, dtype=dtype) for k in {k for k, _ in shapes}}
    weights = [torch.randn(n, k, dtype=dtype) for k, n in shapes]
    flops_per_round = sum(2 * tokens * k * n for k, n in shapes)
    with torch.no_grad():
        for w in weights:  # warm-up: oneDNN picks and caches its kernels
            torch.nn.functional.linear(inputs[w.shape[1]], w)
        rounds, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            for w in weights:
                torch.nn.functional.linear(inputs[w.shape[1]], w)
            rounds += 1
        elapsed = time.perf_counter() - began
    return rounds * flops_per_round / elapsed / 1e9


def peak_memory(path: str, sae_dir: str, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Run one path in a fresh interpreter; returns its memory record."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(texts, handle)
    cmd = [sys.executable, __file__, "--child", path, "--sae", sae_dir, "--texts-json", handle.name,
           "--max-tokens", str(args.max_tokens), "--token-budget", str(args.token_budget)]
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        raise SystemExit(f"memory run for {path} failed:\n{done.stderr[-2000:]}")
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return record


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """Load, warm up, reset the peak-RSS mark, score, and print peak and baseline RSS as JSON."""
    path = PATHS[int(args.child)]
    space = load_space(args.sae, args.max_tokens, args.token_budget, "float32" if path != "default" else "auto")
    texts = json.loads(Path(args.texts_json).read_text())
    naive = path == "naive"
    space.score(texts[-2:], naive=naive)  # warm-up: lazily allocated kernels and buffers
    baseline_kb = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS
    began = time.perf_counter()
    space.score(texts, naive=naive)
    seconds = time.perf_counter() - began
    peak_kb = _status_kb("VmHWM")
    batches = list(space.reader.batches(space.tokenize(texts)))
    process_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # loading included
    print(json.dumps({
        "path": path, "baseline_mb": baseline_kb / 1024, "peak_mb": peak_kb / 1024,
        "added_mb": (peak_kb - baseline_kb) / 1024, "process_peak_mb": process_peak_kb / 1024,
        "seconds": seconds, "n_texts": len(texts), "n_batches": len(batches),
    }))


def longest_batches(space: Any, texts: list[str], n_batches: int) -> list[str]:
    """The texts of the first `n_batches` batches (the longest texts, each batch filling the budget)."""
    tokenized = space.tokenize(texts)
    batches = list(space.reader.batches(tokenized))[:n_batches]
    return [texts[i] for batch in batches for i in batch]


def part_table(parts: PartTimer, timing: dict[str, float], flops: dict[str, float], layer: int,
               padded: dict[str, int], peak: float) -> str:
    """Markdown table of seconds and GFLOP/s per part and path (the model parts run on the padded tokens)."""
    first, later, head, _sae = parts.parts
    depth_rest = round((flops["naive"] - flops["lm_head"] - flops["sae"]) / flops["block"]) - layer
    part_flops = {first: layer * flops["block"], later: depth_rest * flops["block"], head: flops["lm_head"]}
    lines = ["  | part | " + " | ".join(f"{p} (s)" for p in PATHS) + " | " +
             " | ".join(f"{p} GFLOP/s" for p in PATHS) + " |", "  |---|" + "---:|" * (2 * len(PATHS))]
    for part in parts.parts:
        secs = [parts.seconds[(p, part)] for p in PATHS]
        rates = [f"{part_flops[part] * padded[p] / sec / 1e9:.1f}" if part in part_flops and sec > 0 else ""
                 for p, sec in zip(PATHS, secs, strict=True)]
        lines.append(f"  | {part} | " + " | ".join(f"{sec:.1f}" for sec in secs) + " | " + " | ".join(rates) + " |")
    rest = [timing[p] - sum(parts.seconds[(p, q)] for q in parts.parts) for p in PATHS]
    lines.append("  | rest: embedding, masks, tokenizing, max and spans | " + " | ".join(f"{r:.1f}" for r in rest)
                 + " |" + " |" * len(PATHS))
    lines.append("  | total | " + " | ".join(f"{timing[p]:.1f}" for p in PATHS) + " |" + " |" * len(PATHS))
    blocks_rate = part_flops[first] * padded["default"] / parts.seconds[("default", first)] / 1e9
    lines.append(f"\n  Default blocks: {blocks_rate:.1f} GFLOP/s = **{blocks_rate / peak:.0%}** of the measured bf16 "
                 f"peak at their shapes ({peak:.1f} GFLOP/s; target >= 40 %).")
    return "\n".join(lines)


def demo_fac(spaces: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(covered, task features) of the demo seed against the shipped toxicity catalog, per space."""
    from fac.tools.catalog.build import load_catalog_file
    from fac.tools.catalog.tasks import CATALOG_FILE

    catalog = load_catalog_file(TASK / CATALOG_FILE)
    task = {int(f) for f in catalog.task_features()}
    seed = [json.loads(line)["text"] for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = {}
    for name, space in spaces.items():
        active = set().union(*(set(s.active(0.0).tolist()) for s in space.score(seed)))
        out[name] = (len(task & active), len(task))
    return out


def catalog_decisions(spaces: dict[str, Any], n_each: int, seed: int) -> tuple[dict[str, np.ndarray], int]:
    """Contrast relevance (a bool per feature) rebuilt per space on `n_each` seeded anchor and background texts."""
    from fac.tools.catalog.contrast import contrast

    def sample(name: str) -> list[str]:
        rows = [json.loads(line)["text"] for line in (TASK / name).read_text(encoding="utf-8").splitlines() if line]
        return random.Random(seed).sample(rows, min(n_each, len(rows)))

    anchor, background = sample("anchor.jsonl"), sample("background.jsonl")
    out = {}
    for name, space in spaces.items():
        counts = []
        for texts in (anchor, background):
            count = np.zeros(space.d_sae, dtype=np.int64)
            for scores in space.score(texts):
                count[scores.active(0.0)] += 1
            counts.append(count)
        relevant = np.zeros(space.d_sae, dtype=bool)
        for r in contrast(counts[0], len(anchor), counts[1], len(background)):
            relevant[r.feature] = r.relevant
        out[name] = relevant
        print(f"catalog decisions, {name}: {int(relevant.sum())} relevant", flush=True)
    return out, len(anchor)


def variants(space: Any, fast: Any, texts: list[str], args: argparse.Namespace
             ) -> list[tuple[str, float, float, float]]:
    """(variant, tokens/s, speed-up over fp32, mean Jaccard vs fp32) of each choice, rotating on `texts`."""
    import torch

    exact, default = space, fast
    model = space.reader.model
    fresh = type(model)(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    int8_model = torch.ao.quantization.quantize_dynamic(fresh, {torch.nn.Linear}, dtype=torch.qint8)
    eager_model = type(model)(model.config).eval()
    eager_model.load_state_dict(model.state_dict())
    eager_model = eager_model.to(torch.bfloat16)
    eager_model.config._attn_implementation = "eager"
    threads = torch.get_num_threads()

    def on(reader_model: Any, **reader: Any) -> Any:
        return replace(space, reader=replace(space.reader, model=reader_model, **reader))

    spaces: dict[str, Any] = {
        "fp32 (sdpa, budget 8192)": exact,
        "bf16 weights (default)": default,
        "bf16 autocast over fp32 weights": with_autocast(exact, torch.bfloat16),
        "int8 dynamic quantisation of the linears": on(int8_model, autocast=None),
        "bf16 weights, eager attention": replace(default, reader=replace(default.reader, model=eager_model)),
        "fp32, 1 thread": exact,
        "bf16 weights, 1 thread": default,
        **{f"bf16 weights, token budget {b}": replace(default, reader=replace(default.reader, token_budget=b))
           for b in (2048, 4096, 16384)},
    }
    if args.compile:
        compiled = type(model)(model.config).eval()
        compiled.load_state_dict(model.state_dict())
        compiled = compiled.to(torch.bfloat16)
        compiled.model.forward = torch.compile(compiled.model.forward, dynamic=True)
        spaces["bf16 weights, torch.compile"] = replace(default, reader=replace(default.reader, model=compiled))

    def runner(name: str, target: Any) -> Any:
        def run(chunk: list[int]) -> list[Any]:
            torch.set_num_threads(1 if "1 thread" in name else threads)
            try:
                return list(target.score([texts[i] for i in chunk]))
            finally:
                torch.set_num_threads(threads)
        return run

    for name, target in spaces.items():  # warm-up (and compilation) outside the timing
        began = time.perf_counter()
        runner(name, target)(list(range(min(8, len(texts)))))
        print(f"warm-up {name}: {time.perf_counter() - began:.1f} s", flush=True)
    chunk = max(1, len(texts) // 4)
    chunks = [list(range(start, min(start + chunk, len(texts)))) for start in range(0, len(texts), chunk)]
    seconds, results = rotate({name: runner(name, target) for name, target in spaces.items()}, chunks, len(texts))
    n_tokens = sum(len(t.input_ids) for t in space.tokenize(texts))
    base = next(iter(spaces))
    return [(name, n_tokens / seconds[name], seconds[base] / seconds[name],
             float(jaccards(results[name], results[base]).mean())) for name in spaces]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", default="default", help="'default' (shipped), an SAE directory, or 'random'.")
    parser.add_argument("--n-texts", type=int, default=300)
    parser.add_argument("--naive-texts", type=int, default=60, help="Texts the naive path runs on (a prefix).")
    parser.add_argument("--n-variant-texts", type=int, default=60, help="Texts of the variants table (0: skip).")
    parser.add_argument("--catalog-texts", type=int, default=600,
                        help="Anchor and background texts each for the catalog decisions (0: skip).")
    parser.add_argument("--compile", action="store_true", help="Add torch.compile to the variants (slow to compile).")
    parser.add_argument("--memory-batches", type=int, default=2, help="Longest batches scored by the memory runs.")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave bench/RESULTS.md alone.")
    parser.add_argument("--child", choices=["0", "1", "2"], help=argparse.SUPPRESS)
    parser.add_argument("--texts-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        body = run(args, Path(tmp))
    print()
    print(body)
    if not args.no_write:
        write_section(SECTION, body, RESULTS)
        print(f"wrote the '{SECTION[3:]}' section of {RESULTS.relative_to(REPO)}")


def run(args: argparse.Namespace, tmp: Path) -> str:
    """Measure the paths; returns the markdown section."""
    import torch

    from fac.tools.space.models import pick_precision
    from fac.tools.space.saes import shipped_sae_dir

    started, load_before = time.time(), os.getloadavg()
    if args.sae == "default" and not (shipped_sae_dir() / "cfg.json").is_file():
        print(f"the shipped SAE is not at {shipped_sae_dir()} yet: using a random TopK SAE of the same shape")
        args.sae = "random"
    sae_note = ""
    if args.sae == "random":
        sae_dir = random_sae_dir(tmp)
        sae_note = (" **Random TopK weights of the shipped SAE's shape** (d_in 576, d_sae 4096, k 64, block 15): "
                    "speed and memory do not depend on the weights, and the paths must agree for any SAE.")
    else:
        sae_dir = str(shipped_sae_dir()) if args.sae == "default" else args.sae

    default_precision = pick_precision("auto", "cpu")
    texts = pick_texts(args.n_texts, args.seed)
    space = load_space(sae_dir, args.max_tokens, args.token_budget, "float32")
    exact, default = space, load_space(sae_dir, args.max_tokens, args.token_budget, "auto")
    tokenized = space.tokenize(texts)
    lengths = np.array([len(t.input_ids) for t in tokenized])
    chunks = list(space.reader.batches(tokenized))
    n_tokens, n_scored = int(lengths.sum()), sum(len(t.content_positions) for t in tokenized)
    padded = sum(len(b) * max(len(tokenized[i].input_ids) for i in b) for b in chunks)
    print(f"{len(texts)} texts, {n_tokens} tokens (mean {lengths.mean():.1f}, max {lengths.max()}), {n_scored} scored, "
          f"{padded} padded; model {space.model_id}, SAE {space.sae_id}; default {default.precision}", flush=True)
    for target in (exact, default):  # warm-up
        target.score(texts[:4])
    exact.score(texts[:4], naive=True)

    config = space.reader.model.config
    batch_tokens = round(padded / len(chunks))
    peaks = {name: matmul_peak(config, batch_tokens, dtype) for name, dtype in
             (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    print(f"matmul peak at the blocks' shapes, {batch_tokens} rows: bf16 {peaks['bf16']:.1f}, "
          f"fp32 {peaks['fp32']:.1f} GFLOP/s", flush=True)

    parts = PartTimer(exact, default)
    runners = {
        "fp32 early exit": lambda chunk: exact.score([texts[i] for i in chunk]),
        "default": lambda chunk: default.score([texts[i] for i in chunk]),
    }
    timing, results = rotate(runners, chunks, len(texts), parts)
    n_naive = min(args.naive_texts, len(texts))  # the naive path is slow: it runs on a prefix, beside fp32 again
    naive_chunks = list(space.reader.batches(tokenized[:n_naive]))
    check = {
        "naive": lambda chunk: exact.score([texts[i] for i in chunk], naive=True),
        "fp32 early exit, naive's texts": lambda chunk: exact.score([texts[i] for i in chunk]),
    }
    naive_timing, naive_results = rotate(check, naive_chunks, n_naive, parts)
    timing["naive"] = naive_timing["naive"]
    problems = compare(naive_results["fp32 early exit, naive's texts"], naive_results["naive"])
    if problems:
        raise SystemExit("fp32 early exit and naive results differ:\n" + "\n".join(problems[:20]))
    naive_tokens = int(lengths[:n_naive].sum())
    naive_gain = naive_timing["naive"] / naive_timing["fp32 early exit, naive's texts"]
    agree = jaccards(results["default"], results["fp32 early exit"])
    rel_error = score_error(results["default"], results["fp32 early exit"])
    n_active = float(np.mean([len(r.feature_ids) for r in results["fp32 early exit"]]))

    mean_context = float((lengths * (lengths + 1) / 2).sum() / n_tokens)  # token-weighted causal context
    flops = flops_per_token(config, space.d_sae, space.layer, mean_context, n_scored / n_tokens)
    speedup = timing["fp32 early exit"] / timing["default"]
    naive_padded = sum(len(b) * max(len(tokenized[i].input_ids) for i in b) for b in naive_chunks)
    padded_of = {"fp32 early exit": padded, "default": padded, "naive": naive_padded}
    breakdown = part_table(parts, timing, flops, space.layer, padded_of, peaks["bf16"])
    parts.remove()

    both = {"fp32": exact, "default": default}
    fac = demo_fac(both)
    print(f"demo FAC: {fac}", flush=True)
    decisions, n_each = catalog_decisions(both, args.catalog_texts, args.seed) if args.catalog_texts else ({}, 0)
    table = variants(exact, default, texts[: args.n_variant_texts], args) if args.n_variant_texts else []

    memory_texts = longest_batches(space, texts, args.memory_batches)
    model_id, sae_id, layer = space.model_id, space.sae_id, space.layer
    memory = {path: peak_memory(str(at), sae_dir, memory_texts, args) for at, path in enumerate(PATHS)}
    minutes, load_after = (time.time() - started) / 60, os.getloadavg()

    names = {"fp32 early exit": f"fp32 early exit (blocks 1-{layer}, SAE on scored tokens)",
             "default": f"**default**: early exit, {default_precision.name} weights, SAE in float32",
             "naive": "naive fp32 (all blocks + LM head, SAE on every position)"}
    counts = {"fp32 early exit": (len(texts), n_tokens), "default": (len(texts), n_tokens),
              "naive": (n_naive, naive_tokens)}
    rows = [f"| {names[p]} | {counts[p][0]} | {counts[p][0] / timing[p]:.2f} | {counts[p][1] / timing[p]:.0f} | "
            f"{timing[p]:.1f} | {memory[p]['added_mb']:.0f} | {memory[p]['peak_mb']:.0f} |" for p in PATHS]
    verdict = "meets" if speedup >= 2.5 else "misses"
    mflops = {name: value / 1e6 for name, value in flops.items()}
    covered = {name: f"{c / t:.3f} = {c}/{t}" for name, (c, t) in fac.items()}
    fac_line = (f"- Demo FAC (`examples/toxicity/seed.jsonl`, shipped toxicity catalog): fp32 {covered['fp32']}, "
                f"default {covered['default']} ({'equal' if fac['fp32'] == fac['default'] else 'DIFFERENT'}).")
    catalog_line = ""
    if decisions:
        same = decisions["fp32"] == decisions["default"]
        either = decisions["fp32"] | decisions["default"]
        catalog_line = (
            f"- Contrast catalog decisions rebuilt in both precisions on {n_each} anchor + {n_each} background texts "
            f"(seeded subset of the shipped 1,500 + 1,500): **{same.mean():.2%}** of the {len(same):,} features "
            f"decided alike (target >= 99 %); relevant: fp32 {int(decisions['fp32'].sum())}, default "
            f"{int(decisions['default'].sum())}, both {int((decisions['fp32'] & decisions['default']).sum())} "
            f"({(decisions['fp32'] & decisions['default']).sum() / max(int(either.sum()), 1):.1%} of those relevant "
            "in either).")
    variant_rows = "\n".join(f"| {name} | {rate:.0f} | {ratio:.2f}x | {jac:.4f} |" for name, rate, ratio, jac in table)
    variant_block = f"""
Other choices, measured on the first {args.n_variant_texts} of the texts in the same process (rotating per chunk;
each variant warmed up first), fp32 weights unless named:

| variant | tokens/s | vs fp32 | Jaccard vs fp32 |
|---|---:|---:|---:|
{variant_rows}
""" if table else ""
    return f"""{SECTION}

`bench/feature_extraction.py`, {time.strftime("%Y-%m-%d")}, {minutes:.1f} min. Model `{model_id}` read at layer
{layer}; SAE `{sae_id}`.{sae_note}
{len(texts)} texts sampled (seed {args.seed}) from `data/sae_corpus/corpus.jsonl.gz`: {n_tokens:,} input tokens
(mean {lengths.mean():.1f}, max {lengths.max()}, chat template included), {n_scored:,} scored, {padded:,} with padding
(token budget {args.token_budget}, at most {args.max_tokens} tokens per text). The texts go in {len(chunks)} chunks
(the batches of one score() call), the paths rotating which runs first; score cache off.
CPU: {os.cpu_count()} cores with AMX and AVX512-BF16, torch {torch.__version__}, {torch.get_num_threads()} threads.
Load average {load_before[0]:.1f} before and {load_after[0]:.1f} after: when other jobs share the CPU, absolute
rates drop; the rotation keeps ratios fair.

| path | texts | texts/s | tokens/s | seconds | RSS added while scoring (MB) | peak RSS (MB) |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

- **Default over fp32 early exit: {speedup:.2f}x** in tokens/s (target >= 2.5x: {verdict}); over naive fp32
  {(n_tokens / timing["default"]) / (naive_tokens / timing["naive"]):.2f}x.
  The naive path ran on the first {n_naive} texts ({len(naive_chunks)} batches), rotating with fp32 early exit on
  the same texts: fp32 early exit was {naive_gain:.2f}x faster, with equal results (feature ids and spans equal,
  scores within rtol 1e-4; {n_active:.1f} active features per text on average over all {len(texts)}).
- Agreement of the default with fp32 on the {len(texts)} texts: active-feature Jaccard mean **{agree.mean():.4f}**,
  min {agree.min():.4f} (target mean >= 0.98); median relative score difference on shared features
  {rel_error:.2%}.
{fac_line}
{catalog_line}
- Where the time goes (forward hooks on the blocks and the LM head, a timer around the SAE encoder; the
  model parts run on the padded tokens; GFLOP/s counts the blocks' linear layers and attention):

{breakdown}

  Matmul peak here: torch linear at the blocks' seven shapes (q, k, v, o, gate, up, down) on {batch_tokens:,}
  rows (the mean padded batch), 3 s each: bf16 {peaks["bf16"]:.1f} GFLOP/s, fp32 {peaks["fp32"]:.1f} GFLOP/s.
- FLOPs per input token: decoder block {mflops["block"]:.2f} M (attention {flops["attention_share_of_block"]:.1%}
  of it at a mean causal context of {mean_context:.0f} tokens), LM head {mflops["lm_head"]:.1f} M, SAE encoder
  {mflops["sae"]:.2f} M. Naive: {config.num_hidden_layers} blocks + LM head + SAE on every position =
  {mflops["naive"]:.1f} M. Early exit: {layer} blocks + SAE on the scored {n_scored / n_tokens:.0%} of the tokens =
  {mflops["early"]:.1f} M.
- Memory: each path runs in a fresh process on the {len(memory_texts)} longest texts ({args.memory_batches} batch(es)
  that fill the token budget: the worst case). "RSS added" = VmHWM after scoring minus VmRSS before, with the
  peak mark reset (`/proc/self/clear_refs`) after loading and a warm-up, so loading is left out; "peak RSS" is
  that VmHWM (model, SAE and interpreter included). The naive path also materialises the logits (batch tokens x
  {config.vocab_size} floats) and all {config.num_hidden_layers + 1} hidden states of a batch.
{variant_block}"""


if __name__ == "__main__":
    main()
