"""One way to open fac's SQLite files: WAL (a killed process never corrupts them), shared across threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def connect_wal(path: Path, schema: str = "", *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                autocommit: bool = False) -> sqlite3.Connection:
    """Open (creating its folder) the SQLite file at `path` in WAL mode and apply `schema`.

    The connection may be used from several threads; callers serialise writes with their own lock.
    NORMAL survives a killed process (only a power cut may lose the last commits); FULL survives both.
    `autocommit` makes every statement its own transaction.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    if autocommit:
        conn.isolation_level = None
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    if schema:
        conn.executescript(schema)
        conn.commit()
    return conn
