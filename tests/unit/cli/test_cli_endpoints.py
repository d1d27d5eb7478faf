"""One set of endpoint flags in every command, --layer in both numberings, and endpoint faults before any model
loads (a loopback http.server stands in for the endpoint)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import run_cli

from fac.commands.options import parse_layer
from fac.tools.space.features import FeatureSpace


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FeatureSpace, "load", classmethod(lambda cls, *a, **k: pytest.fail("a model loaded")))


@pytest.fixture()
def seed(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps({"text": "the cat sat"}) + "\n")
    return path


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.mark.parametrize(("given", "hidden_states"), [("15", 15), ("blocks.14", 15), ("blocks.14.hook_resid_post", 15),
                                                      ("0", 0), (15, 15)])
def test_layer_reads_hidden_states_or_the_saes_block_numbering(given: str | int, hidden_states: int) -> None:
    assert parse_layer(given) == hidden_states


@pytest.mark.parametrize("given", ["blocks.x", "-1", "layer15"])
def test_a_layer_in_neither_numbering_is_refused(given: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_layer(given)


def test_fac_run_with_an_endpoint_generator_and_no_key_fails_before_loading_or_writing(
        seed: Path, tmp_path: Path, no_model: None, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "runs" / "tox"
    code, _, err = run_cli(["run", str(seed), "--task", "toxicity", "--out", str(out), "--generator", "openai",
                            "--generator-model", "gpt-4o-mini"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "$OPENAI_API_KEY is not set" in err, err
    assert "name another variable with --generator-key-env" in " ".join(err.split())
    assert not out.exists()


@pytest.mark.parametrize("url_flag", ["--generator-base-url", "--base-url"])  # the old spelling still works
def test_fac_run_against_an_unreachable_generator_is_one_line_exit_3_before_loading_or_writing(
        url_flag: str, seed: Path, tmp_path: Path, no_model: None, capsys: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, out = closed_url(), tmp_path / "runs" / "tox"
    code, _, err = run_cli(["run", str(seed), "--task", "toxicity", "--out", str(out), "--generator", "openai",
                            "--generator-model", "m", url_flag, url], capsys, monkeypatch)
    flat = " ".join(err.split())
    assert code == 3 and f"generator endpoint {url} is unreachable" in flat and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("key_flag", ["--judge-key-env", "--key-env"])
def test_catalog_build_judge_flags_are_the_shared_ones_and_a_missing_key_fails_before_loading(
        key_flag: str, no_model: None, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    code, _, err = run_cli(["catalog", "build", "--task", "toxicity", "--method", "judge", "--no-store",
                            "--judge-model", "gpt-4o-mini", "--judge-base-url", "https://example.invalid/v1",
                            key_flag, "JUDGE_KEY"], capsys, monkeypatch)
    assert code == 2 and "$JUDGE_KEY is not set" in err and err.count("\n") == 1, err


@pytest.mark.parametrize("url_flag", ["--judge-base-url", "--judge-url"])
def test_coverage_strict_against_an_unreachable_judge_exits_3_before_loading(
        url_flag: str, seed: Path, no_model: None, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_url()
    code, _, err = run_cli(["coverage", str(seed), "--task", "toxicity", "--strict", "--judge-model", "m",
                            url_flag, url], capsys, monkeypatch)
    assert code == 3 and f"judge endpoint {url} is unreachable" in " ".join(err.split()), err


def test_the_api_checks_an_endpoint_generator_before_writing_the_run(seed: Path, tmp_path: Path, no_model: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import fac
    from fac.tools.errors import TransientError

    out = tmp_path / "runs" / "api"
    with pytest.raises(TransientError, match=r"generator endpoint .* is unreachable"):
        fac.synthesize(str(seed), task="toxicity", out=out, generator="openai", generator_model="m",
                       base_url=closed_url())
    assert not out.exists()


@pytest.mark.parametrize(("command", "old", "new"), [
    (["run"], ["--base-url", "--api-key-env"], ["--generator-base-url", "--generator-key-env"]),
    (["catalog", "build"], ["--base-url", "--key-env"], ["--judge-base-url", "--judge-key-env"]),
    (["coverage"], ["--judge-url"], ["--judge-base-url", "--judge-key-env"]),
])
def test_help_shows_the_shared_flag_names_and_hides_the_old_spellings(command: list[str], old: list[str],
                                                                      new: list[str], capsys: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli([*command, "--help"], capsys, monkeypatch)
    assert code == 0 and all(flag in out for flag in new)
    assert not any(f"{flag} " in out or f"{flag}," in out for flag in old), out


def test_a_new_flag_and_its_old_spelling_together_are_refused(seed: Path, tmp_path: Path, no_model: None,
                                                              capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["run", str(seed), "--task", "toxicity", "--out", str(tmp_path / "r"), "--generator",
                            "openai", "--generator-base-url", "http://a/v1", "--base-url", "http://b/v1"],
                           capsys, monkeypatch)
    assert code == 2 and "--generator-base-url 'http://a/v1' and its old spelling --base-url" in err, err
