"""GPU benchmark (run by bench/gpu.sh): fac's feature-space path vs the naive HF + sae-lens path, same texts.

fac's path: FeatureSpace.score on CUDA (bf16 weights, length-sorted batches under a token budget, early exit at
the hooked block, the SAE on scored tokens only, max/argmax on the device, one device-to-host copy per flush).
Naive path: what a user writes first: fixed batches of `--naive-batch` texts in corpus order, padded to the
longest, `model(..., output_hidden_states=True)` through every block and the LM head, `sae.encode` on every
position, the max over the same scored tokens, and `.cpu()` per batch. Both read the same tokens (fac's
rendering and tokenization) with the same weights and SAE, so their active features must agree.
Prints one markdown table; stops itself before `--budget-s` seconds (texts are cut to fit).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "data" / "sae_corpus" / "corpus.jsonl.gz"


def naive_scores(space: Any, tokenized: list[Any], batch_size: int) -> list[set[int]]:
    """Active feature sets by the naive HF output_hidden_states + sae-lens path."""
    model, sae, layer = space.reader.model, space.sae, space.layer
    pad = space.reader._pad_id
    out: list[set[int]] = []
    for start in range(0, len(tokenized), batch_size):
        batch = tokenized[start : start + batch_size]
        width = max(len(t.input_ids) for t in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, t in enumerate(batch):
            ids[row, : len(t.input_ids)] = torch.tensor(t.input_ids)
            mask[row, : len(t.input_ids)] = 1
        with torch.no_grad():
            hidden = model(input_ids=ids.cuda(), attention_mask=mask.cuda(), output_hidden_states=True).hidden_states
            acts = sae.encode(hidden[layer].to(sae.dtype))  # (b, t, d_sae)
            for row, t in enumerate(batch):
                values = acts[row, t.content_positions].amax(dim=0).cpu()  # a host copy per sample
                out.append(set(torch.nonzero(values > 0).flatten().tolist()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--sae", default="default")
    parser.add_argument("--n-texts", type=int, default=2000)
    parser.add_argument("--naive-batch", type=int, default=16)
    parser.add_argument("--token-budget", type=int, default=32768)
    parser.add_argument("--budget-s", type=float, default=240.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: bench/gpu.sh needs a GPU (nothing measured)")
    from fac.tools.space.features import FeatureSpace

    began = time.perf_counter()
    space = FeatureSpace.load(args.model, args.sae, device="cuda", dtype="auto", token_budget=args.token_budget,
                              use_cache=False)
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line)["text"] for line in handle if line.strip()]
    texts = random.Random(0).sample(rows, min(args.n_texts, len(rows)))
    tokenized = space.tokenize(texts)
    n_tokens = sum(len(t.input_ids) for t in tokenized)
    space.score(texts[:32])  # warm-up (kernels, allocator)
    naive_scores(space, tokenized[:32], args.naive_batch)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()

    left = args.budget_s - (time.perf_counter() - began)
    t0 = time.perf_counter()
    fac = space.score(texts)
    torch.cuda.synchronize()
    fac_s = time.perf_counter() - t0
    fac_peak = torch.cuda.max_memory_allocated() / 2**20
    # the naive path gets what is left, on a prefix if need be (its rate is per token, so a prefix is fair)
    per_token = fac_s / n_tokens * 10  # a guess of its cost, refined after the first part
    n_naive = len(texts) if per_token * n_tokens < left - fac_s else max(64, int((left - fac_s) / per_token))
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    naive = naive_scores(space, tokenized[:n_naive], args.naive_batch)
    torch.cuda.synchronize()
    naive_s = time.perf_counter() - t0
    naive_peak = torch.cuda.max_memory_allocated() / 2**20
    naive_tokens = sum(len(t.input_ids) for t in tokenized[:n_naive])

    jaccard = []
    for ours, theirs in zip(fac[:n_naive], naive, strict=True):
        a = set(ours.feature_ids.tolist())
        jaccard.append(len(a & theirs) / len(a | theirs) if a | theirs else 1.0)
    fac_rate, naive_rate = n_tokens / fac_s, naive_tokens / naive_s
    print(f"\nGPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; model {space.model_id} at layer "
          f"{space.layer}, SAE {space.sae_id}, precision {space.precision}; {time.perf_counter() - began:.0f} s wall\n")
    print("| path | texts | tokens | seconds | tokens/s | peak GPU memory (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| fac (early exit, batched by a {args.token_budget}-token budget) | {len(texts)} | {n_tokens:,} | "
          f"{fac_s:.1f} | {fac_rate:,.0f} | {fac_peak:,.0f} |")
    print(f"| naive (HF output_hidden_states + sae-lens, batches of {args.naive_batch}) | {n_naive} | "
          f"{naive_tokens:,} | {naive_s:.1f} | {naive_rate:,.0f} | {naive_peak:,.0f} |")
    print(f"\nfac / naive: {fac_rate / naive_rate:.2f}x tokens/s; active-feature Jaccard on the {n_naive} shared "
          f"texts: mean {np.mean(jaccard):.4f}, min {np.min(jaccard):.4f}")


if __name__ == "__main__":
    main()
