"""`fac run` and `fac export` end to end on the tiny space with a scripted generator; one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from fac.graph import runner
from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.space.features import FeatureSpace

REAL_MAKE_WRITER = runner.make_writer  # before any fixture replaces it
SEED = ["the cat sat on the mat", "the dog ran home"]
HIT = "i hate stupid people"
ANCHOR = "we hate them all"  # the evidence a prompt shows: a draft copying it is regurgitation


class Replies(BaseChatModel):
    """Always the same reply, with usage; counts calls."""

    reply: str
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "fixed"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        usage = {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply, usage_metadata=usage))])


@pytest.fixture()
def setup(tiny_space: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The tiny space behind --model/--sae, a scripted generator, a seed file and a catalog with one missing feature."""
    seen = {int(j) for s in tiny_space.score(SEED) for j in s.active(0.0)}
    target = next(int(j) for j in tiny_space.score([HIT])[0].active(0.0) if int(j) not in seen)
    records = tuple(FeatureRecord(feature=j, relevant=True, activation_rate=0.1, method="contrast",
                                  evidence=(FeatureEvidence(score=2.0, span="hate", sample=ANCHOR),))
                    for j in [*sorted(seen)[:3], target])
    catalog = tmp_path / "catalog.json"
    Catalog(task="toxicity", method="contrast", space=tiny_space.describe(), records=records).save_json(catalog)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in SEED))
    chat = Replies(reply=HIT)
    monkeypatch.setattr(FeatureSpace, "load", classmethod(lambda cls, *a, **k: tiny_space))
    monkeypatch.setattr(runner, "make_writer", lambda cfg, space=None: chat)
    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))  # the membership model fitted for the tiny space
    return {"seed": seed, "catalog": catalog, "chat": chat, "target": target, "out": tmp_path / "runs" / "demo"}


def _new_run(setup: dict[str, Any], *extra: str) -> list[str]:
    return ["run", str(setup["seed"]), "--task", "toxicity", "--out", str(setup["out"]), "--catalog",
            str(setup["catalog"]), "--embedder", "hashing", "--goal-fac", "1.0", "--min-per-feature", "1",
            "--drafts-per-feature", "1", *extra]


