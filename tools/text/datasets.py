"""Read datasets: jsonl(.gz), csv(.gz), parquet, txt, or a saved HF `datasets` directory.

A record becomes a sample: a text (from --text-field, or a common text field), or a conversation
(`messages`; `prompt`/`response`; `chosen`/`rejected`) rendered later with the model's chat template.
Errors name the file, the line and the field, and list the fields that exist.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fac.tools.errors import InputError
from fac.tools.space.rendering import Sample

TEXT_FIELDS = ("text", "tweet", "content", "sentence", "question", "instruction", "prompt")
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".csv.gz", ".parquet", ".txt", ".txt.gz")


@dataclass(frozen=True)
class Record:
    """One dataset row: where it came from and the sample fac scores."""

    line: int  # 1-based line (jsonl/txt), data row (csv, header excluded), or row index + 1
    sample: Sample
    fields: Mapping[str, Any]


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # noqa: SIM115 (caller closes)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def _rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    name = path.name
    try:
        if path.is_dir():
            yield from _hf_rows(path)
        elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
            with _open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise InputError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno})") from None
                    if not isinstance(row, dict):
                        raise InputError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
                    yield number, row
        elif name.endswith((".csv", ".csv.gz")):
            with _open_text(path) as handle:
                for number, row in enumerate(csv.DictReader(handle), 1):
                    yield number, row
        elif name.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            for number, row in enumerate(table.to_pylist(), 1):
                yield number, row
        elif name.endswith((".txt", ".txt.gz")):
            with _open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        yield number, line.rstrip("\r\n")
        else:
            raise InputError(f"{path}: unknown dataset format; expected one of {', '.join(SUFFIXES)} or a directory")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _hf_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{path}: not a saved HF datasets directory ({err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    yield from enumerate(loaded, 1)


def _as_messages(value: Any) -> list[dict[str, str]] | None:
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in value]
    return None


def _sample(row: Mapping[str, Any], text_field: str | None, where: str) -> Sample:
    if text_field is not None:
        if text_field not in row:
            raise InputError(f"{where}: no field {text_field!r}; fields here: {', '.join(map(str, row)) or 'none'}")
        value = row[text_field]
        messages = _as_messages(value)
        if messages is not None:
            return messages
        if not isinstance(value, str):
            raise InputError(f"{where}: field {text_field!r} is {type(value).__name__}, expected text or messages")
        return value
    if (messages := _as_messages(row.get("messages"))) is not None:
        return messages
    if isinstance(row.get("prompt"), str) and isinstance(row.get("response"), str):
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
    if isinstance(row.get("chosen"), str):
        return row["chosen"] if not isinstance(row.get("prompt"), str) else [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["chosen"]},
        ]
    for name in TEXT_FIELDS:
        if isinstance(row.get(name), str):
            return str(row[name])
    raise InputError(
        f"{where}: no text field found (tried messages, prompt/response, chosen, {', '.join(TEXT_FIELDS)}); "
        f"fields here: {', '.join(map(str, row)) or 'none'}; pick one with --text-field"
    )


def read_records(path: str | Path, text_field: str | None = None) -> Iterator[Record]:
    """Stream the records of a dataset file, validating each as it is read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    for number, row in _rows(path):
        where = f"{path}:{number}"
        if isinstance(row, str):
            sample: Sample = row
            fields: Mapping[str, Any] = {"text": row}
        else:
            sample, fields = _sample(row, text_field, where), row
        if isinstance(sample, str) and not sample.strip():
            field = text_field or "text"
            raise InputError(f"{where}: field {field!r} is empty; expected non-empty text")
        yield Record(number, sample, fields)


def read_samples(path: str | Path, text_field: str | None = None) -> list[Sample]:
    """All samples of a dataset; an empty dataset is an error."""
    samples = [r.sample for r in read_records(path, text_field)]
    if not samples:
        raise InputError(f"{path}: the dataset is empty; expected at least one record")
    return samples


def samples_from_rows(rows: Iterable[Mapping[str, Any] | str | Sequence[Mapping[str, str]]],
                      text_field: str | None = None, source: str = "data") -> list[Sample]:
    """Samples from in-memory rows (dicts as in a file, plain strings, or conversations); row numbers start at 1."""
    samples: list[Sample] = []
    for number, row in enumerate(rows, start=1):
        where = f"{source}[{number}]"
        if isinstance(row, str):
            sample: Sample = row
        elif isinstance(row, Mapping):
            sample = _sample(row, text_field, where)
        elif isinstance(row, Sequence) and (messages := _as_messages(list(row))) is not None:
            sample = messages
        else:
            raise InputError(f"{where}: expected a text, a conversation (role/content dicts) or a record, "
                             f"found {type(row).__name__}")
        if isinstance(sample, str) and not sample.strip():
            raise InputError(f"{where}: empty text; expected non-empty text")
        samples.append(sample)
    if not samples:
        raise InputError(f"{source}: empty; expected at least one sample")
    return samples
