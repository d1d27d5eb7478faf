"""Catalog persistence: chroma round trip with explicit embeddings, replacement, search; JSON and parquet exports."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest

from fac.tools.catalog.build import load_catalog_file
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.catalog.store import CatalogStore, collection_name, default_chroma_dir, feature_document
from fac.tools.errors import InputError
from fac.tools.text.embeddings import HashingEmbedder

SPACE = {"model": "tiny-llama", "layer": 1, "sae": "tiny-sae", "mode": "sae", "threshold": 0.0, "d_sae": 128}
KEY = "0123456789abcdef01234567"


def make_catalog(n: int = 4, task: str = "toxicity") -> Catalog:
    records = []
    for j in range(n):
        evidence = tuple(FeatureEvidence(score=2.0 - i / 10, span=f"span {j}-{i} kill", sample=f"sample {j} {i}")
                         for i in range(3)) if j % 2 == 0 else ()
        records.append(FeatureRecord(
            feature=j * 7, relevant=j % 2 == 0, decision="Yes" if j == 2 else None, reason=f"reason {j}",
            explanation="insults aimed at people" if j == 2 else None, activation_rate=j / 10, evidence=evidence,
            method="contrast", stats={"log_odds": 1.5 + j, "q_value": 1e-3}))
    return Catalog(task=task, method="contrast", space=SPACE, anchor="a.jsonl vs b.jsonl", records=tuple(records))


@pytest.fixture()
def store(tmp_path: Path) -> CatalogStore:
    return CatalogStore(chromadb.PersistentClient(path=str(tmp_path / "chroma")), HashingEmbedder(64))


def test_a_catalog_survives_a_chroma_round_trip(store: CatalogStore) -> None:
    catalog = make_catalog()
    name = store.save(catalog, KEY)
    assert name == collection_name("toxicity", KEY)
    reopened = CatalogStore(store.client)  # no embedder: loading never embeds
    assert reopened.load("toxicity", KEY) == catalog
    assert reopened.load("toxicity", "f" * 24) is None
    assert reopened.load("helpfulness", KEY) is None


def test_the_collection_records_space_method_and_embedder(store: CatalogStore) -> None:
    store.save(make_catalog(), KEY)
    collection = store.client.get_or_create_collection(collection_name("toxicity", KEY), embedding_function=None)
    meta = collection.metadata or {}
    assert meta["hnsw:space"] == "cosine" and meta["fac:embedder"] == HashingEmbedder(64).name
    assert (meta["fac:model"], meta["fac:layer"], meta["fac:sae"], meta["fac:method"]) == (
        "tiny-llama", 1, "tiny-sae", "contrast")
    got = collection.get(ids=["f14"], include=["embeddings", "documents", "metadatas"])
    assert got["documents"] == ["insults aimed at people"]  # the explanation is what gets embedded
    assert len(got["embeddings"][0]) == 64
    assert got["metadatas"][0]["relevant"] is True and got["metadatas"][0]["decision"] == "Yes"


def test_saving_again_replaces_the_catalog_and_leaves_no_temporary_collection(store: CatalogStore) -> None:
    store.save(make_catalog(6), KEY)
    store.save(make_catalog(2), KEY)
    assert store.load("toxicity", KEY) == make_catalog(2)
    found = store.find("toxicity")
    assert [(f.space_key, f.n_records, f.space["layer"]) for f in found] == [(KEY, 2, 1)]
    assert not [c.name for c in store.client.list_collections() if c.name.endswith("-tmp")]


def test_catalogs_of_two_spaces_are_kept_apart(store: CatalogStore) -> None:
    store.save(make_catalog(2), KEY)
    store.save(make_catalog(4), "f" * 24)
    assert sorted(f.n_records for f in store.find("toxicity")) == [2, 4]
    assert store.delete("toxicity", KEY) and not store.delete("toxicity", KEY)
    assert [f.space_key for f in store.find("toxicity")] == ["f" * 24]


def test_search_finds_features_by_meaning_of_their_document(store: CatalogStore) -> None:
    catalog = make_catalog()
    store.save(catalog, KEY)
    assert store.search("toxicity", KEY, "insults aimed at people", n=2)[0][0] == 14
    spans_of_0 = feature_document(catalog.record(0))
    assert spans_of_0.startswith("span 0-0 kill |")
    hits = store.search("toxicity", KEY, spans_of_0, n=4, relevant_only=True)
    assert hits[0] == (0, pytest.approx(0.0, abs=1e-5)) and {f for f, _ in hits} <= {0, 14}


def test_json_and_parquet_exports_round_trip(tmp_path: Path) -> None:
    catalog = make_catalog()
    catalog.save_json(tmp_path / "c.json")
    catalog.save_parquet(tmp_path / "c.parquet")
    assert load_catalog_file(tmp_path / "c.json") == catalog
    assert load_catalog_file(tmp_path / "c.parquet") == catalog
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "c.parquet")
    assert table.num_rows == 4 and table.column("relevant").to_pylist() == [True, False, True, False]


def test_a_gzipped_json_catalog_round_trips_with_reproducible_bytes(tmp_path: Path) -> None:
    import gzip

    catalog = make_catalog()
    catalog.save_json(tmp_path / "c.json.gz")
    first = (tmp_path / "c.json.gz").read_bytes()
    assert gzip.decompress(first).decode("utf-8") == catalog.model_dump_json(indent=1)
    assert load_catalog_file(tmp_path / "c.json.gz") == catalog
    catalog.save_json(tmp_path / "c.json.gz")
    assert (tmp_path / "c.json.gz").read_bytes() == first  # no timestamp: a rebuild diffs only on content
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"bad.json.gz: not a fac catalog"):
        load_catalog_file(tmp_path / "bad.json.gz")


def test_a_file_that_is_not_a_catalog_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(InputError, match="not a fac catalog"):
        load_catalog_file(tmp_path / "other.parquet")
    (tmp_path / "bad.json").write_text('{"task": 1}')
    with pytest.raises(InputError, match="not a fac catalog"):
        load_catalog_file(tmp_path / "bad.json")


def test_the_default_chroma_directory_follows_fac_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path))
    assert default_chroma_dir() == tmp_path / "chroma"
