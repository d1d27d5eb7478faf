"""On-disk cache of per-sample feature scores, keyed by (feature space, rendered-text hash).

Only active features are stored, so re-scoring the same texts never runs the model. SQLite in WAL
mode: safe for one writer and many readers, and a killed process leaves committed rows intact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from fac.tools.sqlite_wal import connect_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    space TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (space, text_hash)
) WITHOUT ROWID
"""


class ScoreCache:
    """A key-value store of packed score records in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = connect_wal(path, _SCHEMA)

    def get_many(self, space: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(hashes), 500):
                chunk = list(hashes[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT text_hash, payload FROM scores WHERE space = ? AND text_hash IN ({marks})",
                    [space, *chunk],
                )
                found.update((h, bytes(p)) for h, p in rows)
        return found

    def put_many(self, space: str, items: Iterable[tuple[str, bytes]]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO scores (space, text_hash, payload) VALUES (?, ?, ?)",
                [(space, h, p) for h, p in items],
            )
            self._db.commit()

    def count(self, space: str) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM scores WHERE space = ?", [space]).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()
