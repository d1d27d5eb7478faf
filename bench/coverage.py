"""Benchmark `measure_coverage`: model throughput, the cached re-run, and flat memory over 100k texts.

Phases, each in a fresh subprocess so peak RSS (ru_maxrss) belongs to that phase alone, all sharing
one new score cache in a temporary directory:

1. score   : the first D distinct texts of data/sae_corpus/corpus.jsonl.gz, cache empty -> the model
             runs on every text.
2. rerun   : the same D texts again -> every score comes from the cache.
3. stream  : N texts (default 100,000) streamed as the D texts repeated in order; all cache hits, so
             this measures the streaming path (read, render, tokenize, hash, cache look-up, unpack,
             count, reservoir, baselines with the default all-MiniLM-L6-v2), not the model. Peak RSS is
             read when 10,000 and when N texts have been processed.
4. naive   : (optional, --naive) the same N texts scored in one `FeatureSpace.score` call holding every
             SampleScores, for contrast with the streaming path.

The N texts are not N distinct texts: scoring 100k distinct texts with the model needs hours on this
CPU. Run:  .venv/bin/python bench/coverage.py [--distinct 4000] [--total 100000] [--naive] [--tiny]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sae_corpus" / "corpus.jsonl.gz"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


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


def load_space(tiny: bool, cache_dir: Path) -> Any:
    if not tiny:
        from fac.tools.space.features import FeatureSpace

        return FeatureSpace.load(cache_dir=cache_dir, device="cpu")
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # the unit tests' tiny random Llama + TopK SAE, for developing this script

    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.residual import LayerReader
    from fac.tools.space.score_cache import ScoreCache

    reader = LayerReader(conftest.make_lm(), conftest.make_tokenizer(), conftest.TINY_LAYER, max_tokens=64,
                         token_budget=2048)
    return FeatureSpace(reader, conftest.make_sae(), "tiny-llama", "tiny-sae",
                        cache=ScoreCache(cache_dir / "scores.sqlite"))


def load_catalog(space: Any) -> tuple[Any, str]:
    """The shipped toxicity catalog when it was built in this space, else every SAE feature (worst case)."""
    from fac.tools.catalog.records import Catalog, FeatureRecord
    from fac.tools.catalog.tasks import get_task

    spec = get_task("toxicity")
    if spec.catalog is not None:
        shipped = Catalog.load_json(spec.catalog)
        if all(shipped.space.get(k) == v for k, v in space.describe().items() if k in ("model", "layer", "sae")):
            return shipped, f"shipped toxicity catalog ({len(shipped.task_features())} task features)"
    records = tuple(FeatureRecord(feature=j, relevant=True, activation_rate=0.0, method="contrast")
                    for j in range(space.d_sae))
    catalog = Catalog(task="bench", method="contrast", space=space.describe(), records=records)
    return catalog, f"all {space.d_sae} SAE features as F_task (worst case per sample; FAC value not meaningful)"


def phase(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from fac.tools.coverage import measure_coverage

    process = psutil.Process()
    t0 = time.perf_counter()
    space = load_space(args.tiny, Path(args.cache_dir))
    catalog, catalog_note = load_catalog(space)
    loaded_s = time.perf_counter() - t0
    rss_loaded = process.memory_info().rss / 2**20
    texts = distinct_texts(args.distinct)
    total = len(texts) if name in ("score", "rerun") else args.total
    marks = {10_000: 0.0, total: 0.0}
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        before, done = done, done + n
        for mark in marks:
            if before < mark <= done:
                marks[mark] = peak_rss_mb()

    def stream() -> Iterator[str]:
        return itertools.islice(itertools.cycle(texts), total)

    out: dict[str, Any] = {"phase": name, "texts": total, "distinct": len(texts), "space": space.describe(),
                           "catalog": catalog_note, "load_s": round(loaded_s, 1),
                           "rss_after_load_mb": round(rss_loaded)}
    t1 = time.perf_counter()
    if name == "naive":
        scores = space.score(list(stream()), on_batch=on_batch)
        out["held_scores"] = len(scores)
    else:
        report = measure_coverage(space, stream(), catalog, baselines=name == "stream", chunk_size=1024,
                                  on_batch=on_batch)
        out.update(fac=round(report.fac, 4), n_task_features=report.n_task_features,
                   n_active_features=report.n_active_features, baselines=report.baselines,
                   length=report.length, n_truncated=report.n_truncated, split_s=report.seconds,
                   baseline_texts=report.baseline_texts, embedding_texts=report.embedding_texts)
    elapsed = time.perf_counter() - t1
    out.update(seconds=round(elapsed, 2), texts_per_s=round(total / elapsed, 1), peak_rss_mb=round(peak_rss_mb()),
               peak_rss_at_mb={str(k): round(v) for k, v in marks.items() if v})
    return out


def run_child(name: str, args: argparse.Namespace, cache_dir: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--cache-dir", cache_dir, "--distinct", str(args.distinct),
           "--total", str(args.total), *(["--tiny"] if args.tiny else [])]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"phase {name} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distinct", type=int, default=4000, help="Distinct corpus texts scored by the model.")
    parser.add_argument("--total", type=int, default=100_000, help="Texts streamed in the cached phase.")
    parser.add_argument("--naive", action="store_true", help="Also run the hold-everything contrast.")
    parser.add_argument("--tiny", action="store_true", help="Tiny random model and SAE (development only).")
    parser.add_argument("--out", type=Path, default=None, help="Write all results as JSON here.")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fac-bench-") as cache_dir:
        phases = ["score", "rerun", "stream", *(["naive"] if args.naive else [])]
        results = {name: run_child(name, args, cache_dir) for name in phases}
    spaces = {json.dumps(r["space"], sort_keys=True) for r in results.values()}
    if len(spaces) > 1:  # e.g. the SAE was replaced mid-run: the cache (rightly) misses, the numbers mean nothing
        raise SystemExit(f"the feature space changed between phases: {sorted(spaces)}")
    score, rerun = results["score"], results["rerun"]
    summary = {"cached_speedup": round(score["seconds"] / rerun["seconds"], 1),
               "wall_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
