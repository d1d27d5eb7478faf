"""Catalogs in chromadb: one collection per (task, feature space), one item per feature record.

The collection's metadata holds the task, method, anchor and feature-space fields; each item holds
the record as JSON plus filterable fields (feature, relevant, decision, activation rate) and an
explicit embedding of the feature's explanation, or of its top spans when it has none, so features
can be searched by meaning. A save builds a temporary collection and renames it over the old one, so
an interrupted save never leaves half a catalog under the real name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fac.tools.catalog.records import Catalog, FeatureRecord
from fac.tools.errors import ConfigError, ParseError
from fac.tools.text.embeddings import Embedder
from fac.tools.text.store import DIM_KEY, EMBEDDER_KEY, SPACE_KEY

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

logger = logging.getLogger(__name__)

PREFIX = "fac-catalog-"
KIND_KEY = "fac:kind"
DOC_SPANS = 5


@dataclass(frozen=True)
class StoredCatalog:
    """What a stored catalog's collection says about itself."""

    collection: str
    task: str
    space_key: str
    method: str
    space: dict[str, Any]
    n_records: int


def default_chroma_dir() -> Path:
    """$FAC_CACHE_DIR/chroma, else ~/.cache/fac/chroma."""
    from fac.tools.cache_dir import default_cache_dir

    return default_cache_dir() / "chroma"


def open_store(path: Path | None = None, host: str | None = None, port: int = 8000,
               embedder: Embedder | None = None) -> CatalogStore:
    """The catalog store: embedded at `path` (default under the fac cache), or a Chroma server at host:port."""
    from fac.tools.text.store import chroma_client

    client = chroma_client(None, host, port) if host else chroma_client(path or default_chroma_dir())
    return CatalogStore(client, embedder)


