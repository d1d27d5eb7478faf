"""Scoring, coverage, catalogs and SAE activations on a local 2-CPU Ray cluster equal the single-process path.

Marked `ray` (about 40 s: a Ray start and two actor pools): `pytest -m ray`, after `pip install 'fac[ray]'`.
The tiny model and SAE are saved to disk so that each actor loads its own copy from the same SpaceSpec.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_LAYER, make_lm, make_sae, make_tokenizer

from fac.api import SpaceSpec
from fac.tools.catalog.build import build_catalog
from fac.tools.catalog.contrast import ContrastConfig
from fac.tools.catalog.evidence import chunked
from fac.tools.catalog.tasks import TaskSpec
from fac.tools.coverage import measure_coverage
from fac.tools.space.features import FeatureSpace, SampleScores
from fac.tools.space.ray_pool import RayOptions
from fac.tools.space.ray_scoring import RayActivations, ReaderSpec, with_ray
from fac.tools.space.sae_training import collect_activations
from fac.tools.space.score_cache import ScoreCache

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

WORDS = "the a cat dog sat ran on mat red blue fast slow and is hate love kill kind people bad good".split()


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))) for _ in range(n)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    for attempt in range(3):  # Ray waits 30 s for its raylet, which a loaded 2-core machine can exceed
        try:
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 << 20, log_to_driver=False,
                     logging_level="WARNING")
            break
        except Exception as err:
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(err):
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> SpaceSpec:
    root = tmp_path_factory.mktemp("tiny")
    make_lm().save_pretrained(root / "model")
    make_tokenizer().save_pretrained(root / "model")
    make_sae().save_model(root / "sae")
    return SpaceSpec(str(root / "model"), str(root / "sae"), device="cpu", dtype="float32", max_tokens=64,
                     use_cache=False)


def local_space(spec: SpaceSpec, cache: Path | None) -> FeatureSpace:
    loaded = spec.load()
    return replace(loaded, cache=ScoreCache(cache) if cache else None)


def same(a: SampleScores, b: SampleScores) -> bool:
    return (a.text == b.text and a.n_tokens == b.n_tokens and a.truncated == b.truncated
            and all(np.array_equal(x, y) for x, y in ((a.feature_ids, b.feature_ids), (a.scores, b.scores),
                                                        (a.span_starts, b.span_starts), (a.span_ends, b.span_ends))))


def test_ray_scores_equal_local_scores_and_fill_the_drivers_cache(cluster: None, spec: SpaceSpec,
                                                                  tmp_path: Path) -> None:
    texts = corpus(60, 0) + corpus(5, 0)  # repeats inside and across chunks
    local = local_space(spec, tmp_path / "local.sqlite")
    expected = [s for chunk in chunked(texts, 16) for s in local.score(chunk)]
    remote = with_ray(local_space(spec, tmp_path / "ray.sqlite"), spec, RayOptions(actors=2))
    progress: list[int] = []
    got = [s for scored in remote.score_chunks(chunked(texts, 16), on_batch=progress.append) for s in scored]
    assert len(got) == len(expected) == len(texts) and all(same(a, b) for a, b in zip(got, expected, strict=True))
    assert sum(progress) == len(texts)
    assert remote.cache is not None and remote.cache.count(remote.score_key) == len(set(texts))
    # the rows the Ray run wrote are the local run's rows: a local space on that cache scores nothing anew
    reread, calls = local_space(spec, tmp_path / "ray.sqlite"), list[int]()
    again = reread.score(texts[:20], on_batch=calls.append)
    assert calls == [20] and all(same(a, b) for a, b in zip(again, expected[:20], strict=True))  # all from cache


def test_ray_skips_texts_already_in_the_cache(cluster: None, spec: SpaceSpec, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    texts = corpus(30, 1)
    cache = tmp_path / "shared.sqlite"
    local = local_space(spec, cache)
    local.score(texts[:10])  # a local run scored the first ten
    sent: list[int] = []
    from fac.tools.space import ray_scoring

    real = ray_scoring.ordered_map

    def counting(build: Any, units: Any, options: Any, in_flight: Any = None) -> Any:
        def record() -> Iterator[Any]:
            for unit in units:
                sent.append(len(unit))
                yield unit

        return real(build, record(), options, in_flight)

    monkeypatch.setattr(ray_scoring, "ordered_map", counting)
    remote = with_ray(local_space(spec, cache), spec, RayOptions(actors=1))
    got = [s for scored in remote.score_chunks(chunked(texts, 10)) for s in scored]
    assert sent == [0, 10, 10]  # the cached chunk travels empty
    fresh = local_space(spec, None)
    assert all(same(a, b) for a, b in zip(got, [s for c in chunked(texts, 10) for s in fresh.score(c)], strict=True))


def test_coverage_and_catalog_on_ray_equal_the_single_process_path(cluster: None, spec: SpaceSpec,
                                                                   tmp_path: Path) -> None:
    anchor, background = tmp_path / "anchor.txt", tmp_path / "background.txt"
    seed = [" ".join(random.Random(n).choices(["the", "cat", "sat", "on", "mat", "dog"], k=4)) for n in range(6)]
    anchor.write_text("\n".join(t + " hate kill bad" for t in corpus(40, 3)) + "\n")
    background.write_text("\n".join(corpus(40, 4)) + "\n")
    task = TaskSpec("toxicity", "Toxic text.", anchor=anchor, background=background)
    config = ContrastConfig(min_positive=3)
    local = local_space(spec, None)
    remote = with_ray(local_space(spec, None), spec, RayOptions(actors=2))
    expected = build_catalog(local, task, contrast_config=config, chunk_size=8)
    got = build_catalog(remote, task, contrast_config=config, chunk_size=8)
    assert expected.task_features() and got.records == expected.records
    want = measure_coverage(local, iter(seed), expected, baselines=False, chunk_size=8)
    have = measure_coverage(remote, iter(seed), expected, baselines=False, chunk_size=8)
    assert want.covered and want.missing  # a calm seed covers some toxic-task features, not all
    assert (have.fac, have.covered, have.missing, have.counts) == (want.fac, want.covered, want.missing, want.counts)
    assert have.seed_spans == want.seed_spans and have.length == want.length


def test_sae_activations_on_ray_equal_the_single_process_tensor(cluster: None, spec: SpaceSpec) -> None:
    texts = corpus(50, 6)
    reader_spec = ReaderSpec(spec.model, TINY_LAYER, max_tokens=64, device="cpu", dtype="float32")
    reader, _ = reader_spec.load()
    reader = replace(reader, token_budget=96)  # several forward batches
    expected = collect_activations(reader, texts)
    got = collect_activations(reader, texts, remote=RayActivations(reader_spec, RayOptions(actors=2)))
    assert expected.shape[0] == sum(len(reader.tokenize(t).content_positions) for t in texts)
    assert torch.equal(got, expected)


def test_a_failing_actor_surfaces_on_the_driver(cluster: None, spec: SpaceSpec, tmp_path: Path) -> None:
    bad = replace(spec, sae=str(tmp_path / "no-such-sae"))
    remote = with_ray(local_space(spec, None), bad, RayOptions(actors=1))
    with pytest.raises(Exception, match="no-such-sae"):
        list(remote.score_chunks(chunked(corpus(4, 7), 2)))


def test_fac_coverage_with_ray_prints_the_same_report(cluster: None, spec: SpaceSpec, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from conftest import run_cli

    anchor, background, seed = tmp_path / "anchor.txt", tmp_path / "background.txt", tmp_path / "seed.txt"
    anchor.write_text("\n".join(t + " hate kill bad" for t in corpus(30, 8)) + "\n")
    background.write_text("\n".join(corpus(30, 9)) + "\n")
    seed.write_text("\n".join(corpus(12, 10)) + "\n")
    catalog = build_catalog(local_space(spec, None), TaskSpec("toxicity", "Toxic text.", anchor=anchor,
                                                              background=background),
                            contrast_config=ContrastConfig(min_positive=3))
    catalog.save_json(tmp_path / "catalog.json")
    common = ["coverage", str(seed), "--task", "toxicity", "--catalog", str(tmp_path / "catalog.json"),
              "--model", spec.model, "--sae", spec.sae, "--device", "cpu", "--dtype", "float32", "--max-tokens",
              "64", "--embedder", "none", "--chunk-size", "4", "--json", "--no-cache"]
    reports = []
    for extra in ([], ["--ray", "--ray-actors", "2"]):
        code, out, err = run_cli([*common, *extra], capsys, monkeypatch)
        assert code == 0, err
        report = json.loads(out)
        report.pop("seconds")
        reports.append(report)
    assert reports[0]["n_samples"] == 12 and reports[0] == reports[1]


def test_fac_sae_activations_with_ray_equal_the_single_process_ones(cluster: None, spec: SpaceSpec,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.commands.sae import _corpus_activations

    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus(40, 11)) + "\n")
    runs = []
    for name, options in (("local", None), ("ray", RayOptions(actors=2))):
        monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / name))  # no reuse of the other run's tensor
        runs.append(_corpus_activations(corpus_file, None, spec.model, TINY_LAYER, None, 64, 0.2, 0, "cpu",
                                        dtype="float32", ray=options))
    assert runs[0].train.shape[0] > 0 and runs[0].held.shape[0] > 0
    assert torch.equal(runs[0].train, runs[1].train) and torch.equal(runs[0].held, runs[1].held)
