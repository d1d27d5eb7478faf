"""Benchmark: early-exit feature extraction vs the naive full forward, on the real default model.

Speed: FeatureSpace.score(naive=False) vs score(naive=True), score cache off, on the same texts in one
process. The texts are cut into chunks, by default the very batches one score() call over all texts would
form, and the two paths alternate per chunk (E N, N E, ...), so a background load that comes and goes falls
on both paths alike.
Memory: each path runs in a fresh subprocess on the longest texts (the worst-case batches); we reset
the kernel's peak-RSS mark (/proc/self/clear_refs) after loading, so VmHWM is the peak *while scoring*.
Ideal speed-up: FLOPs per token from the model's shapes (linear layers, causal attention at the measured
lengths, LM head, SAE encoder). The results of both paths must agree (ids, scores, spans).

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
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "sae_corpus" / "corpus.jsonl.gz"
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Feature extraction"
LAYER = 15
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


def load_space(sae: str, max_tokens: int, token_budget: int) -> Any:
    from fac.tools.space.features import FeatureSpace

    return FeatureSpace.load("default", sae, max_tokens=max_tokens, token_budget=token_budget, device="cpu",
                             use_cache=False)


class PartTimer:
    """Wall seconds inside the first L blocks, the later blocks, the LM head and the SAE encoder, per path.

    Forward hooks on the blocks and the LM head, a wrapper around `sae.encode`; about 60 clock reads per batch.
    """

    def __init__(self, space: Any) -> None:
        from fac.tools.space.residual import decoder_blocks

        self.naive = False
        self.seconds: dict[tuple[bool, str], float] = defaultdict(float)
        blocks = decoder_blocks(space.reader.model)
        self.parts = (f"blocks 1-{space.layer}", f"blocks {space.layer + 1}-{len(blocks)}", "LM head", "SAE encoder")
        for i, block in enumerate(blocks):
            self._time(block, self.parts[0] if i < space.layer else self.parts[1])
        self._time(space.reader.model.get_output_embeddings(), self.parts[2])
        encode = space.sae.encode

        def timed_encode(x: Any) -> Any:
            began = time.perf_counter()
            out = encode(x)
            self.seconds[(self.naive, self.parts[3])] += time.perf_counter() - began
            return out

        space.sae.encode = timed_encode

    def _time(self, module: Any, part: str) -> None:
        began: list[float] = [0.0]

        def start(*_args: Any) -> None:
            began[0] = time.perf_counter()

        def stop(*_args: Any) -> None:
            self.seconds[(self.naive, part)] += time.perf_counter() - began[0]

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)


def timed_runs(
    space: Any, texts: list[str], chunks: list[list[int]], repeats: int, parts: PartTimer
) -> tuple[dict[bool, float], dict[bool, list[Any]]]:
    """Seconds per path (key: naive) over all chunks and repeats, alternating which path goes first per chunk;
    and the first repeat's results."""
    seconds = {False: 0.0, True: 0.0}
    results: dict[bool, list[Any]] = {False: [None] * len(texts), True: [None] * len(texts)}
    turn = 0
    for repeat in range(repeats):
        for chunk in chunks:
            part = [texts[i] for i in chunk]
            for naive in ((False, True) if turn % 2 == 0 else (True, False)):
                parts.naive = naive
                began = time.perf_counter()
                scored = space.score(part, naive=naive)
                seconds[naive] += time.perf_counter() - began
                if repeat == 0:
                    for i, scores in zip(chunk, scored, strict=True):
                        results[naive][i] = scores
            turn += 1
        print(f"repeat {repeat + 1}/{repeats}: early {seconds[False]:.1f} s, naive {seconds[True]:.1f} s", flush=True)
    return seconds, results


def compare(early: list[Any], naive: list[Any]) -> list[str]:
    """Differences between the two paths' results, one line per sample that differs."""
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
        "attention_share_of_block": attention / block,
        "lm_head": lm_head,
        "sae": sae,
        "naive": depth * block + lm_head + sae,  # the SAE on every position
        "early": layer * block + scored_share * sae,  # the SAE on the scored tokens only
    }


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
    space = load_space(args.sae, args.max_tokens, args.token_budget)
    texts = json.loads(Path(args.texts_json).read_text())
    naive = args.child == "naive"
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
        "path": args.child, "baseline_mb": baseline_kb / 1024, "peak_mb": peak_kb / 1024,
        "added_mb": (peak_kb - baseline_kb) / 1024, "process_peak_mb": process_peak_kb / 1024,
        "seconds": seconds, "n_texts": len(texts), "n_batches": len(batches),
    }))


def longest_batches(space: Any, texts: list[str], n_batches: int) -> list[str]:
    """The texts of the first `n_batches` batches (the longest texts, each batch filling the budget)."""
    tokenized = space.tokenize(texts)
    batches = list(space.reader.batches(tokenized))[:n_batches]
    return [texts[i] for batch in batches for i in batch]


