"""Content identity of weight files, for cache keys: a sha256 of their bytes, hashed once per file version.

Hashing a large checkpoint on every load would cost seconds, so the digest is recorded under the cache
directory against the files' (resolved path, size, mtime) and reused while those stay the same; a file
rewritten in place gets a new mtime, hence a fresh hash. Records are written atomically (temp file +
rename), so concurrent processes never read half a record; without a writable cache the hash is
recomputed each time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from fac.tools.cache_dir import default_cache_dir

_CHUNK_BYTES = 1 << 20


def _signature(files: Sequence[Path]) -> str:
    """What the shortcut trusts: each file's resolved path, size and mtime (ns)."""
    parts = []
    for path in files:
        stat = path.stat()
        parts.append(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _hash_files(files: Sequence[Path], with_names: bool) -> str:
    digest = hashlib.sha256()
    for path in files:
        if with_names:
            digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def files_digest(files: Sequence[Path], *, with_names: bool = True, cache_dir: Path | None = None) -> str:
    """sha256 (hex) over the files in the given order (each file's name, then its bytes, when `with_names`)."""
    record = (cache_dir or default_cache_dir()) / "digests" / f"{_signature(files)}-{int(with_names)}"
    try:
        known = record.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = _hash_files(files, with_names)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.tmp{os.getpid()}")
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, record)
    except OSError:  # a read-only cache: hash again next time
        pass
    return digest


def directory_files(directory: Path, suffixes: frozenset[str], skip: frozenset[str] = frozenset()) -> list[Path]:
    """The directory's regular files with one of `suffixes`, sorted by name (the order digests use)."""
    return sorted((p for p in directory.iterdir() if p.is_file() and p.suffix in suffixes and p.name not in skip),
                  key=lambda p: p.name)
