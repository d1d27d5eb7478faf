"""A run directory (runs/<name>/): its files, and the one set of tolerant readers every command uses.

config.json holds the RunConfig, the run id and the config fingerprint (written once, when the run is
created); run.json the status (coverage before/now, stop reason, exhausted features), rewritten after
every step; samples.jsonl the accepted samples; checkpoints.sqlite, trace.sqlite, chroma/ and run.log
the rest. The run id lives in config.json, so a copied or renamed directory keeps its checkpoints.
Damaged or missing files are one-line InputErrors naming the file, never tracebacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fac.graph.checkpoint import SAMPLES_FILE, SampleLog
from fac.graph.config import RunConfig, make_config
from fac.tools.errors import InputError

CONFIG_FILE = "config.json"
STATUS_FILE = "run.json"
LOG_FILE = "run.log"
CHROMA_DIR = "chroma"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON object atomically (a reader sees the old file or the new one, never half of one)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file does not exist; InputError when it is damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable ({err}); the run directory is damaged") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                         "the run directory is damaged") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(data).__name__}; the run directory is damaged")
    return data


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory and their readers."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES_FILE

    @property
    def status(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def chroma(self) -> Path:
        return self.root / CHROMA_DIR

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    def is_run(self) -> bool:
        return self.config.is_file()

    def require(self) -> None:
        """InputError unless this is a fac run directory."""
        if not self.root.exists():
            raise InputError(f"{self.root}: no such run directory")
        if not self.root.is_dir():
            raise InputError(f"{self.root}: is a file, not a fac run directory")
        if not self.is_run():
            raise InputError(f"{self.root}: not a fac run directory (no {CONFIG_FILE})")

    def read_config_file(self) -> dict[str, Any]:
        """config.json as written (run_id, fingerprint, config); InputError when missing or damaged."""
        self.require()
        data = read_json_object(self.config)
        assert data is not None  # require() saw the file
        return data

    def config_values(self) -> dict[str, Any]:
        """The RunConfig fields of config.json (older runs stored them at the top level)."""
        data = self.read_config_file()
        values = data.get("config", data)
        if not isinstance(values, dict):
            raise InputError(f"{self.config}: 'config' must be a JSON object, found {type(values).__name__}")
        return values

    def saved_config(self) -> RunConfig:
        """The validated RunConfig of the run."""
        return make_config(self.config_values(), str(self.config))

    def saved_run_id(self) -> str | None:
        """The run id recorded when the run was created (None for a new directory)."""
        if not self.is_run():
            return None
        run_id = self.read_config_file().get("run_id")
        return run_id if isinstance(run_id, str) and run_id else None

    def run_id(self, cfg: RunConfig) -> str:
        """The run's id: the one recorded in config.json, else a new one from the folder name and config."""
        return self.saved_run_id() or cfg.run_id(self.root.name)

    def read_status(self) -> dict[str, Any]:
        """run.json ({} before the first step); InputError when damaged."""
        return read_json_object(self.status) or {}

    def write_config(self, cfg: RunConfig, run_id: str) -> None:
        write_json(self.config, {"run_id": run_id, "fingerprint": cfg.fingerprint(),
                                 "config": cfg.model_dump(mode="json")})

    def write_status(self, data: Mapping[str, Any]) -> None:
        write_json(self.status, data)

    def sample_log(self) -> SampleLog:
        return SampleLog(self.samples)

    def sample_rows(self) -> list[dict[str, Any]]:
        """The accepted samples (deduplicated by id) as flat rows: format fields become columns."""
        rows = []
        for record in self.sample_log():
            row = record.model_dump(mode="json", exclude={"fields"})
            row["features"] = list(record.features)
            rows.append({**row, **{k: v for k, v in record.fields.items() if k not in row}})
        return rows