def part_table(
    parts: PartTimer, timing: dict[bool, float], flops: dict[str, float], layer: int, padded: int
) -> tuple[str, float, float]:
    """Markdown table of seconds per part and path; the speed-up the part times allow; the early path's excess."""
    first, later, head, sae = parts.parts
    depth_rest = round((flops["naive"] - flops["lm_head"] - flops["sae"]) / flops["block"]) - layer
    part_flops = {first: layer * flops["block"], later: depth_rest * flops["block"], head: flops["lm_head"],
                  sae: flops["sae"]}
    lines = ["  | part | early exit (s) | naive (s) | naive GFLOP/s |", "  |---|---:|---:|---:|"]
    for part in parts.parts:
        early, naive = parts.seconds[(False, part)], parts.seconds[(True, part)]
        rate = part_flops[part] * padded / naive / 1e9 if naive else float("nan")
        lines.append(f"  | {part} | {early:.1f} | {naive:.1f} | {rate:.1f} |")
    rest = {naive: timing[naive] - sum(parts.seconds[(naive, p)] for p in parts.parts) for naive in (False, True)}
    lines.append(f"  | rest: embedding, masks, tokenizing, max and spans | {rest[False]:.1f} | {rest[True]:.1f} | |")
    lines.append(f"  | total | {timing[False]:.1f} | {timing[True]:.1f} | |")
    skipped = parts.seconds[(True, later)] + parts.seconds[(True, head)]
    skipped += parts.seconds[(True, sae)] - parts.seconds[(False, sae)]
    return "\n".join(lines), timing[True] / (timing[True] - skipped), timing[True] - skipped


def write_section(body: str) -> None:
    """Replace (or add) this benchmark's section of bench/RESULTS.md; other sections stay as they are."""
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", default="default", help="'default' (shipped), an SAE directory, or 'random'.")
    parser.add_argument("--n-texts", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=0,
                        help="Texts per alternation of the two paths (0: the batches of one score() call).")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory-batches", type=int, default=2, help="Longest batches scored by the memory runs.")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave bench/RESULTS.md alone.")
    parser.add_argument("--child", choices=["early", "naive"], help=argparse.SUPPRESS)
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
        write_section(body)
        print(f"wrote the '{SECTION[3:]}' section of {RESULTS.relative_to(REPO)}")


