"""Durability: the SQLite checkpointer of the graph and samples.jsonl, the journal of accepted samples.

samples.jsonl is the source of truth: each accepted sample is appended, flushed and fsync'ed the moment
it is accepted, under an id derived from its prompt and text, and a journal never writes an id twice.
A checkpoint may lag behind it (kill -9 between the two); the verifier and planner reconcile with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import ValidationError

from fac.graph.state import RECORD_TYPES, AcceptedSample
from fac.tools.errors import InputError
from fac.tools.sqlite_wal import connect_wal

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoints.sqlite"
SAMPLES_FILE = "samples.jsonl"


def serializer() -> JsonPlusSerializer:
    """msgpack serializer that revives only our records (and langgraph's own safe types)."""
    return JsonPlusSerializer(allowed_msgpack_modules=[(t.__module__, t.__name__) for t in RECORD_TYPES])


def memory_saver() -> InMemorySaver:
    return InMemorySaver(serde=serializer())


def sqlite_saver(run_dir: Path) -> SqliteSaver:
    """A SQLite checkpointer in `run_dir` (WAL, so a kill -9 never corrupts it)."""
    conn = connect_wal(run_dir / CHECKPOINT_FILE, synchronous="FULL")  # the saver serialises with a lock
    return SqliteSaver(conn, serde=serializer())


def sample_id(run_id: str, prompt_hash: str, text: str) -> str:
    return hashlib.sha256(f"{run_id}\0{prompt_hash}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


class SampleLog:
    """Append-only samples.jsonl keyed by sample id; a torn last line (kill -9 mid-write) is dropped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, AcceptedSample] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good_end = 0
        for number, line in enumerate(raw.splitlines(keepends=True), 1):
            if not line.endswith(b"\n"):
                logger.warning("%s:%d: dropping a torn last line (%d bytes) left by an interrupted write",
                               self.path, number, len(line))
                break
            try:
                record = AcceptedSample.model_validate_json(line)
            except ValidationError as err:
                raise InputError(f"{self.path}:{number}: not an accepted-sample record "
                                 f"({err.errors()[0]['msg']})") from None
            self._records.setdefault(record.id, record)  # an id appears once; later copies are ignored
            good_end += len(line)
        if good_end < len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[AcceptedSample]:
        return iter(self._records.values())

    def get(self, sample_id: str) -> AcceptedSample | None:
        return self._records.get(sample_id)

    def append(self, record: AcceptedSample) -> bool:
        """Write `record` durably unless its id is already there; True when written."""
        if record.id in self._records:
            return False
        line = json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._records[record.id] = record
        return True
