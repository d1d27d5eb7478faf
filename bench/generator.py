"""Benchmark the local generator (BatchedLocalChat on the embedded SmolLM2-135M-Instruct): fp32 vs bf16 weights.

Same prompts (drafting requests built from seeded picks of the demo seed), same per-chunk sampling seeds, the
demo's settings (batches of 8, temperature 0.8, top_p 0.9, at most 96 new tokens), rotating which precision goes
first per chunk; bf16 is the default space's own model (what `fac run` generates with on this CPU).
Reported: generated tokens/s of each, how many replies
are token-for-token the same, and how many drafts fire at least one of the seed's missing task features (the
verifier's acceptance test, scored by the default feature space) in each precision.
Called by `bench/synthesis.py --generator` (writes the "Generator" section of bench/RESULTS.md), or alone:

    .venv/bin/python bench/generator.py [--prompts 48] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from results_file import write_section

from fac.tools.catalog.tasks import CATALOG_FILE

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "toxicity" / "seed.jsonl"
CATALOG = REPO / "fac" / "assets" / "tasks" / "toxicity" / CATALOG_FILE
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Generator"
PRECISIONS = ("float32", "bfloat16")


def prompts(n: int, seed: int) -> list[list[Any]]:
    """Drafting requests: three seeded seed examples each, asking for one new text of the kind."""
    from langchain_core.messages import HumanMessage, SystemMessage

    texts = [json.loads(line)["text"] for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        examples = "\n".join(f"- {t}" for t in rng.sample(texts, 3))
        out.append([SystemMessage("You write short social-media posts for a toxicity-detection dataset."),
                    HumanMessage(f"Examples:\n{examples}\n\nWrite one new post of the same kind. Reply with the post "
                                 "only.")])
    return out


def measure(n_prompts: int, seed: int, batch_size: int) -> dict[str, Any]:
    """Generate with each precision, rotating per chunk; tokens/s, identical replies, drafts firing missing features."""
    from fac.tools.catalog.build import load_catalog_file
    from fac.tools.llm.local_writer import BatchedLocalChat
    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.models import load_model

    space = FeatureSpace.load(use_cache=False)  # the default space (bf16 weights on a CPU with bf16 units)
    exact = load_model("default", dtype="float32")
    settings = {"temperature": 0.8, "top_p": 0.9, "max_new_tokens": 96, "batch_size": batch_size}
    chats = {"float32": BatchedLocalChat.from_loaded(exact, **settings),
             "bfloat16": BatchedLocalChat(model=space.reader.model, tokenizer=space.reader.tokenizer,
                                          model_id=space.model_id, **settings)}
    requests = prompts(n_prompts, seed)
    for chat in chats.values():  # warm-up
        chat.batch(requests[:2], seeds=[seed, seed])
    seconds = dict.fromkeys(PRECISIONS, 0.0)
    replies: dict[str, list[Any]] = {p: [] for p in PRECISIONS}
    for turn, start in enumerate(range(0, n_prompts, batch_size)):
        chunk = requests[start : start + batch_size]
        order = PRECISIONS if turn % 2 == 0 else PRECISIONS[::-1]
        for precision in order:
            began = time.perf_counter()
            replies[precision].extend(chats[precision].batch(chunk, seeds=[seed + start] * len(chunk)))
            seconds[precision] += time.perf_counter() - began
        print(f"chunk {turn + 1}: " + ", ".join(f"{p} {s:.1f} s" for p, s in seconds.items()), flush=True)
    out_tokens = {p: sum(r.usage_metadata["output_tokens"] for r in replies[p]) for p in PRECISIONS}
    seed_texts = [json.loads(line)["text"] for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    task = {int(f) for f in load_catalog_file(CATALOG).task_features()}
    seed_active = set().union(*(set(s.active(0.0).tolist()) for s in space.score(seed_texts)))
    missing = task - seed_active
    firing = {}
    for precision in PRECISIONS:
        drafts = [str(r.content) for r in replies[precision] if str(r.content).strip()]
        firing[precision] = sum(bool(set(s.active(0.0).tolist()) & missing) for s in space.score(drafts))
    same = sum(a.content == b.content for a, b in zip(*(replies[p] for p in PRECISIONS), strict=True))
    return {"n": n_prompts, "seconds": seconds, "out_tokens": out_tokens, "same": same, "firing": firing,
            "missing": len(missing), "batch_size": batch_size, "settings": settings, "model": space.model_id,
            "example": {p: str(replies[p][0].content)[:120] for p in PRECISIONS}}


def section(result: dict[str, Any], minutes: float, load: tuple[float, float]) -> str:
    rows = []
    for p in PRECISIONS:
        sec, tokens = result["seconds"][p], result["out_tokens"][p]
        rows.append(f"| {p} | {tokens:,} | {sec:.1f} | {tokens / sec:.1f} | {result['firing'][p]} / {result['n']} |")
    fp32, fast = (result["out_tokens"][p] / result["seconds"][p] for p in PRECISIONS)
    return f"""{SECTION}

`bench/generator.py --prompts {result["n"]}` (or `bench/synthesis.py --generator`), {time.strftime("%Y-%m-%d")},
{minutes:.1f} min wall. Generator: `{result["model"]}` in-process (BatchedLocalChat), batches of
{result["batch_size"]}, temperature 0.8, top_p 0.9, at most 96 new tokens, the same per-batch sampling seeds in both
precisions, rotating which precision goes first per batch (bf16: the default space's model). {result["n"]} drafting
prompts (three seeded examples from `examples/toxicity/seed.jsonl` each). CPU: {os.cpu_count()} cores, load average
{load[0]:.1f} before and {load[1]:.1f} after.

| precision | generated tokens | seconds | tokens/s | drafts firing a missing task feature |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

- bf16 weights generate **{fast / fp32:.2f}x** the tokens/s of fp32.
- bf16 changes the outputs: {result["same"]} of {result["n"]} replies are identical to fp32's with the same seed
  (sampling diverges once one logit differs in the last bits). Drafts that fire at least one of the seed's
  {result["missing"]} missing task features (the verifier's acceptance test, default feature space):
  fp32 {result["firing"]["float32"]}, bf16 {result["firing"]["bfloat16"]}, of {result["n"]}.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started, before = time.time(), os.getloadavg()[0]
    result = measure(args.prompts, args.seed, args.batch_size)
    body = section(result, (time.time() - started) / 60, (before, os.getloadavg()[0]))
    print(body)
    print("first replies:", json.dumps(result["example"], ensure_ascii=False))
    if not args.no_write:
        write_section(SECTION, body, RESULTS)


if __name__ == "__main__":
    main()