def test_run_fills_the_missing_feature_then_export_writes_data_and_card(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(_new_run(setup), capsys, monkeypatch)
    assert code == 0, err
    assert "FAC 0.750 -> 1.000" in out and "1 accepted samples" in out and "stop: goal" in out
    run_dir = setup["out"]
    (sample,) = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sample["text"] == HIT and sample["target_feature"] == setup["target"]
    status = json.loads((run_dir / "run.json").read_text())
    assert status["stop_reason"] == "goal" and status["fac_now"] == 1.0 and (run_dir / "run.log").is_file()

    code, out, _ = run_cli(["export", str(run_dir), "--format", "parquet"], capsys, monkeypatch)
    assert code == 0 and "1 samples" in out
    table = pq.read_table(run_dir / "export" / "data.parquet").to_pylist()
    assert table[0]["text"] == HIT and table[0]["target_feature"] == setup["target"]
    card = (run_dir / "export" / "README.md").read_text()
    assert "| seed (" in card and "0.750 |" in card and "| seed + these samples | 1.000 |" in card
    assert '"goal_fac": 1.0' in card

    calls = setup["chat"].calls
    code, out, _ = run_cli(["run", "--resume", str(run_dir)], capsys, monkeypatch)
    assert code == 0 and "stop: goal" in out and setup["chat"].calls == calls  # nothing left to do


class DownEndpoint(Replies):
    """A generator whose endpoint keeps failing after the client's retries."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        raise ModelRateLimitError("429 Too Many Requests")


def test_a_run_stopped_by_endpoint_faults_exits_3_and_resumes_to_its_goal(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    down = DownEndpoint(reply="")
    monkeypatch.setattr(runner, "make_writer", lambda cfg, space=None: down)
    code, _, err = run_cli(_new_run(setup), capsys, monkeypatch)
    assert code == 3 and down.calls > 0
    assert f"continue with: fac run --resume {setup['out']}" in "".join(err.split("\n"))
    monkeypatch.setattr(runner, "make_writer", lambda cfg, space=None: setup["chat"])
    code, out, _ = run_cli(["run", "--resume", str(setup["out"])], capsys, monkeypatch)
    assert code == 0 and "stop: goal" in out and setup["chat"].calls > 0


def test_a_run_directory_with_another_config_is_refused_with_the_differing_fields(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(_new_run(setup), capsys, monkeypatch)[0] == 0
    code, _, err = run_cli(_new_run(setup, "--temperature", "0.3"), capsys, monkeypatch)
    assert code == 2 and "temperature: 0.8 -> 0.3" in err and len(err.strip().splitlines()) <= 3


def test_resume_of_a_missing_run_is_a_one_line_error_with_exit_code_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["run", "--resume", str(tmp_path / "nope")], capsys, monkeypatch)
    assert code == 2 and "no run to resume" in err and "Traceback" not in err


def test_export_of_a_directory_that_is_not_a_run_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["export", str(tmp_path), "--format", "jsonl"], capsys, monkeypatch)
    assert code == 2 and "not a fac run directory" in err


def _damaged_run(root: Path, *, config: str, status: str | None) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(config)
    if status is not None:
        (root / "run.json").write_text(status)
    return root


@pytest.mark.parametrize(("config", "status", "named"), [
    ('{"run_id": "r", "config": {"seed"', '{}', "config.json"),  # truncated config.json
    ('{"run_id": "r", "config": {}}', '{"phase": "runn', "run.json"),  # truncated run.json
    ('[1, 2]', None, "config.json"),  # not an object
])
def test_export_and_report_of_a_damaged_run_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config: str,
        status: str | None, named: str) -> None:
    run_dir = _damaged_run(tmp_path / "run", config=config, status=status)
    for argv in (["export", str(run_dir)], ["report", str(run_dir)], ["run", "--resume", str(run_dir)]):
        code, _, err = run_cli(argv, capsys, monkeypatch)
        assert code == 2, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert named in err or argv[0] == "run", (argv, err)  # resume names what its config lacks


def test_status_shows_the_run_json_figures_and_version_prints(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(_new_run(setup), capsys, monkeypatch)
    assert code == 0, err
    code, out, _ = run_cli(["status", str(setup["out"])], capsys, monkeypatch)
    assert code == 0 and "· done" in out and "FAC 0.750 -> 1.000 (goal 1.0)" in out and "accepted 1" in out
    assert "stop: goal" in out
    code, out, _ = run_cli(["status", str(setup["out"]), "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["accepted"] == 1
    code, _, err = run_cli(["status", str(setup["out"].parent)], capsys, monkeypatch)
    assert code == 2 and "not a fac run directory" in err
    code, out, _ = run_cli(["--version"], capsys, monkeypatch)
    from fac import __version__

    assert code == 0 and out.strip() == f"fac {__version__}"


def test_a_yaml_config_carries_seed_task_and_out_and_flags_override_it(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"seed: {setup['seed']}\ntask: toxicity\nout: {setup['out']}\ncatalog: {setup['catalog']}\n"
                      "embedder: hashing\ngoal_fac: 0.5\nmin_per_feature: 1\ndrafts_per_feature: 1\n")
    code, out, err = run_cli(["run", "--config", str(config), "--goal-fac", "1.0"], capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((setup["out"] / "config.json").read_text())["config"]
    assert saved["goal_fac"] == 1.0 and saved["embedder"] == "hashing"  # the flag won over the file
    assert "FAC 0.750 -> 1.000" in out
    # a run's own config.json starts an identical run elsewhere
    again = tmp_path / "again"
    code, out, err = run_cli(["run", "--config", str(setup["out"] / "config.json"), "--out", str(again)], capsys,
                             monkeypatch)
    assert code == 0, err
    assert json.loads((again / "config.json").read_text())["fingerprint"] == json.loads(
        (setup["out"] / "config.json").read_text())["fingerprint"]


def test_dry_run_prints_the_plan_without_a_generator_or_a_run_directory(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "make_writer", lambda cfg, space=None: pytest.fail("the generator loaded"))
    code, out, err = run_cli([*_new_run(setup), "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    assert '"goal_fac": 1.0' in out and "F_task: 4 features" in out and "FAC 0.750, 1 missing" in out
    assert f"missing: {setup['target']}" in out and "generator tokens: at least ~" in out
    assert not setup["out"].exists()


def test_a_config_file_that_does_not_parse_is_one_line(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    code, _, err = run_cli(["run", "--config", str(bad)], capsys, monkeypatch)
    assert code == 2 and "bad.yaml: cannot parse" in err and "Traceback" not in err


class _HtmlPage(BaseHTTPRequestHandler):
    """A web server where an OpenAI-compatible endpoint was expected: HTTP 200 and an HTML page to every POST."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        page = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def html_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)  # loopback only
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_an_endpoint_answering_with_an_html_page_stops_the_run_with_exit_3_and_no_traceback(
        setup: dict[str, Any], html_endpoint: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "make_writer", REAL_MAKE_WRITER)
    code, _, err = run_cli(_new_run(setup, "--generator", "openai", "--base-url", html_endpoint,
                                    "--generator-model", "served", "--max-retries", "0"), capsys, monkeypatch)
    assert code == 3 and "Traceback" not in err, err
    flat = "".join(err.split())  # the console wraps long lines
    assert "notanOpenAIchatcompletion(str:'<html><body>Itworks!" in flat and "checkthebaseURL" in flat
    assert err.startswith("stopped:") or "\nstopped:" in err  # the endpoint-fault line, then the resume command


def test_gate_flags_reach_the_resolved_config(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli([*_new_run(setup), "--no-gate", "membership", "--no-gate", "novelty",
                              "--max-copied-share", "0.7", "--membership-threshold", "0.4", "--dry-run"],
                             capsys, monkeypatch)
    assert code == 0, err
    for field in ('"gate_membership": false', '"novelty_distance": 0.0', '"max_copied_share": 0.7',
                  '"membership_threshold": 0.4', '"gate_meta_text": true', '"gate_regurgitation": true'):
        assert field in out


def test_an_unknown_gate_is_one_line_naming_the_flag(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli([*_new_run(setup), "--no-gate", "spelling"], capsys, monkeypatch)
    assert code == 2 and "--no-gate spelling: expected one of meta-text, regurgitation, membership, novelty" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_catalog_membership_fits_and_writes_the_model_a_run_then_uses(
        setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    anchor, background, model = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "membership.json"
    toxic = [f"{who} hate {what} people" for who in ("i", "we", "they", "you") for what in
             ("stupid", "bad", "very stupid", "not nice", "very bad")]
    benign = [f"{who} {did}" for who in ("the cat", "the dog", "a cat", "a dog") for did in
              ("sat on the mat", "ran home", "is fast", "is slow", "ran on the mat")]
    anchor.write_text("".join(json.dumps({"text": t}) + "\n" for t in toxic))
    background.write_text("".join(json.dumps({"text": t}) + "\n" for t in benign))
    code, out, err = run_cli(["catalog", "membership", "--task", "toxicity", "--anchor", str(anchor),
                              "--background", str(background), "--out", str(model)], capsys, monkeypatch)
    assert code == 0, err
    said = " ".join(err.split())  # the summary goes to the console (stderr), as `fac catalog build`'s does
    assert "membership model of toxicity: threshold" in said and "held-back anchor samples" in said
    assert model.is_file()
    code, out, err = run_cli([*_new_run(setup), "--membership-model", str(model)], capsys, monkeypatch)
    assert code == 0, err
    assert "FAC 0.750 -> 1.000" in out, out  # the scripted draft is a member by this model
