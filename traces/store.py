"""The run trace: one SQLite file (runs/<name>/trace.sqlite) of node steps, LLM calls and verifier verdicts.

`graph.recorder.TraceRecorder` writes it as the run goes (each event is committed at once, so a crashed run
keeps everything up to the crash); `fac trace` and `fac report` read it through `open_trace`. Every text
is redacted before it is stored: key-shaped strings and the values of environment variables whose names end
in _KEY, _TOKEN, _SECRET or _PASSWORD never reach the file.

Tables: sessions (one per `fac run` / `--resume`), features (the task features' explanations), steps (one per
node execution, keyed by LangGraph's task id), calls (one per LLM call, linked to its step by task id) and
verdicts (one per verified draft, linked to its verify step and, by prompt hash, to the call that wrote it).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from fac.tools.errors import InputError
from fac.tools.redaction import redact
from fac.tools.sqlite_wal import connect_wal

logger = logging.getLogger(__name__)

TRACE_FILE = "trace.sqlite"
SCHEMA_VERSION = "1"
StepStatus = Literal["running", "done", "error", "crashed"]
Decision = Literal["accepted", "rejected"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, started_at REAL NOT NULL,
    ended_at REAL, outcome TEXT NOT NULL DEFAULT 'running');
CREATE TABLE IF NOT EXISTS features(feature INTEGER PRIMARY KEY, explanation TEXT NOT NULL, relevance TEXT NOT NULL,
    spans TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps(id INTEGER PRIMARY KEY, session INTEGER NOT NULL, task_id TEXT NOT NULL,
    node TEXT NOT NULL, round INTEGER NOT NULL, status TEXT NOT NULL, targets TEXT NOT NULL, inputs TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}', coverage TEXT NOT NULL DEFAULT '{}', error TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL, latency_s REAL);
CREATE INDEX IF NOT EXISTS steps_task ON steps(session, task_id);
CREATE TABLE IF NOT EXISTS calls(id INTEGER PRIMARY KEY, session INTEGER NOT NULL, task_id TEXT NOT NULL,
    node TEXT NOT NULL, feature INTEGER, model TEXT NOT NULL, params TEXT NOT NULL, prompt TEXT NOT NULL,
    response TEXT NOT NULL DEFAULT '', tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL, latency_s REAL, error TEXT NOT NULL DEFAULT '', prompt_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS calls_task ON calls(session, task_id);
CREATE INDEX IF NOT EXISTS calls_hash ON calls(prompt_hash);
CREATE TABLE IF NOT EXISTS verdicts(id INTEGER PRIMARY KEY, step INTEGER NOT NULL, call INTEGER,
    round INTEGER NOT NULL, feature INTEGER NOT NULL, kind TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
    score REAL NOT NULL, span TEXT NOT NULL, text TEXT NOT NULL, sample_id TEXT NOT NULL, credited TEXT NOT NULL,
    prompt_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS verdicts_feature ON verdicts(feature);
"""
_CALLS = """SELECT c.*, s.id AS step, ROW_NUMBER() OVER (PARTITION BY c.session, c.task_id ORDER BY c.id) AS ordinal
FROM calls c LEFT JOIN steps s ON s.session = c.session AND s.task_id = c.task_id"""




# --- records ---------------------------------------------------------------------------------------------------


class TraceSession(BaseModel):
    """One `fac run` (or `--resume`) of the run: when, and how it ended ('running' if the process died)."""

    model_config = ConfigDict(frozen=True)
    id: int
    run_id: str
    started_at: float
    ended_at: float | None
    outcome: str


class TraceFeature(BaseModel):
    """A task feature as the catalog describes it."""

    model_config = ConfigDict(frozen=True)
    feature: int
    explanation: str
    relevance: str
    spans: tuple[str, ...]


class TraceStep(BaseModel):
    """One node execution: inputs and outputs (summaries), target features, coverage after it, time taken."""

    model_config = ConfigDict(frozen=True)
    id: int
    session: int
    task_id: str
    node: str
    round: int
    status: StepStatus
    targets: tuple[int, ...]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    coverage: dict[str, Any]
    error: str
    started_at: float
    latency_s: float | None


