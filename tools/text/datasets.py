"""Read datasets: jsonl(.gz), csv(.gz), parquet, txt, or a saved HF `datasets` directory.

A record becomes a sample: a text (from --text-field, or a common text field), or a conversation
(`messages`; an A/B item, a preference pair or an instruction as tools/text/formats.py reads them, scored as
the behaviour-matching or preferred side; `prompt`/`response`) rendered later with the model's chat template.
Errors name the file, the line and the field, and list the fields that exist.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fac.tools.errors import InputError
from fac.tools.space.rendering import Sample
from fac.tools.text.formats import ab_sides, instruction_messages, pair_sides

TEXT_FIELDS = ("text", "tweet", "content", "sentence", "question", "instruction", "prompt")
SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".csv.gz", ".parquet", ".txt", ".txt.gz")


@dataclass(frozen=True)
class Record:
    """One dataset row: where it came from and the sample fac scores."""

    line: int  # 1-based file line where the record starts (jsonl/json/csv/txt), or row index + 1 (parquet, HF)
    sample: Sample
    fields: Mapping[str, Any]


_BETWEEN_ITEMS = re.compile(r"[\s,]*")


def _open_text(path: Path) -> io.TextIOBase:
    """The file as UTF-8 text, gunzipped when its name ends in .gz; a leading byte-order mark is dropped."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # noqa: SIM115 (caller closes)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _json_lines(path: Path, lines: Iterator[str]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno})") from None
        yield _json_object(path, number, row)


