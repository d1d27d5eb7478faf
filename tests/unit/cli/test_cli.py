"""The CLI: bad input is one line on stderr with exit code 2; `fac features --json` reports features and spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_sae, run_cli

from fac.commands.options import SpaceOptions
from fac.tools.space.sae_training import save_sae

REPO = Path(__file__).resolve().parents[3]


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `fac argv` in-process; returns (exit code, stdout, stderr)."""
    return run_cli(argv, capsys, monkeypatch)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_a_missing_sae_path_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, _, err = run(["features", "the cat", "--sae", "/no/such/sae"], monkeypatch, capsys)
    assert_one_line_error(code, err, "SAE path /no/such/sae does not exist")


def test_a_missing_model_path_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    code, _, err = run(["features", "the cat", "--sae", str(tmp_path / "sae"), "--model", "/no/such/model"],
                       monkeypatch, capsys)
    assert_one_line_error(code, err, "model path /no/such/model does not exist")


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_text_is_one_line_exit_2(text: str, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, _, err = run(["features", "the cat", text], monkeypatch, capsys)
    assert_one_line_error(code, err, "text 2: empty text")


def test_a_non_utf8_file_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (tmp_path / "d.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    code, _, err = run(["features", "--file", str(tmp_path / "d.txt")], monkeypatch, capsys)
    assert_one_line_error(code, err, "not UTF-8 text")


def test_a_malformed_jsonl_line_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: Any) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "the cat"}\n{"text": \n', encoding="utf-8")
    code, _, err = run(["features", "-f", str(tmp_path / "d.jsonl")], monkeypatch, capsys)
    assert_one_line_error(code, err, "d.jsonl:2: malformed JSON")


def test_texts_and_file_together_or_neither_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, _, err = run(["features"], monkeypatch, capsys)
    assert_one_line_error(code, err, "not both or neither")
    code, _, err = run(["features", "--mode", "dense", "the cat"], monkeypatch, capsys)
    assert_one_line_error(code, err, "--mode 'dense'")


def test_an_unknown_option_is_a_usage_error_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, _, err = run(["features", "the cat", "--no-such-option"], monkeypatch, capsys)
    assert_one_line_error(code, err, "--no-such-option")


def test_square_brackets_in_a_message_are_printed_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: Any) -> None:
    missing = tmp_path / "d[bold]" / "x[/y].jsonl"  # rich markup would eat or choke on these
    code, _, err = run(["features", "--file", str(missing)], monkeypatch, capsys)
    assert_one_line_error(code, err, f"{missing}: no such file or directory")


def test_no_arguments_shows_the_help_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    code, out, err = run([], monkeypatch, capsys)
    assert code == 2 and "Usage" in out + err and "Traceback" not in out + err


def test_the_installed_command_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    fac = Path(sys.executable).parent / "fac"
    if not fac.exists():
        pytest.skip(f"no fac console script beside {sys.executable}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "60"}
    done = subprocess.run([str(fac), "features", "--file", str(tmp_path / "missing.jsonl")], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.jsonl'}: no such file or directory"]
    assert done.stdout == ""


def test_features_json_lists_each_texts_features_with_score_and_span(
    tiny_space: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(SpaceOptions, "load", lambda _self: tiny_space)
    texts = ["the cat sat on the mat", "why is it bad"]
    code, out, _ = run(["features", *texts, "--json", "--top", "5"], monkeypatch, capsys)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == texts
    for record, text in zip(records, texts, strict=True):
        assert (record["model"], record["layer"], record["sae"]) == ("tiny-llama", 1, "tiny-sae")
        assert len(record["features"]) == 5
        scores = [f["score"] for f in record["features"]]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
        for feature in record["features"]:
            assert 0 <= feature["id"] < tiny_space.d_sae
            start, end = feature["span_chars"]
            assert feature["span"] == text[start:end] and feature["span"]
        best = tiny_space.score([text])[0].top(1)[0]
        assert record["features"][0]["id"] == best.feature


def test_a_local_judge_shares_the_spaces_model_only_when_that_is_the_embedded_default(tiny_space: Any) -> None:
    from fac.commands.options import shared_default_model

    shared = shared_default_model(tiny_space, "default")
    assert shared.model is tiny_space.reader.model and shared.tokenizer is tiny_space.reader.tokenizer
    assert shared.model_id == tiny_space.model_id
    assert shared_default_model(tiny_space, "HuggingFaceTB/SmolLM2-360M-Instruct") is None
