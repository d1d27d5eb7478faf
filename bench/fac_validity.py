"""Benchmark FAC's validity (issue 11, METHOD §5): does a set's FAC predict what a detector learns from it?

The paper's central claim at CPU scale. Equal-size sets of real toxic tweets (Davidson class 0 hate or 1
offensive) are built with deliberately different diversity: random draws, one label only, half hate, one
keyword, short or long texts only, retweets only, near-duplicates (a few tweets and their near copies) and
mixes. Each comes only from the non-held-out rows (the derived corpus; the held-out ids of
../shared/data/corpus/heldout_ids.json are never used for sets, negatives or anything else that is fitted).

Per set:
- FAC with fac's own `measure_coverage` (what `fac coverage` calls) on the chosen space and catalog, the text
  baselines it reports beside FAC (distinct-1/2, n-gram entropy, MiniLM pairwise cosine distance, all on the
  whole set), mean scored tokens, and text-level sparsity (mean share of the SAE's latents a text activates);
- a detector: logistic regression (C fixed at 1.0, never tuned) on all-MiniLM-L6-v2 embeddings of the set
  (positives) plus 1,000 real non-toxic tweets (class 2, non-held-out; one negative sample per seed, shared by
  all sets), scored by AUPRC on (a) the Davidson held-out rows, toxic (0/1) vs neither (2), in-domain, and
  (b) the ToxiGen demonstrations, hate vs neutral lines, out-of-domain.

Then Spearman and Pearson of each metric with the mean AUPRC over seeds, per evaluation. `hate_share` (the
set's share of class-0 tweets) and `active_latents` (share of all SAE latents the set activates) are
diagnostics printed beside the metrics, not candidates.

Scores are cached by fac's score cache and MiniLM embeddings in $FAC_CACHE_DIR/bench/validity_minilm.npz, so a
rerun on another space (`--sae`, `--catalog`, `--layer`, `--mode`, `--threshold`) only scores the set texts anew.

Run (from the repository root; the data folder defaults to ../shared/data):
    HF_HUB_OFFLINE=1 .venv/bin/python bench/fac_validity.py [--set-size 150] [--sets 16] [--seeds 5]
        [--out bench/runs/fac_validity.json] [--sae default] [--catalog PATH] [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import hashlib
import html
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DAVIDSON_CSV = "davidson-hate-offensive/labeled_data.csv.gz"
CORPUS = "corpus/sae_corpus.jsonl.gz"
HELDOUT = "corpus/heldout_ids.json"
HELDOUT_KEY = "davidson-hate-offensive/labeled_data.csv.gz (row id, first CSV column)"
TOXIGEN_GLOB = "toxigen-demonstrations/demonstrations/*/*.txt"
HATE, OFFENSIVE, NEITHER = 0, 1, 2
METRICS = ("fac", "distinct_1", "distinct_2", "entropy_1", "entropy_2", "embedding_cosine_distance", "mean_tokens")
DIAGNOSTICS = ("active_latents", "hate_share")
EVALS = ("in_domain", "out_of_domain")


@dataclass(frozen=True)
class Tweet:
    """One Davidson tweet: CSV row id, normalised text, class (0 hate, 1 offensive, 2 neither)."""

    row: str
    text: str
    label: int

    @property
    def n_words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class TweetSet:
    """One benchmark set: its name, how it was built, and its members."""

    name: str
    recipe: str
    members: tuple[Tweet, ...]

    @property
    def texts(self) -> list[str]:
        return [t.text for t in self.members]

    @property
    def hate_share(self) -> float:
        return sum(t.label == HATE for t in self.members) / len(self.members)


# ---------------------------------------------------------------------------------------------- data


def normalise_tweet(raw: str) -> str:
    """The derived corpus's tweet normalisation: HTML entities unescaped, whitespace runs collapsed."""
    return " ".join(html.unescape(raw).split())


