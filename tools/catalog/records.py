"""The feature catalog of a task: per SAE feature, its evidence, frequency and relevance decision.

Both relevance methods (LLM judge, LLM-free contrast) write this same record. A catalog is bound to
the feature space that built it; using it with another model/layer/SAE/mode is refused.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fac.tools.errors import ConfigError, InputError

Decision = Literal["Yes", "Probably", "Maybe", "No"]
Method = Literal["contrast", "judge"]
SPACE_FIELDS = ("model", "layer", "sae", "mode")

logger = logging.getLogger(__name__)


class FeatureEvidence(BaseModel):
    """One top-activating anchor sample of a feature and the span that fired it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    score: float
    span: str
    sample: str


class FeatureRecord(BaseModel):
    """Everything fac knows about one feature for one task."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feature: int = Field(ge=0)
    relevant: bool
    decision: Decision | None = Field(None, description="The judge's relevance decision (judge method).")
    reason: str = Field("", description="Why relevant or not: the judge's analysis or the contrast statistics.")
    explanation: str | None = Field(None, description="What the feature detects, where one exists.")
    activation_rate: float = Field(ge=0.0, le=1.0, description="Share of anchor samples that activate it.")
    evidence: tuple[FeatureEvidence, ...] = ()
    method: Method
    stats: dict[str, float] = Field(default_factory=dict)


SPAN_WORDS = 12  # evidence spans shown in prompts are cut to their last words (the paper: last 10 tokens)
MAX_SPANS = 5


def short_span(span: str, words: int = SPAN_WORDS) -> str:
    """The last `words` words of an evidence span."""
    return " ".join(span.split()[-words:])


def evidence_spans(record: FeatureRecord | None) -> list[str]:
    """A feature's distinct evidence spans as prompts and traces show them: cut short, strongest first."""
    if record is None:
        return []
    spans: list[str] = []
    for ev in record.evidence:
        span = short_span(ev.span)
        if span and span not in spans:
            spans.append(span)
    return spans[:MAX_SPANS]


class Catalog(BaseModel):
    """The catalog of one task in one feature space."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    task: str
    method: Method
    space: dict[str, Any] = Field(description="FeatureSpace.describe() of the space that built it.")
    anchor: str = Field("", description="The anchor corpus (and background) it was built on.")
    records: tuple[FeatureRecord, ...]

    def task_features(self) -> list[int]:
        """F_task: the features judged relevant, ascending."""
        return sorted(r.feature for r in self.records if r.relevant)

    def record(self, feature: int) -> FeatureRecord:
        for rec in self.records:
            if rec.feature == feature:
                return rec
        raise KeyError(feature)

    def check_space(self, described: dict[str, Any]) -> None:
        """Refuse a catalog built in another feature space, naming what differs; warn if only δ or floors differ.

        δ does not change the features, only which count as active, so another δ is allowed (sweeping δ
        is normal) but said: the catalog's relevance decisions were made at its own δ.
        """
        differ = [f"{k}: catalog {self.space.get(k)!r} vs now {described.get(k)!r}"
                  for k in SPACE_FIELDS if self.space.get(k) != described.get(k)]
        if differ:
            raise ConfigError(f"catalog for task {self.task!r} was built in another feature space ({'; '.join(differ)})"
                              "; rebuild it with `fac catalog build`")
        built_at, now = self.space.get("threshold"), described.get("threshold")
        if built_at is not None and now is not None and float(built_at) != float(now):
            logger.warning("catalog for task %r was built at threshold δ=%g, measuring at δ=%g: its relevance "
                           "decisions used δ=%g (rebuild it at this δ to match)", self.task, built_at, now, built_at)
        floors_then, floors_now = self.space.get("floors"), described.get("floors")
        if floors_then != floors_now:
            logger.warning("catalog for task %r was built with feature floors %s, measuring with %s: its relevance "
                           "decisions used its own floors (rebuild it to match)", self.task, floors_then or "none",
                           floors_now or "none")

    def save_json(self, path: Path) -> None:
        """JSON, gzipped when the name ends in .gz (reproducible bytes: no timestamp in the header)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        text = self.model_dump_json(indent=1)
        if path.name.endswith(".gz"):
            tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        else:
            tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load_json(cls, path: Path) -> Catalog:
        if not path.is_file():
            raise InputError(f"{path}: no such catalog file")
        try:
            raw = path.read_bytes()
            return cls.model_validate(json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw))
        except (json.JSONDecodeError, ValueError, OSError, EOFError) as err:
            first = str(err).splitlines()[0]
            raise InputError(f"{path}: not a fac catalog ({first})") from None

    def save_parquet(self, path: Path) -> None:
        """One row per feature record; the task, method, space and anchor go in the file's metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{**r.model_dump(mode="json", exclude={"stats"}), "stats": json.dumps(r.stats)} for r in self.records]
        evidence = pa.list_(pa.struct([("score", pa.float64()), ("span", pa.string()), ("sample", pa.string())]))
        schema = pa.schema([("feature", pa.int64()), ("relevant", pa.bool_()), ("decision", pa.string()),
                            ("reason", pa.string()), ("explanation", pa.string()), ("activation_rate", pa.float64()),
                            ("evidence", evidence), ("method", pa.string()), ("stats", pa.string())])
        header = self.model_dump(mode="json", exclude={"records"})
        table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata({"fac_catalog": json.dumps(header)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)

    @classmethod
    def load_parquet(cls, path: Path) -> Catalog:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not path.is_file():
            raise InputError(f"{path}: no such catalog file")
        try:
            table = pq.read_table(path)
            header = json.loads((table.schema.metadata or {})[b"fac_catalog"])
            records = [{**row, "stats": json.loads(row["stats"] or "{}")} for row in table.to_pylist()]
            return cls.model_validate({**header, "records": records})
        except (pa.ArrowInvalid, KeyError, json.JSONDecodeError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{path}: not a fac catalog parquet export ({first})") from None
