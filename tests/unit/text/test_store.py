"""SampleStore: explicit embeddings only, cosine nearest neighbours, idempotent upserts, embedder checks."""

from __future__ import annotations

import math
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.utils.embedding_functions import DefaultEmbeddingFunction

from fac.tools.errors import ConfigError
from fac.tools.text.embeddings import HashingEmbedder
from fac.tools.text.store import SampleStore, chroma_client

TEXTS = ["the cat sat on the mat", "a dog ran home fast", "quarterly revenue grew four percent"]


@pytest.fixture(autouse=True)
def _no_default_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's default embedding function downloads a model: any call to it fails the test."""

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError("chroma's default embedding function was called")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse)


def test_empty_store_has_no_nearest_neighbour(tmp_path: Path) -> None:
    store = SampleStore(chromadb.PersistentClient(path=str(tmp_path)), "seed", HashingEmbedder())
    assert store.count() == 0
    assert store.nearest(["anything", "else"]) == [(None, math.inf), (None, math.inf)]


def test_nearest_returns_the_closest_id_with_its_cosine_distance(tmp_path: Path) -> None:
    emb = HashingEmbedder()
    store = SampleStore(chromadb.PersistentClient(path=str(tmp_path)), "seed", emb)
    store.add(["cat", "dog", "money"], TEXTS)
    queries = ["the cat sat on a mat", "revenue grew by four percent"]
    found = store.nearest(queries)
    assert [i for i, _ in found] == ["cat", "money"]
    q, t = emb.embed(queries), emb.embed([TEXTS[0], TEXTS[2]])
    expected = 1.0 - (q * t).sum(axis=1)
    np.testing.assert_allclose([d for _, d in found], expected, atol=1e-4)
    assert store.nearest([TEXTS[1]])[0][1] == pytest.approx(0.0, abs=1e-4)


def test_add_is_an_idempotent_upsert(tmp_path: Path) -> None:
    store = SampleStore(chromadb.PersistentClient(path=str(tmp_path)), "seed", HashingEmbedder())
    store.add(["a", "b"], TEXTS[:2], [{"feature": 3}, None])
    store.add(["a", "b"], TEXTS[:2], [{"feature": 3}, None])
    assert store.count() == 2
    store.add(["a"], ["replaced text"], [{"feature": 5}])
    got = store.get(["b", "a", "unknown"])
    assert [(s.id, s.text, s.metadata) for s in got] == [("b", TEXTS[1], {}), ("a", "replaced text", {"feature": 5})]


def test_add_rejects_mismatched_lengths_and_duplicate_ids(tmp_path: Path) -> None:
    store = SampleStore(chromadb.PersistentClient(path=str(tmp_path)), "seed", HashingEmbedder())
    with pytest.raises(ValueError, match="lengths"):
        store.add(["a", "b"], TEXTS[:1])
    with pytest.raises(ValueError, match="duplicate"):
        store.add(["a", "a"], TEXTS[:2])
    assert store.count() == 0


def test_reused_embeddings_are_stored_as_given(tmp_path: Path) -> None:
    emb = HashingEmbedder(dim=32)
    store = SampleStore(chromadb.PersistentClient(path=str(tmp_path)), "seed", emb)
    vectors = emb.embed(TEXTS)
    store.add(["x", "y", "z"], TEXTS, embeddings=vectors)
    assert [i for i, _ in store.nearest_vectors(vectors)] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="shape"):
        store.add(["w"], ["w"], embeddings=vectors)


def test_collection_records_embedder_and_cosine_space_and_persists(tmp_path: Path) -> None:
    emb = HashingEmbedder(dim=48)
    SampleStore(chroma_client(tmp_path), "seed", emb).add(["a"], TEXTS[:1])
    reopened = SampleStore(chroma_client(tmp_path), "seed", HashingEmbedder(dim=48))
    assert reopened.count() == 1
    meta = reopened.collection.metadata
    assert meta["hnsw:space"] == "cosine" and meta["fac:embedder"] == emb.name and meta["fac:dim"] == 48


def test_reopening_with_another_embedder_is_refused(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path))
    SampleStore(client, "seed", HashingEmbedder(dim=64)).add(["a"], TEXTS[:1])
    with pytest.raises(ConfigError, match="dim 64"):
        SampleStore(client, "seed", HashingEmbedder(dim=32))
    with pytest.raises(ConfigError, match="hashing-char2-4"):
        SampleStore(client, "seed", HashingEmbedder(dim=64, ngram=(2, 4)))


def test_a_non_empty_foreign_collection_without_our_metadata_is_refused(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path))
    foreign = client.get_or_create_collection("other", embedding_function=None)
    foreign.add(ids=["a"], embeddings=[[1.0, 0.0]], documents=["x"])
    with pytest.raises(ConfigError, match="'other'"):
        SampleStore(client, "other", HashingEmbedder(dim=2))


def test_chroma_client_refuses_both_a_path_and_a_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        chroma_client(tmp_path, host="localhost")