class TraceCall(BaseModel):
    """One LLM call: the full prompt and reply, model, tokens, latency; `ref` is '<step>.<n>'."""

    model_config = ConfigDict(frozen=True)
    id: int
    step: int | None
    ordinal: int
    session: int
    task_id: str
    node: str
    feature: int | None
    model: str
    params: dict[str, Any]
    prompt: list[dict[str, str]]
    response: str
    tokens_in: int
    tokens_out: int
    started_at: float
    latency_s: float | None
    error: str
    prompt_hash: str

    @property
    def ref(self) -> str:
        return f"{self.step if self.step is not None else '?'}.{self.ordinal}"


class TraceVerdict(BaseModel):
    """The verifier's view of one draft: target score, the span that fired, decision and reason."""

    model_config = ConfigDict(frozen=True)
    id: int
    step: int
    call: int | None
    round: int
    feature: int
    kind: str
    decision: Decision
    reason: str
    score: float
    span: str
    text: str
    sample_id: str
    credited: tuple[int, ...]
    prompt_hash: str


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _row(row: sqlite3.Row, json_fields: Sequence[str]) -> dict[str, Any]:
    data = dict(row)
    for name in json_fields:
        data[name] = json.loads(data[name])
    return data


# --- the store -------------------------------------------------------------------------------------------------


