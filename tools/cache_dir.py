"""Where fac keeps what it computes once: $FAC_CACHE_DIR, else ~/.cache/fac."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The cache root: scores, judge answers, chroma catalogs, dequantised models, weight digests, activations."""
    return Path(os.environ.get("FAC_CACHE_DIR", Path.home() / ".cache" / "fac"))
