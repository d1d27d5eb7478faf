"""The pure parts of bench/fac_validity.py: set builders, near copies, AUPRC, correlations, the target check."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "fac_validity.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fac_validity", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fac_validity"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


v = _load()
FILLERS = "you are so bad today and tomorrow lol real talk why not go home now please".split()


def tiny_pool(n: int = 400) -> list[object]:
    """Tweets of every kind the recipes look for: both toxic labels, neither, keywords, RTs, short and long."""
    rng = random.Random(0)
    keywords = ["bitch", "hoes", "faggot", "white", "trash"]
    pool = []
    for i in range(n):
        words = [*rng.choices(FILLERS, k=rng.randint(2, 30)), keywords[i % len(keywords)], f"w{i}"]
        text = ("RT @user: " if i % 3 == 0 else "") + " ".join(words)
        pool.append(v.Tweet(str(i), text, [0, 1, 1, 2][i % 4]))
    return pool


def test_every_recipe_gives_a_set_of_exactly_the_size_with_distinct_texts_and_only_toxic_tweets() -> None:
    sets = v.build_sets(tiny_pool(), size=20, n_sets=len(v.recipes()))
    assert [s.name for s in sets] == [name for name, _, _ in v.recipes()]
    for s in sets:
        assert len(s.members) == 20 == len(set(s.texts)), s.name
        assert all(t.label in (v.HATE, v.OFFENSIVE) for t in s.members), s.name


def test_sets_are_reproducible_for_a_seed_and_differ_between_seeds() -> None:
    pool = tiny_pool()
    first, again, other = (v.build_sets(pool, 20, 3, seed) for seed in (0, 0, 1))
    assert [s.texts for s in first] == [s.texts for s in again]
    assert [s.texts for s in first] != [s.texts for s in other]


def test_label_and_keyword_recipes_keep_what_they_name() -> None:
    by_name = {s.name: s for s in v.build_sets(tiny_pool(), 20, len(v.recipes()))}
    assert by_name["hate_only"].hate_share == 1.0
    assert by_name["offensive_only"].hate_share == 0.0
    assert by_name["half_hate"].hate_share == 0.5
    assert all("bitch" in t for t in by_name["kw_bitch"].texts)
    assert all(t.startswith("RT @") for t in by_name["retweets_only"].texts)
    short = max(len(t.split()) for t in by_name["short_only"].texts)
    long = min(len(t.split()) for t in by_name["long_only"].texts)
    assert short < long


def test_near_duplicates_are_few_sources_and_their_close_distinct_copies() -> None:
    rng = random.Random(3)
    sources = [v.Tweet(str(i), f"tweet number {i} is about the dog and the cat", 1) for i in range(3)]
    out = v.near_duplicates(sources, 10, rng)
    assert len(out) == 10 == len({t.text for t in out})
    assert [t.row for t in out].count("0") == 4 and [t.row for t in out].count("2") == 3
    for t in out:
        source = sources[int(t.row)].text.lower().split()
        kept = sum(w.strip("!?.") in source for w in t.text.lower().split())
        assert kept >= len(source) - 4  # at most two edits


def test_draw_names_the_recipe_when_candidates_run_short() -> None:
    with pytest.raises(ValueError, match=r"kw_x.*3 candidate"):
        v.draw(tiny_pool(3), 5, random.Random(0), "kw_x")


def test_normalisation_and_filter_follow_the_corpus_recipe() -> None:
    assert v.normalise_tweet("a &amp; b\n  c") == "a & b c"
    assert not v.keeps_text("too short")
    assert not v.keeps_text("ééééééééééé ok")
    assert v.keeps_text("long enough text")


def test_average_precision_matches_the_definition_with_ties() -> None:
    from sklearn.metrics import average_precision_score  # type: ignore[import-untyped]

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[0] = 1
        s = rng.integers(0, 8, 60).astype(float)  # many ties
        assert v.average_precision(y, s) == pytest.approx(average_precision_score(y, s))
    assert v.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="positive"):
        v.average_precision([0, 0], [0.1, 0.2])


def test_correlation_is_rank_based_for_spearman_and_undefined_for_a_constant_series() -> None:
    out = v.correlation([1, 2, 3, 4], [1, 8, 27, 1000])
    assert out["spearman"] == pytest.approx(1.0)
    assert out["pearson"] is not None and out["pearson"] < 1.0
    assert v.correlation([1, 1, 1, 1], [1, 2, 3, 4])["spearman"] is None
    assert v.correlation([2, 1, 1, 3], [4, 2, 2, 5])["spearman"] == pytest.approx(1.0)  # tied ranks


Table = dict[str, dict[str, dict[str, float | None]]]


def _table(fac: float, best_other: float) -> Table:
    row: dict[str, dict[str, float | None]] = {ev: {"spearman": best_other} for ev in v.EVALS}
    table: Table = {m: row for m in v.METRICS}
    table["fac"] = {ev: {"spearman": fac} for ev in v.EVALS}
    table["embedding_cosine_distance"] = {ev: {"spearman": None} for ev in v.EVALS}
    return table


def test_targets_need_fac_at_0_7_and_above_every_other_metric() -> None:
    assert v.fac_targets(_table(0.8, 0.5)) == {"in_domain": True, "out_of_domain": True}
    assert v.fac_targets(_table(0.6, 0.1)) == {"in_domain": False, "out_of_domain": False}
    assert v.fac_targets(_table(0.8, 0.85)) == {"in_domain": False, "out_of_domain": False}


def test_correlation_table_and_markdown_cover_every_metric() -> None:
    rng = np.random.default_rng(1)
    per_set = []
    for i in range(5):
        metrics = {m: float(rng.random()) for m in (*v.METRICS, *v.DIAGNOSTICS)}
        auprc = {ev: {"mean": float(rng.random()), "sd": 0.01} for ev in v.EVALS}
        per_set.append({"name": f"s{i}", "recipe": "r", "metrics": metrics, "auprc": auprc, "text_sparsity": 0.2})
    table = v.correlation_table(per_set, (*v.METRICS, *v.DIAGNOSTICS))
    text = v.format_tables({"sets": per_set, "correlations": table})
    assert set(table) == {*v.METRICS, *v.DIAGNOSTICS}
    assert text.count("\n| s") == 5 and "hate_share (diagnostic)" in text


def test_leave_one_out_shows_a_correlation_carried_by_one_set() -> None:
    fac = [0.5, 0.99, 0.99, 0.99, 0.99]  # one outlier set gives FAC all its rank information
    auprc = [0.1, 0.5, 0.6, 0.4, 0.7]
    per_set = [{"metrics": {"fac": f}, "auprc": {ev: {"mean": a} for ev in v.EVALS}} for f, a in zip(fac, auprc,
                                                                                                    strict=True)]
    out = v.leave_one_out(per_set, ["fac"])
    assert out["fac"]["in_domain"]["spearman"][1] > 0.5  # with the outlier kept
    assert v.correlation(fac[1:], auprc[1:])["spearman"] is None  # without it FAC is constant: undefined, skipped


class CountingEmbedder:
    """The hashing embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        from fac.tools.text.embeddings import HashingEmbedder

        self.inner = HashingEmbedder(dim=16)
        self.name, self.dim, self.calls = self.inner.name, self.inner.dim, 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return self.inner.embed(texts)