class TraceStore:
    """trace.sqlite of one run directory: `create` for the recorder (writes), `open_trace` for readers."""

    def __init__(self, conn: sqlite3.Connection, path: Path, secrets: Iterable[str] = ()) -> None:
        self.conn = conn
        self.path = path
        self.secrets = frozenset(secrets)
        self._lock = threading.Lock()  # callbacks write from the generator's worker threads

    @classmethod
    def create(cls, run_dir: Path, secrets: Iterable[str] = ()) -> TraceStore:
        """Open (creating if needed) the run's trace for writing; WAL, each event its own transaction."""
        path = run_dir / TRACE_FILE
        conn = connect_wal(path, _SCHEMA, autocommit=True)
        conn.row_factory = sqlite3.Row
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return cls(conn, path, secrets)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # writing: every text goes through _clean (redaction), every call is one committed statement
    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, dict | list | tuple):
            return redact(_dumps(value), self.secrets)
        return value

    def _write(self, sql: str, *params: Any) -> int:
        with self._lock:
            cursor = self.conn.execute(sql, tuple(self._clean(p) for p in params))
            return int(cursor.lastrowid or 0)

    def start_session(self, run_id: str) -> int:
        self._write("INSERT OR REPLACE INTO meta VALUES ('run_id', ?)", run_id)
        return self._write("INSERT INTO sessions(run_id, started_at) VALUES (?, ?)", run_id, time.time())

    def end_session(self, session: int, outcome: str) -> None:
        self._write("UPDATE steps SET status = 'crashed', error = ? WHERE session = ? AND status = 'running'",
                    outcome, session)
        self._write("UPDATE sessions SET ended_at = ?, outcome = ? WHERE id = ?", time.time(), outcome, session)

    def put_features(self, features: Iterable[TraceFeature]) -> None:
        with self._lock, self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)",
                                  [(f.feature, self._clean(f.explanation), f.relevance, self._clean(list(f.spans)))
                                   for f in features])

    def start_step(self, session: int, task_id: str, node: str, round_: int, targets: Sequence[int],
                   inputs: Mapping[str, Any], started_at: float) -> int:
        return self._write("INSERT INTO steps(session, task_id, node, round, status, targets, inputs, started_at) "
                           "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)", session, task_id, node, round_, list(targets),
                           dict(inputs), started_at)

    def finish_step(self, step: int, *, status: StepStatus, round_: int, targets: Sequence[int],
                    outputs: Mapping[str, Any], error: str, latency_s: float) -> None:
        self._write("UPDATE steps SET status = ?, round = ?, targets = ?, outputs = ?, error = ?, latency_s = ? "
                    "WHERE id = ?", status, round_, list(targets), dict(outputs), error, latency_s, step)

    def set_coverage(self, step: int, coverage: Mapping[str, Any]) -> None:
        self._write("UPDATE steps SET coverage = ? WHERE id = ?", dict(coverage), step)

    def start_call(self, session: int, task_id: str, node: str, model: str, params: Mapping[str, Any],
                   prompt: list[dict[str, str]], prompt_hash: str, started_at: float) -> int:
        return self._write("INSERT INTO calls(session, task_id, node, model, params, prompt, prompt_hash, started_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", session, task_id, node, model, dict(params), prompt,
                           prompt_hash, started_at)

    def finish_call(self, call: int, *, model: str, response: str, tokens_in: int, tokens_out: int, latency_s: float,
                    error: str = "") -> None:
        self._write("UPDATE calls SET model = ?, response = ?, tokens_in = ?, tokens_out = ?, latency_s = ?, error = ? "
                    "WHERE id = ?", model, response, tokens_in, tokens_out, latency_s, error, call)

    def set_call_features(self, session: int, task_id: str, features: Mapping[str, int]) -> None:
        """Attach target features to a step's calls by prompt hash (known once the generator's drafts are out)."""
        for digest, feature in features.items():
            self._write("UPDATE calls SET feature = ? WHERE session = ? AND task_id = ? AND prompt_hash = ?",
                        feature, session, task_id, digest)

    def match_call(self, prompt_hash: str, text: str) -> int | None:
        """The newest call with this prompt that no verdict claims yet, preferring one whose reply holds `text`."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, response FROM calls c WHERE prompt_hash = ? AND error = '' AND NOT EXISTS "
                "(SELECT 1 FROM verdicts v WHERE v.call = c.id) ORDER BY id DESC", (prompt_hash,)).fetchall()
        needle = " ".join(text.split())[:60]
        for row in rows:
            if needle and needle in " ".join(row["response"].split()):
                return int(row["id"])
        return int(rows[0]["id"]) if rows else None

    def add_verdict(self, *, step: int, call: int | None, round_: int, feature: int, kind: str, decision: Decision,
                    reason: str, score: float, span: str, text: str, sample_id: str, credited: Sequence[int],
                    prompt_hash: str) -> int:
        if call is not None:
            self._write("UPDATE calls SET feature = ? WHERE id = ? AND feature IS NULL", feature, call)
        return self._write("INSERT INTO verdicts(step, call, round, feature, kind, decision, reason, score, span, "
                           "text, sample_id, credited, prompt_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           step, call, round_, feature, kind, decision, reason, score, span, text, sample_id,
                           list(credited), prompt_hash)

    # reading
    def _query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as err:
            raise InputError(f"{self.path}: unreadable trace ({err})") from None

    def run_id(self) -> str:
        rows = self._query("SELECT value FROM meta WHERE key = 'run_id'")
        return str(rows[0]["value"]) if rows else ""

    def sessions(self) -> list[TraceSession]:
        return [TraceSession(**dict(r)) for r in self._query("SELECT * FROM sessions ORDER BY id")]

    def features(self) -> dict[int, TraceFeature]:
        rows = self._query("SELECT * FROM features ORDER BY feature")
        return {int(r["feature"]): TraceFeature(**_row(r, ["spans"])) for r in rows}

    def steps(self) -> list[TraceStep]:
        rows = self._query("SELECT * FROM steps ORDER BY id")
        return [TraceStep(**_row(r, ["targets", "inputs", "outputs", "coverage"])) for r in rows]

    def step(self, step_id: int) -> TraceStep | None:
        rows = self._query("SELECT * FROM steps WHERE id = ?", step_id)
        return TraceStep(**_row(rows[0], ["targets", "inputs", "outputs", "coverage"])) if rows else None

    def _select(self, source: str, step: int | None, feature: int | None) -> list[sqlite3.Row]:
        """Rows of `source` (a table or a parenthesised query) in id order, of one step and/or feature if given."""
        where, params = [], []
        if step is not None:
            where.append("step = ?")
            params.append(step)
        if feature is not None:
            where.append("feature = ?")
            params.append(feature)
        sql = f"SELECT * FROM {source} {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id"
        return self._query(sql, *params)

    def calls(self, *, step: int | None = None, feature: int | None = None) -> list[TraceCall]:
        return [TraceCall(**_row(r, ["params", "prompt"])) for r in self._select(f"({_CALLS})", step, feature)]

    def call(self, call_id: int) -> TraceCall | None:
        rows = self._query(f"SELECT * FROM ({_CALLS}) WHERE id = ?", call_id)
        return TraceCall(**_row(rows[0], ["params", "prompt"])) if rows else None

    def verdicts(self, *, step: int | None = None, feature: int | None = None) -> list[TraceVerdict]:
        """Verdicts in order; with `feature`, those targeting it."""
        return [TraceVerdict(**_row(r, ["credited"])) for r in self._select("verdicts", step, feature)]


def open_trace(run_dir: Path) -> TraceStore:
    """The trace of a run directory, for reading; a missing, empty or broken one is an InputError (one line)."""
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    if not (run_dir / "config.json").is_file():
        raise InputError(f"{run_dir}: not a fac run directory (no config.json); pass the --out of a `fac run`")
    path = run_dir / TRACE_FILE
    if not path.is_file():
        raise InputError(f"{run_dir}: the run has no trace ({TRACE_FILE} is missing): it never reached its first "
                         "step, or was made by a fac without tracing")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, check_same_thread=False)  # never creates the file
        conn.row_factory = sqlite3.Row
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        raise InputError(f"{path}: unreadable trace ({err})") from None
    if not {"steps", "calls", "verdicts", "sessions"} <= tables:
        conn.close()
        raise InputError(f"{path}: not a fac trace (tables {sorted(tables) or 'none'}); the file is half-written "
                         "or from elsewhere")
    return TraceStore(conn, path)


@contextmanager
def reading(run_dir: Path) -> Iterator[TraceStore]:
    store = open_trace(run_dir)
    try:
        yield store
    finally:
        store.close()


# --- derived views ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One draft for a feature: the call that wrote it (if traced) and the verifier's verdict."""

    verdict: TraceVerdict
    call: TraceCall | None