def collection_name(task: str, space_key: str) -> str:
    """`fac-catalog-<task>-<space key>`: chroma allows [a-zA-Z0-9._-], 3-512 characters."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in task)
    return f"{PREFIX}{safe}-{space_key}"


def feature_document(record: FeatureRecord) -> str:
    """The text embedded for a feature: its explanation, else its top spans, else its reason."""
    if record.explanation:
        return str(record.explanation)
    spans = [" ".join(e.span.split()) for e in record.evidence[:DOC_SPANS]]
    return " | ".join(spans) if spans else record.reason or f"feature {record.feature}"


class CatalogStore:
    """Save, load, list and search catalogs in one chroma client."""

    def __init__(self, client: ClientAPI, embedder: Embedder | None = None) -> None:
        self.client = client
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:  # loaded only when something must be embedded
            from fac.tools.text.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def _names(self) -> list[str]:
        return [c.name for c in self.client.list_collections()]

    def _open(self, name: str) -> Collection:
        return self.client.get_or_create_collection(name, embedding_function=None)

    def save(self, catalog: Catalog, space_key: str) -> str:
        """Store (replace) the catalog of `catalog.task` in the space `space_key`; returns the collection name."""
        name = collection_name(catalog.task, space_key)
        tmp = f"{name}-tmp"
        if tmp in self._names():
            self.client.delete_collection(tmp)
        embedder = self.embedder
        space = catalog.space
        metadata: dict[str, Any] = {
            SPACE_KEY: "cosine", EMBEDDER_KEY: embedder.name, DIM_KEY: int(embedder.dim), KIND_KEY: "catalog",
            "fac:task": catalog.task, "fac:method": catalog.method, "fac:anchor": catalog.anchor,
            "fac:space_key": space_key, "fac:space": json.dumps(space, sort_keys=True),
            "fac:n_records": len(catalog.records),
            **{f"fac:{k}": v for k, v in space.items() if isinstance(v, str | int | float | bool)},
        }
        collection = self.client.get_or_create_collection(tmp, embedding_function=None, metadata=metadata)
        records = list(catalog.records)
        documents = [feature_document(r) for r in records]
        vectors = embedder.embed(documents) if records else np.zeros((0, embedder.dim), np.float32)  # (n, dim)
        if vectors.shape != (len(records), embedder.dim):
            raise ConfigError(f"embedder {embedder.name} returned shape {vectors.shape}, "
                              f"expected ({len(records)}, {embedder.dim})")
        step = int(self.client.get_max_batch_size())
        for start in range(0, len(records), step):
            part = records[start : start + step]
            collection.upsert(
                ids=[f"f{r.feature}" for r in part],
                embeddings=vectors[start : start + step],
                documents=documents[start : start + step],
                metadatas=[{"feature": r.feature, "relevant": r.relevant, "decision": r.decision or "",
                            "activation_rate": r.activation_rate, "method": r.method,
                            "record": r.model_dump_json()} for r in part],
            )
        if name in self._names():
            self.client.delete_collection(name)
        collection.modify(name=name)
        logger.info("stored catalog %s: %d features (%d relevant)", name, len(records), len(catalog.task_features()))
        return name

    def info(self, task: str, space_key: str) -> StoredCatalog | None:
        name = collection_name(task, space_key)
        if name not in self._names():
            return None
        return self._info(self._open(name))

    @staticmethod
    def _info(collection: Collection) -> StoredCatalog:
        meta = dict(collection.metadata or {})
        try:
            space = json.loads(str(meta.get("fac:space", "{}")))
        except json.JSONDecodeError:
            space = {}
        return StoredCatalog(collection.name, str(meta.get("fac:task", "")), str(meta.get("fac:space_key", "")),
                             str(meta.get("fac:method", "")), space, int(meta.get("fac:n_records", -1)))

    def find(self, task: str) -> list[StoredCatalog]:
        """The stored catalogs of a task, one per feature space."""
        stem = collection_name(task, "")
        return [self._info(self._open(n)) for n in sorted(self._names())
                if n.startswith(stem) and not n.endswith("-tmp") and len(n) > len(stem)]

    def load(self, task: str, space_key: str) -> Catalog | None:
        """The stored catalog, or None when there is none for this task and space."""
        name = collection_name(task, space_key)
        if name not in self._names():
            return None
        collection = self._open(name)
        meta = dict(collection.metadata or {})
        found = collection.get(include=["metadatas"])
        try:
            records = [FeatureRecord.model_validate_json(str(m["record"])) for m in found["metadatas"] or []]
            catalog = Catalog(task=str(meta["fac:task"]), method=meta["fac:method"],
                              space=json.loads(str(meta["fac:space"])), anchor=str(meta.get("fac:anchor", "")),
                              records=tuple(sorted(records, key=lambda r: r.feature)))
        except (KeyError, ValueError) as err:
            raise ParseError(f"chroma collection {name!r} does not hold a fac catalog ({str(err).splitlines()[0]}); "
                             "rebuild it with `fac catalog build`") from None
        expected = int(meta.get("fac:n_records", len(records)))
        if len(records) != expected:
            raise ParseError(f"chroma collection {name!r} holds {len(records)} records but says {expected}; "
                             "rebuild it with `fac catalog build`")
        return catalog

    def delete(self, task: str, space_key: str) -> bool:
        name = collection_name(task, space_key)
        if name not in self._names():
            return False
        self.client.delete_collection(name)
        return True

    def search(self, task: str, space_key: str, query: str, n: int = 10,
               relevant_only: bool = False) -> list[tuple[int, float]]:
        """Features whose explanation or spans are nearest in meaning to `query`: (feature, cosine distance)."""
        info = self.info(task, space_key)
        if info is None:
            return []
        collection = self._open(info.collection)
        meta = dict(collection.metadata or {})
        if (meta.get(EMBEDDER_KEY), meta.get(DIM_KEY)) != (self.embedder.name, self.embedder.dim):
            raise ConfigError(f"catalog {info.collection!r} was embedded with {meta.get(EMBEDDER_KEY)!r} "
                              f"(dim {meta.get(DIM_KEY)}), not {self.embedder.name!r}; rebuild it to search")
        if collection.count() == 0:
            return []
        found = collection.query(query_embeddings=self.embedder.embed([query]), n_results=min(n, collection.count()),
                                 where={"relevant": True} if relevant_only else None,
                                 include=["metadatas", "distances"])
        metas, distances = (found["metadatas"] or [[]])[0], (found["distances"] or [[]])[0]
        return [(int(m["feature"]), float(d)) for m, d in zip(metas, distances, strict=True)]  # type: ignore[arg-type]
