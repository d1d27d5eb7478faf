"""SampleStore: texts in a chromadb collection with explicit embeddings, for near-duplicate checks.

Chroma's default embedding function downloads a model, so every collection here is opened with
`embedding_function=None` and every add/query passes embeddings computed by our `Embedder`. The
collection records the embedder's name and dimension in its metadata; opening it with another
embedder is refused. Distances are cosine distances (1 - cos), in [0, 2].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fac.tools.errors import ConfigError
from fac.tools.text.embeddings import Embedder

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

logger = logging.getLogger(__name__)

EMBEDDER_KEY = "fac:embedder"
DIM_KEY = "fac:dim"
SPACE_KEY = "hnsw:space"
MetadataValue = str | int | float | bool


def chroma_client(path: Path | None = None, host: str | None = None, port: int = 8000) -> ClientAPI:
    """A persistent client at `path` (default ./chroma), or an HTTP client when `host` is given; no telemetry."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host is not None:
        if path is not None:
            raise ConfigError(f"give a chroma path ({path}) or a host ({host}), not both")
        return chromadb.HttpClient(host=host, port=port, settings=settings)
    return chromadb.PersistentClient(path=str(path or Path("chroma")), settings=settings)


@dataclass(frozen=True)
class StoredSample:
    id: str
    text: str
    metadata: dict[str, Any]


class SampleStore:
    """One chroma collection of samples embedded by one embedder."""

    def __init__(self, client: ClientAPI, collection: str, embedder: Embedder) -> None:
        self.embedder = embedder
        self._max_batch = int(client.get_max_batch_size())
        self.collection: Collection = client.get_or_create_collection(
            collection,
            embedding_function=None,
            metadata={SPACE_KEY: "cosine", EMBEDDER_KEY: embedder.name, DIM_KEY: int(embedder.dim)},
        )
        self._check(collection)

    def _check(self, name: str) -> None:
        meta = dict(self.collection.metadata or {})
        found = (meta.get(EMBEDDER_KEY), meta.get(DIM_KEY))
        wanted = (self.embedder.name, int(self.embedder.dim))
        if found == (None, None) and self.collection.count() == 0:
            return  # an empty collection someone else created: ours from now on, nothing to contradict
        if found != wanted:
            raise ConfigError(
                f"chroma collection {name!r} holds embeddings of {found[0]!r} (dim {found[1]}) but the embedder is "
                f"{wanted[0]!r} (dim {wanted[1]}); use another collection name or the same embedder"
            )
        if meta.get(SPACE_KEY, "l2") != "cosine":
            raise ConfigError(f"chroma collection {name!r} uses distance {meta.get(SPACE_KEY, 'l2')!r}, not 'cosine'")

    def count(self) -> int:
        return int(self.collection.count())

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim)
        vectors: np.ndarray = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise ConfigError(f"embedder {self.embedder.name} returned shape {vectors.shape}, "
                              f"expected ({len(texts)}, {self.embedder.dim})")
        return vectors

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, MetadataValue] | None] | None = None,
        *,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Upsert samples (same id -> replaced, so re-adding is idempotent); pass `embeddings` to reuse them."""
        if len(ids) != len(texts) or (metadatas is not None and len(metadatas) != len(ids)):
            raise ValueError(f"add(): {len(ids)} ids, {len(texts)} texts, "
                             f"{'no' if metadatas is None else len(metadatas)} metadatas: lengths must match")
        if len(set(ids)) != len(ids):
            raise ValueError("add(): duplicate ids in one call")
        if not ids:
            return
        vectors = self.embed(texts) if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(ids), self.embedder.dim):
            raise ValueError(f"add(): embeddings of shape {vectors.shape}, expected ({len(ids)}, {self.embedder.dim})")
        for start in range(0, len(ids), self._max_batch):
            stop = start + self._max_batch
            metas = None
            if metadatas is not None and any(metadatas[start:stop]):
                # chroma refuses empty metadata dicts: mark rows without metadata explicitly
                metas = [dict(m) if m else {"fac:none": True} for m in metadatas[start:stop]]
            self.collection.upsert(ids=list(ids[start:stop]), documents=list(texts[start:stop]),
                                   embeddings=vectors[start:stop], metadatas=metas)  # type: ignore[arg-type]
        logger.debug("upserted %d samples into %s", len(ids), self.collection.name)

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """For each text, the nearest stored id and its cosine distance; (None, inf) when the store is empty."""
        return self.nearest_vectors(self.embed(texts)) if texts else []

    def nearest_vectors(self, vectors: np.ndarray) -> list[tuple[str | None, float]]:
        """`nearest` for already embedded rows, shape (n, dim)."""
        if len(vectors) == 0:
            return []
        if self.count() == 0:
            return [(None, math.inf)] * len(vectors)
        found = self.collection.query(query_embeddings=np.asarray(vectors, dtype=np.float32), n_results=1,
                                      include=["distances"])
        ids, distances = found["ids"], found["distances"] or []
        return [(row_ids[0], float(row_d[0])) if row_ids else (None, math.inf)
                for row_ids, row_d in zip(ids, distances, strict=True)]

    def get(self, ids: Sequence[str]) -> list[StoredSample]:
        """Stored samples by id, in the order asked; unknown ids are skipped."""
        if not ids:
            return []
        found = self.collection.get(ids=list(ids), include=["documents", "metadatas"])
        docs, metas = found["documents"] or [], found["metadatas"] or []
        by_id = {i: StoredSample(i, d or "", {k: v for k, v in dict(m or {}).items() if k != "fac:none"})
                 for i, d, m in zip(found["ids"], docs, metas, strict=True)}
        return [by_id[i] for i in ids if i in by_id]