def test_cached_embedder_embeds_each_text_once_and_reloads_its_rows_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "rows.npz"
    first = v.CachedEmbedder(CountingEmbedder(), path)
    rows = first.embed(["a cat", "a dog", "a cat"])
    assert rows.shape == (3, 16) and first.inner.calls == 2
    np.testing.assert_array_equal(rows[0], rows[2])
    first.save()
    again = v.CachedEmbedder(CountingEmbedder(), path)
    np.testing.assert_array_equal(again.embed(["a dog", "a cat"]), rows[[1, 0]])
    assert again.inner.calls == 0 and again.embed([]).shape == (0, 16)


def test_a_variant_rescores_fac_under_its_floors_and_catalog_against_the_same_detectors(tmp_path: Path) -> None:
    import dataclasses
    from types import SimpleNamespace

    from fac.tools.space.floors import FeatureFloors

    @dataclasses.dataclass(frozen=True)
    class Space:
        floors: FeatureFloors | None

        def describe(self) -> dict[str, object]:
            return {"floors": self.floors.identity} if self.floors else {}

    seen: list[object] = []

    def measure(space: Space, texts: list[str], catalog: object, baselines: bool) -> object:
        seen.append((space.floors.relative if space.floors else None, baselines))
        return SimpleNamespace(fac=len(texts[0]) / 10, text_sparsity=0.01)

    sets = [SimpleNamespace(texts=["x" * n]) for n in (1, 2, 3, 4)]
    per_set = [{"metrics": {m: float(i) for m in v.METRICS}, "auprc": {ev: {"mean": 0.5 + i / 10} for ev in v.EVALS}}
               for i in range(4)]
    space = Space(FeatureFloors(np.ones(3, dtype=np.float32), 0.5))
    catalog = SimpleNamespace(task_features=lambda: [1, 2])
    result = v.evaluate_variant("hate=cat.json@0.25", space, sets, per_set, measure, lambda _p: catalog)
    assert seen == [(0.25, False)] * 4  # the lever's ρ, no baselines recomputed
    assert result["fac"] == [0.1, 0.2, 0.3, 0.4] and result["correlation"]["in_domain"]["spearman"] == pytest.approx(1)
    assert result["floors"].startswith("rho=0.25@") and result["n_task_features"] == 2
    raw = v.evaluate_variant("raw=cat.json@raw", space, sets, per_set, measure, lambda _p: catalog)
    assert raw["floors"] is None and seen[-1] == (None, False)
    assert "| hate | rho=0.25@" in v.format_variants({"variants": [result]})
    with pytest.raises(SystemExit, match="NAME=CATALOG"):
        v.evaluate_variant("nameonly", space, sets, per_set, measure, lambda _p: catalog)
