"""Benchmark scoring throughput: the single process vs a Ray Data actor pool of 1 and 2 actors, in one run.

The same N distinct texts of data/sae_corpus/corpus.jsonl.gz, on the real default model + shipped SAE
(float32), each arm with a new empty score cache (so the model runs on every text), chunks as `fac coverage`
sends them. Ray is a local cluster started here (`ray.init(num_cpus=2)`): on a 2-core machine 2 actors of
1 CPU can at best match one process that uses both cores. Each arm's wall time includes what a user waits
for: the actors start and load the model (the time to the first chunk back shows it; results come back in
input order, so with 2 actors the first chunk waits for both to start).
Also: whether every score equals the single-process scores, and the driver's peak RSS in each arm.

Run:  .venv/bin/pip install 'fac[ray]' && .venv/bin/python bench/ray_scoring.py [--n 96] [--chunk-size 16]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sae_corpus" / "corpus.jsonl.gz"


def distinct_texts(limit: int) -> list[str]:
    seen: dict[str, None] = {}
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            if text.strip():
                seen.setdefault(text, None)
            if len(seen) >= limit:
                break
    return list(seen)


class PeakRss:
    """The driver's peak resident memory while the block runs, sampled every 50 ms."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, me.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_arm(space: Any, texts: list[str], chunk_size: int) -> dict[str, Any]:
    from fac.tools.catalog.evidence import chunked

    started = time.perf_counter()
    first: float | None = None
    scores = []
    with PeakRss() as rss:
        for scored in space.score_chunks(chunked(texts, chunk_size)):
            first = first if first is not None else time.perf_counter() - started
            scores.extend(scored)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "first_s": first or wall, "rss_mb": rss.peak / 2**20, "scores": scores}


def same(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.feature_ids, b.feature_ids), (a.scores, b.scores),
                                                (a.span_starts, b.span_starts), (a.span_ends, b.span_ends)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="distinct texts scored by each arm")
    parser.add_argument("--chunk-size", type=int, default=16, help="texts per chunk (one actor call)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each arm (mean, min–max reported)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md as it is")
    args = parser.parse_args()

    import ray

    from fac.api import SpaceSpec
    from fac.tools.space.ray_pool import RayOptions
    from fac.tools.space.ray_scoring import with_ray
    from fac.tools.space.score_cache import ScoreCache

    texts = distinct_texts(args.n)
    spec = SpaceSpec(dtype="float32", device="cpu")
    load_before = os.getloadavg()
    space = spec.load()
    tmp = Path(tempfile.mkdtemp(prefix="fac-ray-bench-"))

    def fresh(name: str) -> Any:
        return replace(space, cache=ScoreCache(tmp / name / "scores.sqlite"))

    arms: dict[str, list[dict[str, Any]]] = {}
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 << 20, log_to_driver=False,
             logging_level="WARNING")
    try:
        for repeat in range(args.repeats):  # arms interleaved, so a change of load hits each of them alike
            arms.setdefault("single process", []).append(run_arm(fresh(f"single{repeat}"), texts, args.chunk_size))
            for actors in args.actors:
                remote = with_ray(fresh(f"ray{actors}-{repeat}"), spec, RayOptions(actors=actors))
                name = f"Ray, {actors} actor{'s' * (actors > 1)}"
                arms.setdefault(name, []).append(run_arm(remote, texts, args.chunk_size))
    finally:
        ray.shutdown()
    load_after = os.getloadavg()
    reference = arms["single process"][0]["scores"]
    lines = [
        "## Ray scale-out (bench/ray_scoring.py)",
        "",
        f"{len(texts)} distinct texts of data/sae_corpus/corpus.jsonl.gz, default model + shipped SAE, float32 on "
        f"the CPU, chunks of {args.chunk_size}, a new empty score cache per run, {args.repeats} runs per arm "
        "(mean, min–max), arms interleaved; a local Ray "
        f"(`ray.init(num_cpus=2)`), 1 CPU per actor. Load average (1 min) {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after: the 2 cores were shared with other jobs, so the rates are noisy.",
        "",
        "| path | wall s | texts/s | s to the first chunk back | scores equal to "
        "single process | driver peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def spread(values: list[float], digits: int) -> str:
        low, high = min(values), max(values)
        mean = sum(values) / len(values)
        return f"{mean:.{digits}f}" + (f" ({low:.{digits}f}–{high:.{digits}f})" if len(values) > 1 else "")

    for name, runs in arms.items():
        equal = min(sum(same(a, b) for a, b in zip(r["scores"], reference, strict=True)) for r in runs)
        rate = [len(texts) / r["wall_s"] for r in runs]
        lines.append(f"| {name} | {spread([r['wall_s'] for r in runs], 1)} | {spread(rate, 2)} | "
                     f"{spread([r['first_s'] for r in runs], 1)} | {equal}/{len(texts)} | "
                     f"{max(r['rss_mb'] for r in runs):.0f} |")
    lines += ["", "On 2 shared cores Ray cannot beat one process: each actor runs torch on 1 thread and loads its "
              "own model, and the single process already uses both cores. What scales is the number of machines "
              "and GPUs (`--ray ADDRESS --ray-actors N --ray-gpus-per-actor 1`); the equality column is the "
              "point here: the pool's results are the single-process results, bit for bit.", ""]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("## Ray scale-out (bench/ray_scoring.py)", body)


if __name__ == "__main__":
    main()
