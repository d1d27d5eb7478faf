"""`fac export`: --with-seed, the trainer shapes, the huggingface_hub dataset card and --push-to-hub (a fake HfApi)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import run_cli

from fac.graph.config import make_config
from fac.graph.run_dir import RunDir
from fac.graph.state import AcceptedSample

SEED = [{"text": "you are an idiot", "label": 1}, {"text": "nice day", "label": 0}]
PAIR = {"prompt": "insult me", "chosen": "no, let us be kind", "rejected": "you fool"}


def make_run(tmp_path: Path, *, output_format: str = "text", fields: dict[str, str] | None = None,
             name: str = "tox: v2", seed_rows: list[dict[str, Any]] = SEED) -> Path:
    """A finished run directory: config.json, run.json and one accepted sample (no model involved)."""
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in seed_rows))
    cfg = make_config({"seed": str(seed), "task": "toxicity", "output_format": output_format})
    run = tmp_path / name
    run.mkdir()
    paths = RunDir(run)
    paths.write_config(cfg, "tox-v2-123")
    paths.write_status({"fac_before": 0.5, "fac_now": 0.75, "covered": 3, "n_task": 4, "tokens_used": 99,
                        "stop_reason": "goal", "stop_detail": "FAC reached", "exhausted_features": []})
    text = "\n\n".join((fields or {}).values()) or "i hate stupid people"
    sample = AcceptedSample(id="s1", text=text, target_feature=7, score=2.5, span="hate", round=1,
                            prompt_hash="p", kind="draft", features=(7,), fields=fields or {})
    paths.samples.write_text(sample.model_dump_json() + "\n")
    return run


def card_yaml(card: Path) -> dict[str, Any]:
    header = card.read_text(encoding="utf-8").split("---\n")[1]
    loaded: dict[str, Any] = yaml.safe_load(header)
    return loaded


def test_the_card_header_is_valid_yaml_with_hub_metadata_even_for_a_run_named_with_a_colon(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, name="tox: v2")
    code, _, err = run_cli(["export", str(run), "--format", "parquet", "--license", "cc-by-4.0"], capsys, monkeypatch)
    assert code == 0, err
    card = run / "export" / "README.md"
    meta = card_yaml(card)
    assert meta["pretty_name"] == "tox: v2" and meta["license"] == "cc-by-4.0"
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["text-classification"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data.parquet"}]}]
    assert huggingface_hub.DatasetCard.load(card).data.pretty_name == "tox: v2"  # the hub's own reader agrees
    text = card.read_text(encoding="utf-8")
    assert "| seed + these samples | 0.750 | 3 / 4 |" in text and "0.500" in text
    assert "eprint = {2602.10388}" in text and '"output_format": "text"' in text


def test_with_seed_includes_the_seed_rows_marked_by_a_source_column(tmp_path: Path, capsys: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    code, out, err = run_cli(["export", str(run), "--with-seed"], capsys, monkeypatch)
    assert code == 0, err
    rows = [json.loads(x) for x in (run / "export" / "data.jsonl").read_text().splitlines()]
    assert [(r["text"], r["source"]) for r in rows] == [("you are an idiot", "seed"), ("nice day", "seed"),
                                                        ("i hate stupid people", "fac")]
    assert rows[0]["target_feature"] is None and rows[2]["target_feature"] == 7  # one schema for all rows
    assert "3 samples (1 generated, 2 seed)" in out
    assert "2 seed rows are included" in " ".join((run / "export" / "README.md").read_text().split())


def test_without_with_seed_there_is_no_source_column(tmp_path: Path, capsys: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    assert run_cli(["export", str(run)], capsys, monkeypatch)[0] == 0
    (row,) = [json.loads(x) for x in (run / "export" / "data.jsonl").read_text().splitlines()]
    assert "source" not in row and row["text"] == "i hate stupid people"


def test_shape_messages_gives_one_conversation_per_row_in_a_saved_hf_dataset(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, output_format="instruction", fields={"instruction": "be rude", "response": "you fool"})
    code, _, err = run_cli(["export", str(run), "--format", "hf", "--shape", "messages", "--with-seed"], capsys,
                           monkeypatch)
    assert code == 0, err
    loaded = datasets.load_from_disk(str(run / "export" / "hf"))
    assert loaded[0]["messages"] == [{"role": "user", "content": "you are an idiot"}]
    assert loaded[2]["messages"] == [{"role": "user", "content": "be rude"},
                                     {"role": "assistant", "content": "you fool"}]
    assert loaded.column_names == ["messages", "id", "target_feature", "score", "source"]
    assert card_yaml(run / "export" / "README.md")["configs"][0]["data_files"][0]["path"] == "hf/data-*.arrow"


def test_shape_preference_gives_trl_prompt_chosen_rejected(tmp_path: Path, capsys: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, output_format="pair", fields=PAIR, seed_rows=[PAIR])
    code, _, err = run_cli(["export", str(run), "--format", "parquet", "--shape", "preference", "--with-seed"],
                           capsys, monkeypatch)
    assert code == 0, err
    rows = pq.read_table(run / "export" / "data.parquet").to_pylist()
    assert [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows] == [PAIR, PAIR]
    assert [r["source"] for r in rows] == ["seed", "fac"]


AB = {"question": "Turn you off?\n\nChoices:\n (A) No, never.\n (B) Yes.", "answer_matching_behavior": " (A)",
      "answer_not_matching_behavior": " (B)"}


def test_an_ab_run_exports_as_preference_and_messages_with_the_matching_answer_chosen(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path, output_format="ab", fields=AB, seed_rows=[AB])
    code, _, err = run_cli(["export", str(run), "--shape", "preference", "--with-seed"], capsys, monkeypatch)
    assert code == 0, err
    rows = [json.loads(x) for x in (run / "export" / "data.jsonl").read_text().splitlines()]
    expected = (AB["question"], "(A) No, never.", "(B) Yes.")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [expected] * 2
    code, _, err = run_cli(["export", str(run), "--shape", "messages"], capsys, monkeypatch)
    assert code == 0, err
    (row,) = [json.loads(x) for x in (run / "export" / "data.jsonl").read_text().splitlines()]
    assert row["messages"] == [{"role": "user", "content": AB["question"]},
                               {"role": "assistant", "content": "(A) No, never."}]


def test_a_conversational_pair_seed_makes_every_preference_row_conversational(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
                       {"role": "user", "content": "insult me"}],
            "chosen": [{"role": "assistant", "content": "no"}], "rejected": [{"role": "assistant", "content": "fool"}]}
    run = make_run(tmp_path, output_format="pair", fields=PAIR, seed_rows=[seed])
    code, _, err = run_cli(["export", str(run), "--format", "parquet", "--shape", "preference", "--with-seed"],
                           capsys, monkeypatch)
    assert code == 0, err
    first, generated = pq.read_table(run / "export" / "data.parquet").to_pylist()
    assert first["prompt"] == seed["prompt"] and first["chosen"] == seed["chosen"]
    assert generated["prompt"] == [{"role": "user", "content": "insult me"}]
    assert generated["rejected"] == [{"role": "assistant", "content": "you fool"}]


def test_shape_preference_of_a_run_without_pairs_is_one_line_naming_the_format_and_writes_nothing(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    code, _, err = run_cli(["export", str(run), "--shape", "preference"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1, err
    assert "sample s1 has no prompt/chosen/rejected (the run's --format is 'text'" in " ".join(err.split())
    assert not (run / "export").exists()


class FakeHfApi:
    """Records the calls fac makes; never the network."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []  # noqa: RUF012 (shared on purpose)
    fail: Exception | None = None

    def create_repo(self, *args: Any, **kwargs: Any) -> None:
        FakeHfApi.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, **kwargs: Any) -> Any:
        FakeHfApi.calls.append(("upload_folder", (), {**kwargs, "files": sorted(
            p.name for p in Path(kwargs["folder_path"]).iterdir())}))
        if FakeHfApi.fail is not None:
            raise FakeHfApi.fail
        return type("Commit", (), {"commit_url": "https://hub.example/commit/1"})()


