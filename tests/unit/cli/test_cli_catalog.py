"""`fac catalog build|show|export` end to end on the tiny model; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from fakes import ScriptedChat
from langchain_core.exceptions import ModelRateLimitError

from fac.commands import catalog as catalog_command
from fac.commands import options
from fac.tools.catalog.records import Catalog
from fac.tools.text import embeddings
from fac.tools.text.embeddings import HashingEmbedder

TOXIC = ["hate", "kill", "stupid", "bad"]
CALM = ["cat", "dog", "sat", "mat", "red", "blue"]
FILLER = ["the", "a", "and", "is", "on", "very"]


def corpus(path: Path, words: list[str], seed: int, n: int = 20) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words + FILLER) for _ in range(6))}) + "\n"
                            for _ in range(n)))
    return path


@pytest.fixture()
def fac(tiny_space: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `fac ...` in-process on the tiny space; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(options.SpaceOptions, "load", lambda self: tiny_space)
    monkeypatch.setattr(embeddings, "default_embedder", lambda: HashingEmbedder(32))

    def run(*args: str) -> tuple[int, str, str]:
        return run_cli(list(args), capsys, monkeypatch)

    return run


def test_build_stores_and_writes_the_catalog_and_show_reads_it_back(fac: Any, tmp_path: Path) -> None:
    guideline = tmp_path / "g.md"
    guideline.write_text("Violent or hateful text.")
    anchor, background = corpus(tmp_path / "a.jsonl", TOXIC, 1), corpus(tmp_path / "b.jsonl", CALM, 2)
    code, out, err = fac("catalog", "build", "--task", "violence", "--guideline", str(guideline), "--anchor",
                         str(anchor), "--background", str(background), "--min-positive", "3",
                         "--out", str(tmp_path / "c.json"), "--parquet", str(tmp_path / "c.parquet"))
    assert code == 0, err
    written = Catalog.load_json(tmp_path / "c.json")
    assert written.task == "violence" and written.task_features()
    assert Catalog.load_parquet(tmp_path / "c.parquet") == written
    assert "task-relevant" in out and "fac-catalog-violence-" in err
    code, out, err = fac("catalog", "show", "--task", "violence", "--json")  # from chroma; no guideline needed
    assert code == 0, err
    assert Catalog.model_validate_json(out) == written
    feature = written.task_features()[0]
    code, out, _ = fac("catalog", "show", "--task", "violence", "--feature", str(feature))
    assert code == 0 and f"feature {feature}: task-relevant" in out and written.record(feature).evidence[0].span in out
    code, _, err = fac("catalog", "export", "--task", "violence", "--parquet", str(tmp_path / "e.parquet"))
    assert code == 0, err
    assert Catalog.load_parquet(tmp_path / "e.parquet") == written


def test_judge_build_shows_every_judged_feature_and_what_the_judge_spent(fac: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def reply(call: int) -> str:  # explain, verify, relevance per feature; the second feature is judged No
        return ["Hateful words.", "Final Decision: [[Yes]]", f"Final Decision: [[{'Yes' if call < 4 else 'No'}]]"][
            (call - 1) % 3]

    chat = ScriptedChat(script=[reply])
    monkeypatch.setattr(catalog_command, "_chat", lambda *args: (chat, "scripted@test"))
    anchor = corpus(tmp_path / "a.jsonl", TOXIC, 1)
    code, out, err = fac("catalog", "build", "--task", "toxicity", "--anchor", str(anchor), "--method", "judge",
                         "--judge-local", "--max-features", "2", "--no-store", "--out", str(tmp_path / "c.json"))
    assert code == 0, err
    written = Catalog.load_json(tmp_path / "c.json")
    assert [r.decision for r in sorted(written.records, key=lambda r: -r.activation_rate)] == ["Yes", "No"]
    assert all(f" {r.feature} " in out for r in written.records)  # the rejected feature is listed too
    assert "judge scripted@test: 2 features judged, 1 relevant; 6 calls (0 answered from the cache)" in err
    assert "600 input / 120 output tokens spent" in err


HTML_REPLY = ValueError("Unexpected response type from OpenAI-compatible endpoint. Expected a dict or "
                        "openai.BaseModel, got str: '<html><body>It works!</body></html>'")  # langchain-openai's


@pytest.mark.parametrize(("fault", "expected"), [
    (ModelRateLimitError("429 Too Many Requests"), "stopped: ModelRateLimitError from 'down@test'"),
    (HTML_REPLY, "stopped: the endpoint for 'down@test' answered with something that is not an OpenAI chat"),
])
def test_a_judge_endpoint_that_stays_down_or_serves_html_is_one_line_and_exit_code_3(
        fac: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Exception, expected: str) -> None:
    chat = ScriptedChat(script=[fault])
    monkeypatch.setattr(catalog_command, "_chat", lambda *args: (chat, "down@test"))
    anchor = corpus(tmp_path / "a.jsonl", TOXIC, 1)
    code, _, err = fac("catalog", "build", "--task", "toxicity", "--anchor", str(anchor), "--method", "judge",
                       "--judge-local", "--max-features", "2", "--no-store")
    lines = [line for line in err.splitlines() if line.strip() and "━" not in line]
    assert code == 3 and "Traceback" not in err
    assert lines[-1].startswith(expected)


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def test_an_unknown_task_is_one_line_listing_the_known_ones(fac: Any) -> None:
    line = one_line_error(*fac("catalog", "build", "--task", "toxicty")[::2])
    assert "unknown task 'toxicty'" in line
    assert "helpfulness, instruction_following, survival_instinct, sycophancy, toxicity" in line
    line = one_line_error(*fac("catalog", "show", "--task", "toxicty")[::2])
    assert "unknown task" in line


def test_a_catalog_file_for_another_task_is_refused(fac: Any, tmp_path: Path) -> None:
    Catalog(task="toxicity", method="contrast", space={"model": "m"}, records=()).save_json(tmp_path / "c.json")
    line = one_line_error(*fac("catalog", "show", "--task", "helpfulness", "--catalog", str(tmp_path / "c.json"))[::2])
    assert "is for task 'toxicity', not 'helpfulness'" in line


@pytest.mark.parametrize(("args", "expected"), [
    (["--method", "judge"], "exactly one of --judge-model"),
    (["--method", "llm"], "expected contrast or judge"),
    (["--judge-local"], "apply to --method judge only"),
    (["--anchor", "missing.jsonl"], "missing.jsonl: no such file (--anchor)"),
    (["--q-max", "0"], "--q-max 0.0: the FDR level must lie in (0, 1]"),
    (["--min-log-odds", "nan"], "--min-log-odds nan: expected a finite number >= 0"),
])
def test_bad_build_options_are_one_line_errors(fac: Any, args: list[str], expected: str) -> None:
    line = one_line_error(*fac("catalog", "build", "--task", "toxicity", *args)[::2])
    assert expected in line


def test_contrast_on_a_custom_task_without_background_says_how_to_fix_it(fac: Any, tmp_path: Path) -> None:
    guideline = tmp_path / "g.md"
    guideline.write_text("Anything.")
    line = one_line_error(*fac("catalog", "build", "--task", "mine", "--guideline", str(guideline), "--anchor",
                               str(corpus(tmp_path / "a.jsonl", TOXIC, 1)), "--no-store")[::2])
    assert "--background" in line and "--label-field" in line