@dataclass(frozen=True)
class FeatureStory:
    """Everything the run did for one feature, in order."""

    feature: int
    info: TraceFeature | None
    status: str
    planned: tuple[int, ...]  # rounds whose plan picked it
    attempts: tuple[Attempt, ...]
    failed_calls: tuple[TraceCall, ...]  # calls for it that raised (no draft came of them)
    credited_by: tuple[TraceVerdict, ...]  # accepted samples of other targets that also activate it
    accepted: int = field(default=0)


def missing_features(steps: Sequence[TraceStep]) -> tuple[int, ...] | None:
    """The seed's missing task features as the measure step found them (None before it finished)."""
    for step in steps:
        if step.node == "measure" and "missing" in step.outputs:
            return tuple(step.outputs["missing"])
    return None


def recorded_exhausted(steps: Sequence[TraceStep]) -> tuple[int, ...]:
    """Exhausted features as the last finished plan step saw them."""
    for step in reversed(steps):
        if step.node == "plan" and "exhausted" in step.outputs:
            return tuple(step.outputs["exhausted"])
    return ()


def feature_status(feature: int, missing: Sequence[int] | None, exhausted: Sequence[int], accepted: int,
                   attempts: int, min_per_feature: int) -> str:
    """seed | covered | short (covered, fewer samples than wanted) | exhausted | open (tried) | untried."""
    if missing is not None and feature not in missing:
        return "seed"
    if accepted >= min_per_feature:
        return "covered"
    if feature in exhausted:
        return "exhausted"
    if accepted:
        return "short"
    return "open" if attempts else "untried"


def feature_story(store: TraceStore, feature: int, min_per_feature: int = 1) -> FeatureStory:
    """One feature's story; an id the trace never mentions is an InputError."""
    info = store.features().get(feature)
    steps = store.steps()
    verdicts = store.verdicts()
    calls = {c.id: c for c in store.calls()}
    own = [v for v in verdicts if v.feature == feature]
    planned = tuple(s.round for s in steps if s.node == "plan" and feature in s.targets)
    missing = missing_features(steps)
    if info is None and not own and not planned and (missing is None or feature not in missing):
        known = sorted(store.features())
        hint = f" (task features: {_ids(known)})" if known else ""
        raise InputError(f"feature {feature} does not appear in the trace of run {store.run_id()!r}{hint}")
    attempts = tuple(Attempt(v, calls.get(v.call) if v.call is not None else None) for v in own)
    failed = tuple(c for c in calls.values() if c.feature == feature and c.error)
    credited = tuple(v for v in verdicts if v.decision == "accepted" and v.feature != feature and feature in v.credited)
    accepted = sum(1 for v in verdicts if v.decision == "accepted" and feature in v.credited)
    status = feature_status(feature, missing, recorded_exhausted(steps), accepted, len(own), min_per_feature)
    return FeatureStory(feature, info, status, planned, attempts, failed, credited, accepted)


def parse_step_ref(ref: str) -> tuple[int, int | None]:
    """'12' -> (12, None): a step; '12.3' -> (12, 3): its third LLM call."""
    head, _, tail = ref.strip().partition(".")
    try:
        return int(head), int(tail) if tail else None
    except ValueError:
        raise InputError(f"step id {ref!r}: expected a step number like 12, or 12.3 for its third LLM call "
                         "(see `fac trace RUN`)") from None


def _ids(values: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", … ({len(values)} in all)" if len(values) > limit else "")