def run(args: argparse.Namespace, tmp: Path) -> str:
    """Measure both paths; returns the markdown section."""
    import torch

    from fac.tools.space.saes import shipped_sae_dir

    started, load_before = time.time(), os.getloadavg()
    if args.sae == "default" and not (shipped_sae_dir() / "cfg.json").is_file():
        print(f"the shipped SAE is not at {shipped_sae_dir()} yet: using a random TopK SAE of the same shape")
        args.sae = "random"
    sae_note = ""
    if args.sae == "random":
        sae_dir = random_sae_dir(tmp)
        sae_note = (" **Random TopK weights of the shipped SAE's shape** (d_in 576, d_sae 4096, k 64, block 15): "
                    "speed and memory do not depend on the weights, and the two paths must agree for any SAE.")
    else:
        sae_dir = str(shipped_sae_dir()) if args.sae == "default" else args.sae

    texts = pick_texts(args.n_texts, args.seed)
    space = load_space(sae_dir, args.max_tokens, args.token_budget)
    tokenized = space.tokenize(texts)
    lengths = np.array([len(t.input_ids) for t in tokenized])
    if args.chunk:  # consecutive texts of similar length
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        chunks = [order[start : start + args.chunk] for start in range(0, len(texts), args.chunk)]
    else:
        chunks = list(space.reader.batches(tokenized))
    n_tokens, n_scored = int(lengths.sum()), sum(len(t.content_positions) for t in tokenized)
    padded = 0  # tokens the model runs on, padding included, batched chunk by chunk as timed_runs does
    for chunk in chunks:
        part = [tokenized[i] for i in chunk]
        padded += sum(len(b) * max(len(part[i].input_ids) for i in b) for b in space.reader.batches(part))
    print(f"{len(texts)} texts, {n_tokens} tokens (mean {lengths.mean():.1f}, max {lengths.max()}), {n_scored} scored, "
          f"{padded} padded; model {space.model_id}, SAE {space.sae_id}", flush=True)
    space.score(texts[:4])  # warm-up
    space.score(texts[:4], naive=True)

    parts = PartTimer(space)
    timing, results = timed_runs(space, texts, chunks, args.repeats, parts)
    problems = compare(results[False], results[True])
    if problems:
        raise SystemExit("early exit and naive results differ:\n" + "\n".join(problems[:20]))
    n_active = float(np.mean([len(r.feature_ids) for r in results[False]]))

    config = space.reader.model.config
    mean_context = float((lengths * (lengths + 1) / 2).sum() / n_tokens)  # token-weighted causal context
    flops = flops_per_token(config, space.d_sae, space.layer, mean_context, n_scored / n_tokens)
    ideal = flops["naive"] / flops["early"]
    measured = timing[True] / timing[False]

    memory_texts = longest_batches(space, texts, args.memory_batches)
    model_id, sae_id, layer = space.model_id, space.sae_id, space.layer
    del space
    memory = {naive: peak_memory("naive" if naive else "early", sae_dir, memory_texts, args) for naive in (False, True)}
    minutes, load_after = (time.time() - started) / 60, os.getloadavg()

    rows = []
    for naive, name in ((False, f"early exit (blocks 1-{layer}, SAE on scored tokens)"),
                        (True, "naive (all blocks + LM head, SAE on every position)")):
        seconds, mem = timing[naive], memory[naive]
        rows.append(f"| {name} | {args.repeats * len(texts) / seconds:.2f} | {args.repeats * n_tokens / seconds:.0f} "
                    f"| {seconds:.1f} | {mem['added_mb']:.0f} | {mem['peak_mb']:.0f} |")
    verdict = "meets" if measured >= 0.8 * ideal else "misses"
    mflops = {name: value / 1e6 for name, value in flops.items()}
    chunking = f"{args.chunk} texts of similar length each" if args.chunk else "the batches of one score() call"
    breakdown, achievable, shared = part_table(parts, timing, flops, layer, padded * args.repeats)
    return f"""{SECTION}

`bench/feature_extraction.py`, {time.strftime("%Y-%m-%d")}, {minutes:.1f} min. Model `{model_id}` read at layer
{layer}; SAE `{sae_id}`.{sae_note}
{len(texts)} texts sampled (seed {args.seed}) from `data/sae_corpus/corpus.jsonl.gz`: {n_tokens:,} input tokens
(mean {lengths.mean():.1f}, max {lengths.max()}, chat template included), {n_scored:,} scored, {padded:,} with padding
(token budget {args.token_budget}, at most {args.max_tokens} tokens per text). The texts go in {len(chunks)} chunks
({chunking}), the two paths alternating which runs first, {args.repeats} repeat(s); score cache off.
CPU: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32. Load average
{load_before[0]:.1f} before and {load_after[0]:.1f} after: when other jobs share the CPU, absolute rates drop; the
alternation keeps the ratio fair.

| path | texts/s | tokens/s | seconds | RSS added while scoring (MB) | peak RSS (MB) |
|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

- Same results: feature ids and spans equal, scores within rtol 1e-4, for all {len(texts)} texts
  ({n_active:.1f} active features per text on average).
- Measured speed-up **{measured:.2f}x**, ideal from FLOPs **{ideal:.2f}x**: ratio {measured / ideal:.2f}, {verdict}
  the target of >= 0.8 x ideal.
- Where the time goes (forward hooks on the blocks and the LM head, a timer around the SAE encoder; the
  model parts run on the padded tokens):

{breakdown}

  The naive run minus the parts early exit skips (later blocks, LM head, SAE on unscored positions) takes
  {shared:.1f} s, {achievable:.2f}x less than the naive run: the speed-up this CPU allows, as the LM head (one
  large matrix product) runs at more FLOP/s than the blocks. Early exit took {timing[False]:.1f} s against those
  {shared:.1f} s ({timing[False] - shared:+.1f} s: noise plus its own overhead).
- FLOPs per input token: decoder block {mflops["block"]:.2f} M (attention {flops["attention_share_of_block"]:.1%}
  of it at a mean causal context of {mean_context:.0f} tokens), LM head {mflops["lm_head"]:.1f} M, SAE encoder
  {mflops["sae"]:.2f} M. Naive: {config.num_hidden_layers} blocks + LM head + SAE on every position =
  {mflops["naive"]:.1f} M. Early exit: {layer} blocks + SAE on the scored {n_scored / n_tokens:.0%} of the tokens =
  {mflops["early"]:.1f} M. The ideal leaves out padding, tokenization and Python overheads.
- Memory: each path runs in a fresh process on the {len(memory_texts)} longest texts ({args.memory_batches} batch(es)
  that fill the token budget: the worst case). "RSS added" = VmHWM after scoring minus VmRSS before, with the
  peak mark reset (`/proc/self/clear_refs`) after loading and a warm-up, so loading is left out; "peak RSS" is
  that VmHWM (model, SAE and interpreter included). The naive path also materialises the logits (batch tokens x
  {config.vocab_size} floats) and all {config.num_hidden_layers + 1} hidden states of a batch.
"""


if __name__ == "__main__":
    main()
