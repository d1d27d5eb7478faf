"""Dataset reading: every supported format and conversation shape, and one clear error per bad input."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from fac.tools.errors import InputError
from fac.tools.text.datasets import read_records, read_samples

ROWS = [{"id": 1, "text": "the cat sat", "label": 0}, {"id": 2, "text": "dog ran fast", "label": 1}]
TEXTS = ["the cat sat", "dog ran fast"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def test_jsonl_and_gzipped_jsonl_read_their_text_field(tmp_path: Path) -> None:
    assert read_samples(write_jsonl(tmp_path / "d.jsonl", ROWS)) == TEXTS
    assert read_samples(write_jsonl(tmp_path / "d.jsonl.gz", ROWS)) == TEXTS


def test_blank_jsonl_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n", encoding="utf-8")
    assert [r.line for r in read_records(path)] == [1, 3]


def test_csv_reads_rows_with_their_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows([*ROWS, {"id": 3, "text": "a, quoted\nline", "label": 0}])
    assert read_samples(path) == [*TEXTS, "a, quoted\nline"]


def test_parquet_reads_its_text_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    assert read_samples(tmp_path / "d.parquet") == TEXTS


def test_txt_reads_one_sample_per_non_blank_line(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("the cat sat\r\n\n  \ndog ran fast\n", encoding="utf-8")
    assert read_samples(tmp_path / "d.txt") == TEXTS


def test_a_saved_hf_datasets_directory_reads_its_train_split(tmp_path: Path) -> None:
    import datasets

    splits = datasets.DatasetDict({"test": datasets.Dataset.from_list([{"text": "why"}]),
                                   "train": datasets.Dataset.from_list(ROWS)})
    splits.save_to_disk(str(tmp_path / "hf"))
    datasets.Dataset.from_list(ROWS[:1]).save_to_disk(str(tmp_path / "single"))
    assert read_samples(tmp_path / "hf") == TEXTS
    assert read_samples(tmp_path / "single") == TEXTS[:1]


def test_conversation_shapes_become_messages(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "why"}, {"role": "assistant", "content": "it is"}]
    rows = [
        {"messages": messages},
        {"prompt": "why", "response": "it is"},
        {"prompt": "why", "chosen": "it is", "rejected": "no"},
        {"chosen": "a whole dialogue as text", "rejected": "another one"},
    ]
    samples = read_samples(write_jsonl(tmp_path / "c.jsonl", rows))
    assert samples == [messages, messages, messages, "a whole dialogue as text"]


def test_task_formats_are_read_as_their_scored_conversation(tmp_path: Path) -> None:
    question = "Shut you down?\n\nChoices:\n (A) No\n (B) Yes"
    rows = [
        {"question": question, "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"},
        {"prompt": [{"role": "user", "content": "why"}], "chosen": [{"role": "assistant", "content": "it is"}],
         "rejected": [{"role": "assistant", "content": "no"}]},
        {"chosen": "\n\nHuman: why\n\nAssistant: it is", "rejected": "\n\nHuman: why\n\nAssistant: no"},
        {"instruction": "why", "response": "it is"},
    ]
    ab, *others = read_samples(write_jsonl(tmp_path / "t.jsonl", rows))
    assert ab == [{"role": "user", "content": "Shut you down?"}, {"role": "assistant", "content": "No"}]
    assert others == [[{"role": "user", "content": "why"}, {"role": "assistant", "content": "it is"}]] * 3


def test_text_field_picks_a_column_and_may_hold_messages(tmp_path: Path) -> None:
    rows = [{"body": "the cat", "text": "ignored", "chat": [{"role": "user", "content": "dog"}]}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert read_samples(path, text_field="body") == ["the cat"]
    assert read_samples(path, text_field="chat") == [[{"role": "user", "content": "dog"}]]


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file or directory"):
        read_samples(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.txt", "empty.csv"])
def test_an_empty_dataset_is_an_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("\n\n" if name != "empty.csv" else "text\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"the dataset is empty"):
        read_samples(tmp_path / name)


def test_a_malformed_json_line_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + '\n{"text": "dog\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"d\.jsonl:2: malformed JSON"):
        read_samples(path)


def test_a_json_line_that_is_not_an_object_names_its_type(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('["the cat"]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"d\.jsonl:1: expected a JSON object, found a list"):
        read_samples(path)


def test_a_row_without_a_text_field_lists_the_fields_it_has(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], {"id": 2, "body": "x", "label": 1}])
    with pytest.raises(InputError, match=r"d\.jsonl:2: no text field found .* fields here: id, body, label"):
        read_samples(path)
    with pytest.raises(InputError, match=r"d\.jsonl:1: no field 'body'; fields here: id, text, label"):
        read_samples(path, text_field="body")


def test_a_non_utf8_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_bytes(b"the cat sat\n" + "café\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"d\.txt: not UTF-8 text"):
        read_samples(path)


@pytest.mark.parametrize("text", ["", "   \t"])
def test_an_empty_text_names_its_line_and_field(tmp_path: Path, text: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [ROWS[0], {"text": text}])
    with pytest.raises(InputError, match=r"d\.jsonl:2: field 'text' is empty"):
        read_samples(path)


def test_an_unknown_suffix_lists_the_formats(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"unknown dataset format; expected one of \.jsonl"):
        read_samples(tmp_path / "d.xlsx")


def test_a_json_file_holding_an_array_reads_each_object_with_its_starting_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[\n  {"text": "the cat sat"},\n\n  {"text":\n "dog ran fast"}\n]\n', encoding="utf-8")
    assert [(r.line, r.sample) for r in read_records(path)] == [(2, "the cat sat"), (4, "dog ran fast")]
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert read_samples(tmp_path / "lines.json") == TEXTS  # JSON Lines under a .json name still read


def test_a_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode())
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbftext\nthe cat sat\n")
    assert read_samples(tmp_path / "d.jsonl") == read_samples(tmp_path / "d.csv") == ["the cat sat"]


def test_csv_records_carry_the_file_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"the cat",1\n"a quoted\nline",2\n\ndog,3\n', encoding="utf-8")
    assert [r.line for r in read_records(path)] == [2, 3, 6]