def _json_array(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The objects of a JSON array, each with the file line it starts on."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    decoder, pos, line, counted = json.JSONDecoder(), text.index("[") + 1, 1, 0
    for item in items:  # walk the (valid) text again to find where each item starts
        pos = _BETWEEN_ITEMS.match(text, pos).end()  # type: ignore[union-attr]  # the pattern matches ""
        line, counted = line + text.count("\n", counted, pos), pos
        pos = decoder.raw_decode(text, pos)[1]
        yield _json_object(path, line, item)


def _json_object(path: Path, number: int, row: Any) -> tuple[int, Mapping[str, Any]]:
    if not isinstance(row, dict):
        raise InputError(f"{path}:{number}: expected a JSON object, found {_kind(row)}")
    return number, row


def _csv_rows(path: Path, handle: io.TextIOBase) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Rows keyed by the header, each with the file line it starts on (a quoted field may span lines)."""
    reader = csv.reader(handle)
    header = next(reader, None)
    start = reader.line_num + 1
    for row in reader:
        if row:
            if len(row) > len(header or ()):
                raise InputError(f"{path}:{start}: {len(row)} fields but the header has {len(header or ())}")
            yield start, dict(zip(header or (), row + [""] * (len(header or ()) - len(row)), strict=True))
        start = reader.line_num + 1


def _rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    name = path.name
    try:
        if path.is_dir():
            yield from _hf_rows(path)
        elif name.endswith(".json"):  # a JSON array of objects, or JSON Lines under a .json name
            with _open_text(path) as handle:
                text = handle.read()
            if text.lstrip().startswith("["):
                yield from _json_array(path, text)
            else:
                yield from _json_lines(path, io.StringIO(text, newline=""))
        elif name.endswith((".jsonl", ".jsonl.gz")):
            with _open_text(path) as handle:
                yield from _json_lines(path, handle)
        elif name.endswith((".csv", ".csv.gz")):
            with _open_text(path) as handle:
                yield from _csv_rows(path, handle)
        elif name.endswith(".parquet"):
            yield from enumerate(_parquet_rows(path), 1)
        elif name.endswith((".txt", ".txt.gz")):
            with _open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        yield number, line.rstrip("\r\n")
        else:
            raise InputError(f"{path}: unknown dataset format; expected one of {', '.join(SUFFIXES)} or a directory")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except gzip.BadGzipFile as err:
        raise InputError(f"{path}: not gzip-compressed ({err}); compress it or drop the .gz suffix") from None
    except (EOFError, zlib.error) as err:  # EOFError: a truncated file (uncaught, click reads it as ^D: "aborted")
        raise InputError(f"{path}: truncated or corrupt gzip data ({err})") from None


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_table(path).to_pylist())
    except pa.ArrowException as err:
        detail = str(err).split(". ")[0].split(": ")[-1]
        raise InputError(f"{path}: not a readable parquet file ({detail})") from None


def _hf_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{path}: not a saved HF datasets directory ({err})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if not loaded:
            raise InputError(f"{path}: a saved DatasetDict with no splits; expected at least one (e.g. train)")
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    yield from enumerate(loaded, 1)


def _as_messages(value: Any) -> list[dict[str, str]] | None:
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in value]
    return None


def _kind(value: Any) -> str:
    """A JSON value's kind in words: "a number", "null", "a list", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    return "a string" if isinstance(value, str) else type(value).__name__


def _sample(row: Mapping[str, Any], text_field: str | None, where: str) -> Sample:
    if text_field is not None:
        if text_field not in row:
            raise InputError(f"{where}: no field {text_field!r}; fields here: {', '.join(map(str, row)) or 'none'}")
        value = row[text_field]
        messages = _as_messages(value)
        if messages is not None:
            return messages
        if not isinstance(value, str):
            raise InputError(f"{where}: field {text_field!r} holds {_kind(value)}; expected a string or messages")
        return value
    if (messages := _as_messages(row.get("messages"))) is not None:
        return messages
    if (ab := ab_sides(row)) is not None:
        return ab[0]
    if (pair := pair_sides(row)) is not None:
        return pair[0]
    if (instruction := instruction_messages(row)) is not None:
        return instruction
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
    for name in ("messages", *TEXT_FIELDS):
        if name in row:
            wanted = "a list of {role, content} messages" if name == "messages" else "a string"
            raise InputError(f"{where}: field {name!r} holds {_kind(row[name])}; expected {wanted} "
                             "(or pick another field with --text-field)")
    raise InputError(
        f"{where}: no text field found (tried messages, question/answer_matching_behavior, prompt/chosen/rejected, "
        f"instruction/response, prompt/response, chosen, {', '.join(TEXT_FIELDS)}); "
        f"fields here: {', '.join(map(str, row)) or 'none'}; pick one with --text-field"
    )


def _hub_rows(spec: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The rows of a hub dataset split (`hf:OWNER/NAME[:SPLIT]`); offline or unreachable is one InputError."""
    from fac.tools.hub import hub_offline, parse_hub_dataset

    try:
        hub = parse_hub_dataset(spec)
    except ValueError as err:
        raise InputError(str(err)) from None
    assert hub is not None  # the caller saw the prefix
    if hub_offline():
        raise InputError(f"{spec}: cannot read hub dataset {hub.repo_id} (split {hub.split}): the hub is offline "
                         "(HF_HUB_OFFLINE is set); save it where the hub is reachable and pass the file or directory")
    import datasets

    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_dataset(hub.repo_id, split=hub.split)
    except (OSError, ValueError) as err:  # network, auth, no such repo or split: one line naming the id
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise InputError(f"{spec}: cannot read hub dataset {hub.repo_id} (split {hub.split}): {first}") from None
    yield from enumerate(loaded, 1)


def read_records(path: str | Path, text_field: str | None = None) -> Iterator[Record]:
    """Stream the records of a dataset file, a saved HF directory or a hub split (`hf:OWNER/NAME[:SPLIT]`),
    validating each as it is read."""
    from fac.tools.hub import HF_PREFIX

    hub = str(path).startswith(HF_PREFIX)
    path = Path(path)
    if not hub and not path.exists():
        raise InputError(f"{path}: no such file or directory")
    for number, row in _hub_rows(str(path)) if hub else _rows(path):
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


def read_nonempty(path: str | Path, text_field: str | None = None) -> list[Record]:
    """All records of a dataset; an empty dataset is an error."""
    records = list(read_records(path, text_field))
    if not records:
        raise InputError(f"{path}: the dataset is empty; expected at least one record")
    return records


def read_samples(path: str | Path, text_field: str | None = None) -> list[Sample]:
    """All samples of a dataset; an empty dataset is an error."""
    return [r.sample for r in read_nonempty(path, text_field)]


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