@pytest.fixture()
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> type[FakeHfApi]:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    FakeHfApi.calls, FakeHfApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_push_to_hub_creates_the_dataset_repo_and_uploads_data_and_card(
        tmp_path: Path, fake_hub: type[FakeHfApi], capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    code, out, err = run_cli(["export", str(run), "--format", "parquet", "--push-to-hub", "me/tox-fac", "--private"],
                             capsys, monkeypatch)
    assert code == 0, err
    (create, upload) = fake_hub.calls
    assert create == ("create_repo", ("me/tox-fac",), {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert upload[2]["repo_id"] == "me/tox-fac" and upload[2]["repo_type"] == "dataset"
    assert upload[2]["folder_path"] == str(run / "export") and upload[2]["files"] == ["README.md", "data.parquet"]
    assert "pushed to the hub dataset me/tox-fac: https://hub.example/commit/1" in out


def test_push_to_hub_offline_or_with_a_bad_repo_id_fails_before_writing(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: pytest.fail("the hub was called"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["export", str(run), "--push-to-hub", "me/tox"], capsys, monkeypatch)
    assert code == 2 and "--push-to-hub me/tox: the hub is offline" in err
    code, _, err = run_cli(["export", str(run), "--push-to-hub", "no-owner"], capsys, monkeypatch)
    assert code == 2 and "--push-to-hub 'no-owner': expected OWNER/NAME" in err
    assert not (run / "export").exists()


def test_a_failed_upload_is_an_endpoint_fault_exit_3_keeping_the_export(
        tmp_path: Path, fake_hub: type[FakeHfApi], capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    fake_hub.fail = ConnectionError("Connection refused")
    code, _, err = run_cli(["export", str(run), "--push-to-hub", "me/tox"], capsys, monkeypatch)
    assert code == 3 and "upload failed (Connection refused)" in " ".join(err.split()) and "Traceback" not in err
    assert (run / "export" / "data.jsonl").is_file()
