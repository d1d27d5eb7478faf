"""`fac trace` and `fac report` on a tiny real run: listings, a feature's story, full calls, JSON, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from trace_world import HIT, MISS, Demo, tiny_space

MARKUP = "[bold]not markup[/] [/nope]"  # rich markup in model output must print as text


@pytest.fixture(scope="module")
def run_dir(tiny_lm: Any, tiny_tokenizer: Any, tiny_sae: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli-trace")
    demo = Demo(tiny_space(tiny_lm, tiny_tokenizer, tiny_sae, tmp), tmp)
    paths, _, _ = demo.run([f"{MISS} {MARKUP}", HIT])
    (paths.root / "target.txt").write_text(str(demo.target))
    return paths.root


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables 200 columns wide, so that no row wraps."""
    monkeypatch.setenv("COLUMNS", "200")


def test_trace_lists_rounds_and_steps(run_dir: Path, capsys: Any, monkeypatch: Any) -> None:
    code, out, _ = run_cli(["trace", str(run_dir)], capsys, monkeypatch)
    assert code == 0
    assert "7 steps, 2 LLM calls" in out and "session 1: done" in out
    for node in ("measure", "plan", "generate", "verify"):
        assert node in out
    assert "picked" in out and "target-not-activated 1" in out and "stop: goal" in out and "1.000" in out
    code, out, _ = run_cli(["trace", str(run_dir), "--json"], capsys, monkeypatch)
    data = json.loads(out)
    assert code == 0 and [s["node"] for s in data["steps"]] == ["measure", "plan", "generate", "verify", "plan",
                                                                 "generate", "verify"]
    assert [s["calls"] for s in data["steps"]] == [0, 0, 1, 0, 0, 1, 0] and data["steps"][2]["tokens_in"] == 100


def test_trace_feature_tells_its_story_in_order(run_dir: Path, capsys: Any, monkeypatch: Any) -> None:
    target = (run_dir / "target.txt").read_text()
    code, out, _ = run_cli(["trace", str(run_dir), "--feature", target], capsys, monkeypatch)
    assert code == 0 and f"feature {target}: covered" in out and "2 attempts" in out
    rows = [line for line in out.splitlines() if line.startswith("│ ") and line[2].isdigit()]
    assert ["rejected" in rows[0], "accepted" in rows[1]] == [True, True] and MARKUP in out
    code, out, _ = run_cli(["trace", str(run_dir), "--feature", target, "--json"], capsys, monkeypatch)
    story = json.loads(out)
    assert [(a["round"], a["decision"], a["call_ref"]) for a in story["attempts"]] == [(1, "rejected", "3.1"),
                                                                                      (2, "accepted", "6.1")]


def test_trace_step_shows_full_prompts_and_replies(run_dir: Path, capsys: Any, monkeypatch: Any) -> None:
    code, out, _ = run_cli(["trace", str(run_dir), "--step", "3"], capsys, monkeypatch)
    assert code == 0 and "step 3: generate, round 1" in out and "call 3.1 · scripted · 100 in / 20 out" in out
    assert "[system]" in out and "Write one new example for this dataset." in out and MARKUP in out
    code, out, _ = run_cli(["trace", str(run_dir), "--step", "6.1", "--json"], capsys, monkeypatch)
    data = json.loads(out)
    assert code == 0 and data["calls"][0]["response"] == HIT and data["calls"][0]["ref"] == "6.1"
    assert any("Bad example" in m["content"] for m in data["calls"][0]["prompt"])  # the retry's contrastive prompt
    code, out, _ = run_cli(["trace", str(run_dir), "--step", "4"], capsys, monkeypatch)
    assert code == 0 and "verdicts" in out and "rejected" in out


@pytest.mark.parametrize(("args", "message"), [
    (["trace", "{tmp}/missing"], "no such run directory"),
    (["trace", "{tmp}"], "not a fac run directory"),
    (["trace", "{run}", "--feature", "9999"], "feature 9999 does not appear"),
    (["trace", "{run}", "--step", "99"], "step 99 is not in the trace"),
    (["trace", "{run}", "--step", "3.7"], "has 1 LLM calls; there is no call 3.7"),
    (["trace", "{run}", "--step", "three"], "expected a step number"),
    (["trace", "{run}", "--step", "3", "--feature", "1"], "not both"),
    (["report", "{tmp}/missing"], "no such run directory"),
])
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str, run_dir: Path, tmp_path: Path,
                                               capsys: Any, monkeypatch: Any) -> None:
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    code, out, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("error:") and not out


def test_half_written_run_directory_is_refused(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_cli(["trace", str(tmp_path)], capsys, monkeypatch)
    assert code == 2 and "has no trace" in err
    (tmp_path / "trace.sqlite").write_bytes(b"")
    code, _, err = run_cli(["report", str(tmp_path)], capsys, monkeypatch)
    assert code == 2 and "not a fac trace" in err and err.count("\n") == 1


def test_report_writes_one_html_file(run_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    code, out, _ = run_cli(["report", str(run_dir), "--out", str(tmp_path / "r.html")], capsys, monkeypatch)
    assert code == 0 and str(tmp_path / "r.html") in out
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<svg id="coverage-plot"' in page and "[bold]not markup[/] [/nope]" in page