def keeps_text(text: str) -> bool:
    """The derived corpus's filter: 10-1,000 characters, at least 90 % ASCII."""
    return 10 <= len(text) <= 1000 and sum(c.isascii() for c in text) >= 0.9 * len(text)


def _need(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"{path}: not found. This benchmark reads the shared data folder (../shared/data, "
                         "see its README.md); pass --data DIR if it lives elsewhere")
    return path


def load_davidson(data: Path) -> tuple[list[Tweet], list[Tweet]]:
    """(pool, held_out): the corpus's non-held-out tweets with their class, and the held-out rows, normalised,
    filtered and de-duplicated as the corpus was (and never overlapping the pool's texts)."""
    labels: dict[str, int] = {}
    raw: dict[str, str] = {}
    with gzip.open(_need(data / DAVIDSON_CSV), "rt", encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            labels[line[""]] = int(line["class"])
            raw[line[""]] = line["tweet"]
    held = {str(i) for i in json.loads(_need(data / HELDOUT).read_text(encoding="utf-8"))["held_out"][HELDOUT_KEY]}
    pool: list[Tweet] = []
    with gzip.open(_need(data / CORPUS), "rt", encoding="utf-8") as handle:
        for text_line in handle:
            record = json.loads(text_line)
            if record["source"] != "davidson-tweets":
                continue
            row = record["id"].split(":", 1)[1]
            if row in held:
                raise SystemExit(f"{data / CORPUS}: held-out row {row} is in the corpus; the data is inconsistent")
            pool.append(Tweet(row, record["text"], labels[row]))
    seen = {t.text.casefold() for t in pool}
    held_out: list[Tweet] = []
    for row in sorted(held, key=int):
        text = normalise_tweet(raw[row])
        if keeps_text(text) and text.casefold() not in seen:
            seen.add(text.casefold())
            held_out.append(Tweet(row, text, labels[row]))
    return pool, held_out


def load_toxigen(data: Path) -> tuple[list[str], list[int]]:
    """ToxiGen demonstration lines as (texts, labels: 1 hate, 0 neutral); exact repeats kept once and lines
    found under both labels dropped."""
    files = sorted(glob.glob(str(data / TOXIGEN_GLOB)))
    if not files:
        raise SystemExit(f"{data / TOXIGEN_GLOB}: no files. See ../shared/data/README.md; pass --data DIR")
    found: dict[str, set[int]] = {}
    for name in files:
        label = 1 if Path(name).name.startswith("hate") else 0
        for line in Path(name).read_text(encoding="utf-8").splitlines():
            text = " ".join(line.split()).lstrip("- ").strip()
            if text:
                found.setdefault(text, set()).add(label)
    kept = [(text, next(iter(marks))) for text, marks in found.items() if len(marks) == 1]
    return [t for t, _ in kept], [y for _, y in kept]


# ---------------------------------------------------------------------------------------------- sets


def draw(candidates: Sequence[Tweet], n: int, rng: random.Random, what: str = "") -> list[Tweet]:
    """n distinct candidates, uniformly; an error naming the recipe when there are fewer than n."""
    if len(candidates) < n:
        raise ValueError(f"set {what!r}: {len(candidates)} candidate tweets, {n} needed")
    return rng.sample(list(candidates), n)


def with_keyword(pool: Sequence[Tweet], keyword: str) -> list[Tweet]:
    """Tweets with a word starting with `keyword` (case-insensitive)."""
    pattern = re.compile(rf"\b{re.escape(keyword)}", re.IGNORECASE)
    return [t for t in pool if pattern.search(t.text)]


def by_length(pool: Sequence[Tweet], share: float, longest: bool) -> list[Tweet]:
    """The shortest (or longest) `share` of the pool by word count, ties broken by row id."""
    ordered = sorted(pool, key=lambda t: (t.n_words, int(t.row)), reverse=longest)
    return ordered[: max(1, round(share * len(ordered)))]


_PUNCT = ("!", "!!", "?", "...", ".")


def near_copy(text: str, rng: random.Random) -> str:
    """A near copy of `text`: one or two small edits (drop, repeat or swap a word, change a word's case,
    add or strip end punctuation), the kind of variant a scraped corpus holds."""
    words = text.split()
    for _ in range(rng.choice((1, 2))):
        edit = rng.randrange(6)
        i = rng.randrange(len(words))
        if edit == 0 and len(words) > 3:
            del words[i]
        elif edit == 1:
            words.insert(i, words[i])
        elif edit == 2 and len(words) > 1:
            j = min(i, len(words) - 2)
            words[j], words[j + 1] = words[j + 1], words[j]
        elif edit == 3:
            words[i] = words[i].upper() if words[i] != words[i].upper() else words[i].lower()
        elif edit == 4:
            words[-1] = words[-1] + rng.choice(_PUNCT)
        else:
            words[-1] = words[-1].rstrip("!?.") or words[-1]
    return " ".join(words)


def near_duplicates(sources: Sequence[Tweet], size: int, rng: random.Random) -> list[Tweet]:
    """`size` distinct texts: each source and near copies of it, spread as evenly as `size` allows (at most
    `size` sources are used)."""
    if not sources:
        raise ValueError("near duplicates need at least one source tweet")
    sources = sources[:size]
    out: list[Tweet] = []
    texts: set[str] = set()
    for k, source in enumerate(sources):
        quota = size // len(sources) + (k < size % len(sources))
        group = [source] if source.text not in texts else []
        texts.add(source.text)
        tries = 0
        while len(group) < quota:
            tries += 1
            if tries > 200 * quota:
                raise ValueError(f"could not make {quota} distinct near copies of {source.text!r}")
            copy = near_copy(source.text if tries < 50 * quota else rng.choice(group).text, rng)
            if copy not in texts:
                texts.add(copy)
                group.append(Tweet(source.row, copy, source.label))
        out.extend(group)
    return out


def mix(first: Sequence[Tweet], second: Sequence[Tweet], size: int, rng: random.Random, what: str = "") -> list[Tweet]:
    """size // 2 tweets from `first`, the rest from `second`, no text twice."""
    half = draw(first, size // 2, rng, what)
    taken = {t.text for t in half}
    return half + draw([t for t in second if t.text not in taken], size - len(half), rng, what)


SetRecipe = Callable[[Sequence[Tweet], int, random.Random], list[Tweet]]


def recipes() -> list[tuple[str, str, SetRecipe]]:
    """(name, description, builder) of every set, in the order `--sets N` takes them."""

    def hate(pool: Sequence[Tweet]) -> list[Tweet]:
        return [t for t in pool if t.label == HATE]

    def offensive(pool: Sequence[Tweet]) -> list[Tweet]:
        return [t for t in pool if t.label == OFFENSIVE]

    def sources(pool: Sequence[Tweet], n: int, rng: random.Random) -> list[Tweet]:
        return draw([t for t in pool if t.n_words >= 6], n, rng, "near-duplicate sources")

    return [
        ("random_1", "uniform draw", lambda p, n, r: draw(p, n, r, "random_1")),
        ("hate_only", "class 0 (hate) only", lambda p, n, r: draw(hate(p), n, r, "hate_only")),
        ("offensive_only", "class 1 (offensive) only", lambda p, n, r: draw(offensive(p), n, r, "offensive_only")),
        ("kw_bitch", "contains 'bitch*'", lambda p, n, r: draw(with_keyword(p, "bitch"), n, r, "kw_bitch")),
        ("short_only", "shortest 10 % by words", lambda p, n, r: draw(by_length(p, 0.1, False), n, r, "short")),
        ("long_only", "longest 10 % by words", lambda p, n, r: draw(by_length(p, 0.1, True), n, r, "long")),
        ("retweets_only", "starts with 'RT @'", lambda p, n, r: draw([t for t in p if t.text.startswith("RT @")],
                                                                     n, r, "retweets_only")),
        ("near_dup_10", "10 tweets + near copies", lambda p, n, r: near_duplicates(sources(p, 10, r), n, r)),
        ("half_hate", "75 hate + 75 offensive", lambda p, n, r: mix(hate(p), offensive(p), n, r, "half_hate")),
        ("kw_hoe", "contains 'hoe*'", lambda p, n, r: draw(with_keyword(p, "hoe"), n, r, "kw_hoe")),
        ("kw_fag", "contains 'fag*'", lambda p, n, r: draw(with_keyword(p, "fag"), n, r, "kw_fag")),
        ("near_dup_30", "30 tweets + near copies", lambda p, n, r: near_duplicates(sources(p, 30, r), n, r)),
        ("random_2", "uniform draw", lambda p, n, r: draw(p, n, r, "random_2")),
        ("kw_white", "contains 'white*'", lambda p, n, r: draw(with_keyword(p, "white"), n, r, "kw_white")),
        ("mix_short_hoe", "half short_only + half kw_hoe",
         lambda p, n, r: mix(by_length(p, 0.1, False), with_keyword(p, "hoe"), n, r, "mix_short_hoe")),
        ("mix_dup_random", "half near_dup (5 tweets) + half random",
         lambda p, n, r: mix(near_duplicates(sources(p, 5, r), n // 2, r), p, n, r, "mix_dup_random")),
    ]


def build_sets(pool: Sequence[Tweet], size: int, n_sets: int, seed: int = 0) -> list[TweetSet]:
    """The first `n_sets` recipes applied to the toxic tweets of `pool`, each with its own seeded generator;
    every set has exactly `size` distinct texts."""
    toxic = [t for t in pool if t.label in (HATE, OFFENSIVE)]
    chosen = recipes()
    if not 1 <= n_sets <= len(chosen):
        raise ValueError(f"--sets {n_sets}: expected 1..{len(chosen)}")
    out = []
    for name, recipe, build in chosen[:n_sets]:
        members = build(toxic, size, random.Random(f"{seed}:{name}"))
        texts = {t.text for t in members}
        assert len(members) == size == len(texts), (name, len(members), len(texts))
        out.append(TweetSet(name, recipe, tuple(members)))
    return out


# ---------------------------------------------------------------------------------------------- statistics


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """AUPRC as average precision: the mean, over positives, of the precision at each positive's rank
    (tied scores form one threshold, as in scikit-learn's `average_precision_score`)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("average precision needs at least one positive")
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float((precision * recall_step).sum())


def correlation(x: ArrayLike, y: ArrayLike) -> dict[str, float | None]:
    """Spearman (ties share their mean rank) and Pearson r of x with y, with two-sided p-values;
    None where either side is constant (the correlation is undefined)."""
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) != len(b) or len(a) < 3:
        raise ValueError(f"correlation needs two equal-length series of >= 3 values, got {len(a)} and {len(b)}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": None, "spearman_p": None, "pearson": None, "pearson_p": None}
    rho, rho_p = stats.spearmanr(a, b)
    r, r_p = stats.pearsonr(a, b)
    return {"spearman": float(rho), "spearman_p": float(rho_p), "pearson": float(r), "pearson_p": float(r_p)}


def correlation_table(per_set: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each metric name, its correlation with each evaluation's mean AUPRC over the sets."""
    return {name: {ev: correlation([s["metrics"][name] for s in per_set], [s["auprc"][ev]["mean"] for s in per_set])
                   for ev in EVALS} for name in names}


def leave_one_out(per_set: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """For each metric, evaluation and statistic (spearman, pearson), the [min, max] over the sets with one set
    left out: how much a single set (say, one extreme near-duplicate set) carries the correlation. A statistic
    that is undefined in every subset gets an empty list."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        out[name] = {}
        for ev in EVALS:
            subsets = [correlation([s["metrics"][name] for k, s in enumerate(per_set) if k != i],
                                   [s["auprc"][ev]["mean"] for k, s in enumerate(per_set) if k != i])
                       for i in range(len(per_set))]
            out[name][ev] = {}
            for stat in ("spearman", "pearson"):
                defined = [x for x in (c[stat] for c in subsets) if x is not None]
                out[name][ev][stat] = [min(defined), max(defined)] if defined else []
    return out


def fac_targets(table: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Issue 11's targets per evaluation: FAC's Spearman >= 0.7 and above every baseline's and mean length's."""
    out = {}
    for ev in EVALS:
        fac = table["fac"][ev]["spearman"]
        others = [table[m][ev]["spearman"] for m in METRICS if m != "fac"]
        out[ev] = fac is not None and fac >= 0.7 and all(o is None or fac > o for o in others)
    return out


# ---------------------------------------------------------------------------------------------- detector


def train_and_score(positives: np.ndarray, negatives: np.ndarray, evals: dict[str, tuple[np.ndarray, np.ndarray]],
                    c: float = 1.0) -> dict[str, float]:
    """Logistic regression on (positives: 1, negatives: 0) embeddings; AUPRC on each evaluation."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]  # a sentence-transformers dep

    x = np.vstack([positives, negatives])  # (n_pos + n_neg, dim)
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    return {name: average_precision(labels, model.decision_function(feats)) for name, (feats, labels) in evals.items()}


class CachedEmbedder:
    """An embedder whose rows are kept per distinct text, in memory and, with `path`, in an .npz file across runs
    (the detectors and the embedding baseline embed the same ~11k texts whatever the feature space)."""

    def __init__(self, embedder: Any, path: Path | None = None) -> None:
        self.inner = embedder
        self.name: str = embedder.name
        self.dim: int = embedder.dim
        self.path = path
        self.rows: dict[str, np.ndarray] = {}
        self.n_new = 0
        if path is not None and path.exists():
            with np.load(path) as stored:
                self.rows = dict(zip(stored["keys"].tolist(), stored["rows"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim)
        keys = [self.key(t) for t in texts]
        new = list(dict.fromkeys((k, t) for k, t in zip(keys, texts, strict=True) if k not in self.rows))
        for start in range(0, len(new), 512):
            chunk = new[start : start + 512]
            self.rows.update(zip([k for k, _ in chunk], self.inner.embed([t for _, t in chunk]), strict=True))
        self.n_new += len(new)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.rows[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        """Write every row to `path` (when rows were added since loading)."""
        if self.path is None or not self.n_new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.rows)
        with open(self.path.with_suffix(".tmp.npz"), "wb") as handle:
            np.savez(handle, keys=np.array(keys), rows=np.stack([self.rows[k] for k in keys]))
        self.path.with_suffix(".tmp.npz").replace(self.path)


# ---------------------------------------------------------------------------------------------- run


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def format_tables(result: dict[str, Any]) -> str:
    """The per-set table and the correlation table, as markdown."""
    lines = ["| set | recipe | FAC | distinct-1 | distinct-2 | entropy-1 | entropy-2 | emb. cos. dist. | mean tokens "
             "| hate share | latents/text | AUPRC in-domain | AUPRC ToxiGen |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result["sets"]:
        m, a = s["metrics"], s["auprc"]
        lines.append(
            f"| {s['name']} | {s['recipe']} | {m['fac']:.3f} | {m['distinct_1']:.3f} | {m['distinct_2']:.3f} | "
            f"{m['entropy_1']:.2f} | {m['entropy_2']:.2f} | {m['embedding_cosine_distance']:.3f} | "
            f"{m['mean_tokens']:.1f} | {m['hate_share']:.2f} | {s['text_sparsity']:.1%} | "
            f"{a['in_domain']['mean']:.4f} ± {a['in_domain']['sd']:.4f} | "
            f"{a['out_of_domain']['mean']:.4f} ± {a['out_of_domain']['sd']:.4f} |")
    lines += ["", "In brackets: the range with any one set left out.", "",
              "| metric | Spearman in-domain | Pearson in-domain | Spearman ToxiGen | Pearson ToxiGen |",
              "|---|---:|---:|---:|---:|"]
    loo = result.get("leave_one_out", {})

    def cell(name: str, ev: str, stat: str) -> str:
        bounds = loo.get(name, {}).get(ev, {}).get(stat, [])
        value = _fmt(result["correlations"][name][ev][stat])
        return f"{value} ({bounds[0]:+.2f} to {bounds[1]:+.2f})" if bounds else value

    for name in result["correlations"]:
        label = f"{name} (diagnostic)" if name in DIAGNOSTICS else name
        cells = [cell(name, ev, stat) for ev in EVALS for stat in ("spearman", "pearson")]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    from fac.tools.cache_dir import default_cache_dir
    from fac.tools.catalog.build import load_catalog_file
    from fac.tools.catalog.tasks import get_task
    from fac.tools.coverage import measure_coverage
    from fac.tools.space.features import FeatureSpace
    from fac.tools.text.embeddings import default_embedder

    data = Path(args.data)
    pool, held_out = load_davidson(data)
    tox_texts, tox_labels = load_toxigen(data)
    sets = build_sets(pool, args.set_size, args.sets, args.set_seed)
    negative_pool = [t for t in pool if t.label == NEITHER]
    if len(negative_pool) < args.negatives:
        raise SystemExit(f"{len(negative_pool)} non-held-out class-2 tweets, --negatives {args.negatives} asked")
    print(f"pool {len(pool)} non-held-out tweets ({len(negative_pool)} neither); in-domain eval {len(held_out)} "
          f"held-out tweets ({sum(t.label != NEITHER for t in held_out)} toxic); ToxiGen {len(tox_texts)} lines "
          f"({sum(tox_labels)} hate); {len(sets)} sets of {args.set_size}", file=sys.stderr, flush=True)

    catalog_path = Path(args.catalog) if args.catalog else get_task("toxicity").catalog
    assert catalog_path is not None, "the toxicity task ships a catalog"
    catalog = load_catalog_file(catalog_path)
    space = FeatureSpace.load(args.model, args.sae, layer=args.layer, mode=args.mode, threshold=args.threshold,
                              device=args.device)
    cache_path = None if args.no_embedding_cache else default_cache_dir() / "bench" / "validity_minilm.npz"
    embedder = CachedEmbedder(default_embedder(), cache_path)
    embed = embedder.embed
    t_load = time.perf_counter() - started

    per_set: list[dict[str, Any]] = []
    t_fac = 0.0
    for tweet_set in sets:
        t0 = time.perf_counter()
        report = measure_coverage(space, tweet_set.texts, catalog, embedder=embedder, baseline_size=args.set_size,
                                  embedding_size=args.set_size)
        scores = space.score(tweet_set.texts)  # cache hits: the per-text latent counts for sparsity
        sparsity = float(np.mean([len(s.active(space.threshold)) for s in scores])) / space.d_sae
        t_fac += time.perf_counter() - t0
        metrics = {"fac": report.fac, **report.baselines, "mean_tokens": report.length["mean_tokens"],
                   "active_latents": report.n_active_features / space.d_sae, "hate_share": tweet_set.hate_share}
        per_set.append({"name": tweet_set.name, "recipe": tweet_set.recipe, "n": len(tweet_set.members),
                        "metrics": metrics, "text_sparsity": sparsity, "covered": len(report.covered),
                        "n_task_features": report.n_task_features, "r_length_active": report.length["r_length_active"],
                        "texts": tweet_set.texts})
        print(f"{tweet_set.name}: FAC {report.fac:.3f} ({len(report.covered)}/{report.n_task_features}), "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    evals = {"in_domain": (embed([t.text for t in held_out]), np.array([int(t.label != NEITHER) for t in held_out])),
             "out_of_domain": (embed(tox_texts), np.array(tox_labels))}
    negative_vectors = embed([t.text for t in negative_pool])
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in sets}
    for seed in range(args.seeds):
        chosen = np.random.default_rng(seed).choice(len(negative_pool), args.negatives, replace=False)
        for tweet_set in sets:
            scored = train_and_score(embed(tweet_set.texts), negative_vectors[chosen], evals, args.c)
            runs[tweet_set.name].append(scored)
    for entry in per_set:
        entry["auprc"] = {ev: {"mean": float(np.mean([r[ev] for r in runs[entry["name"]]])),
                               "sd": float(np.std([r[ev] for r in runs[entry["name"]]], ddof=1))
                               if args.seeds > 1 else 0.0,
                               "per_seed": [r[ev] for r in runs[entry["name"]]]} for ev in EVALS}
    t_detector = time.perf_counter() - t0
    embedder.save()

    variants = [evaluate_variant(spec, space, sets, per_set, measure_coverage, load_catalog_file)
                for spec in args.variant]
    table = correlation_table(per_set, (*METRICS, *DIAGNOSTICS))
    loo = leave_one_out(per_set, (*METRICS, *DIAGNOSTICS))
    per_seed_fac = {ev: [correlation([s["metrics"]["fac"] for s in per_set],
                                     [s["auprc"][ev]["per_seed"][k] for s in per_set])["spearman"]
                         for k in range(args.seeds)] for ev in EVALS}
    facs = [s["metrics"]["fac"] for s in per_set]
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": "bench/fac_validity.py " + " ".join(sys.argv[1:]),
        "space": space.describe(),
        "catalog": {"path": _display(catalog_path), "task": catalog.task, "method": catalog.method,
                    "n_task_features": len(catalog.task_features())},
        "config": {"set_size": args.set_size, "sets": args.sets, "seeds": args.seeds, "negatives": args.negatives,
                   "c": args.c, "set_seed": args.set_seed, "embedder": embedder.name},
        "data": {"pool": len(pool), "negative_pool": len(negative_pool), "in_domain": len(held_out),
                 "in_domain_toxic": sum(t.label != NEITHER for t in held_out), "out_of_domain": len(tox_texts),
                 "out_of_domain_hate": sum(tox_labels)},
        "fac_range": [min(facs), max(facs)],
        "text_sparsity_mean": float(np.mean([s["text_sparsity"] for s in per_set])),
        "sets": per_set,
        "correlations": table,
        "leave_one_out": loo,
        "fac_spearman_per_seed": per_seed_fac,
        "targets_met": fac_targets(table),
        "variants": variants,
        "seconds": {"load": round(t_load, 1), "fac_and_baselines": round(t_fac, 1), "detectors": round(t_detector, 1),
                    "total": round(time.perf_counter() - started, 1)},
    }


def evaluate_variant(spec: str, space: Any, sets: Sequence[TweetSet], per_set: Sequence[dict[str, Any]],
                     measure: Callable[..., Any], load_catalog: Callable[[Path], Any]) -> dict[str, Any]:
    """FAC of every set under another catalog and/or floor ρ (`NAME=CATALOG[@RHO|@raw]`), against the same
    detectors: the sets' AUPRCs do not depend on the feature space, so a lever costs only cached scoring."""
    import dataclasses

    name, _, rest = spec.partition("=")
    path_text, _, rho = rest.partition("@")
    if not name or not path_text:
        raise SystemExit(f"--variant {spec!r}: expected NAME=CATALOG[@RHO|@raw]")
    variant_space = space
    if rho == "raw":
        variant_space = dataclasses.replace(space, floors=None)
    elif rho:
        if space.floors is None:
            raise SystemExit(f"--variant {spec!r}: the SAE has no feature floors to scale (fac sae calibrate)")
        variant_space = dataclasses.replace(space, floors=space.floors.with_relative(float(rho)))
    catalog = load_catalog(Path(path_text))
    facs, sparsity = [], []
    for tweet_set in sets:
        report = measure(variant_space, tweet_set.texts, catalog, baselines=False)
        facs.append(report.fac)
        sparsity.append(report.text_sparsity)
    rows = [{**s, "metrics": {**s["metrics"], "fac": f}} for s, f in zip(per_set, facs, strict=True)]
    table = correlation_table(rows, ("fac", *(m for m in METRICS if m != "fac")))
    print(f"variant {name}: FAC {min(facs):.3f}-{max(facs):.3f}, Spearman in-domain "
          f"{_fmt(table['fac']['in_domain']['spearman'])}, ToxiGen {_fmt(table['fac']['out_of_domain']['spearman'])}",
          file=sys.stderr, flush=True)
    return {"name": name, "catalog": _display(Path(path_text)), "floors": variant_space.describe().get("floors"),
            "n_task_features": len(catalog.task_features()), "fac": facs, "fac_range": [min(facs), max(facs)],
            "text_sparsity_mean": float(np.mean(sparsity)), "text_sparsity_median": float(np.median(sparsity)),
            "correlation": table["fac"], "targets_met": fac_targets(table)}


def format_variants(result: dict[str, Any]) -> str:
    """One row per lever: its FAC range, sparsity and FAC's correlations with the detectors' AUPRC."""
    lines = ["| variant | floors | task features | FAC range | latents/text | Spearman in-domain | Pearson in-domain "
             "| Spearman ToxiGen | Pearson ToxiGen |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for v in result.get("variants", []):
        c = v["correlation"]
        lines.append(f"| {v['name']} | {v['floors'] or 'none'} | {v['n_task_features']} | {v['fac_range'][0]:.3f}-"
                     f"{v['fac_range'][1]:.3f} | {v['text_sparsity_mean']:.1%} | {_fmt(c['in_domain']['spearman'])} | "
                     f"{_fmt(c['in_domain']['pearson'])} | {_fmt(c['out_of_domain']['spearman'])} | "
                     f"{_fmt(c['out_of_domain']['pearson'])} |")
    return "\n".join(lines)


def _display(path: Path) -> str:
    """A path relative to the repository when inside it (no machine paths in results), else its name."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set-size", type=int, default=150, help="texts per set (100-200 in issue 11)")
    parser.add_argument("--sets", type=int, default=len(recipes()), help="how many of the recipes to run, in order")
    parser.add_argument("--seeds", type=int, default=5, help="detector seeds (each draws its own negatives)")
    parser.add_argument("--negatives", type=int, default=1000, help="non-toxic tweets per detector")
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--set-seed", type=int, default=0, help="seed of the set builders")
    parser.add_argument("--out", default=str(ROOT / "bench" / "runs" / "fac_validity.json"), help="result JSON")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument("--catalog", default=None, help="catalog file (default: the shipped toxicity catalog)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--sae", default="default")
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--mode", default="sae", choices=("sae", "paper"))
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=CATALOG[@RHO|@raw]",
                        help="also measure FAC with this catalog (and floor ρ, or raw TopK) against the same detectors")
    parser.add_argument("--no-embedding-cache", action="store_true",
                        help="do not keep MiniLM embeddings in $FAC_CACHE_DIR/bench/validity_minilm.npz")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(format_tables(result))
    if result["variants"]:
        print("\n" + format_variants(result))
    seeds = "; ".join(f"{ev} {min(v):+.2f} to {max(v):+.2f}" for ev, v in result["fac_spearman_per_seed"].items()
                      if None not in v)
    print(f"\nFAC's Spearman per detector seed: {seeds or 'undefined'}")
    print(f"FAC range {result['fac_range'][0]:.3f}-{result['fac_range'][1]:.3f}; latents per text "
          f"{result['text_sparsity_mean']:.1%} of {result['space']['d_sae']}; targets met: {result['targets_met']}; "
          f"{result['seconds']['total']:.0f} s; JSON in {out}")


if __name__ == "__main__":
    main()
