"""`fac report`'s page: the run's numbers, the curve, escaped hostile text, no keys; bad run directories."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from trace_world import HIT, MISS, Demo, tiny_space

from fac.tools.errors import InputError
from fac.traces.report import coverage_curve, plot, render_report, write_report
from fac.traces.store import reading

SCRIPT = "<script>document.title='pwned'</script>"
IMG = "<img src=x onerror=alert(1)>"
KEY = "sk-proj-abcdefghijklmnop0123"


@pytest.fixture(scope="module")
def run_dir(tiny_lm: Any, tiny_tokenizer: Any, tiny_sae: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    demo = Demo(tiny_space(tiny_lm, tiny_tokenizer, tiny_sae, tmp), tmp,
                seed=[f"the cat sat on the mat {SCRIPT}", f"the dog ran home {IMG}"])
    paths, _, _ = demo.run([f"{MISS} {SCRIPT} {KEY}", "", HIT], max_attempts_per_feature=5)
    return paths.root


@pytest.fixture(scope="module")
def html(run_dir: Path) -> str:
    return render_report(run_dir)


def test_report_shows_the_runs_numbers(run_dir: Path, html: str) -> None:
    status = json.loads((run_dir / "run.json").read_text())
    assert status["fac_before"] == pytest.approx(2 / 3) and status["fac_now"] == 1.0
    card = re.search(r'id="fac-before">FAC before<b>([\d.]+)</b>.*?id="fac-after">FAC after<b>([\d.]+)</b>', html, re.S)
    assert card is not None and card.groups() == ("0.667", "1.000")
    assert re.search(r'id="accepted">accepted<b>1</b>', html)
    curve = re.search(r'<table id="curve".*?</table>', html, re.S)
    assert curve is not None and re.findall(r'<td class="num">([\d.]+)</td>', curve.group()) == [
        "0", "1", "2", "3", "0.667", "0.667", "0.667", "1.000"]
    ledger = re.search(r'<table id="ledger".*?</table>', html, re.S)
    assert ledger is not None
    cells = re.findall(r"<tr[^>]*><td>(\w+)</td>((?:<td class=\"num\">[^<]*</td>)+)", ledger.group())
    rows = {node: re.findall(r">([^<]*)<", numbers)[::2] for node, numbers in cells}
    assert rows["generate"][0] == "3" and rows["generate"][2:5] == ["3", "300", "60"]  # steps, calls, in, out
    assert rows["total"][0] == "10" and rows["verify"][2] == "0"
    features = re.search(r'<table id="features".*?</table>', html, re.S)
    assert features is not None and "covered" in features.group() and "hate stupid" in features.group()
    rejected = re.search(r'<table id="rejected".*?</table>', html, re.S)
    assert rejected is not None and rejected.group().count("<tr>") == 3  # header + 2 rejected drafts
    assert "target-not-activated" in rejected.group() and "empty: the reply held no usable sample" in rejected.group()
    assert '<svg id="coverage-plot"' in html and '<polyline class="curve" points="' in html


def test_report_escapes_hostile_text_and_hides_keys(html: str) -> None:
    assert "<script" not in html.lower() and "<img" not in html.lower() and "<b>words" not in html
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html  # a generated draft
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # a seed text, a few-shot example in the first prompt
    assert "feature " in html and "&lt;b&gt;words&lt;/b&gt;" in html  # catalog explanation
    assert KEY not in html and KEY[:12] not in html.replace("sk-pro***", "")
    assert "default-src 'none'" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_write_report_defaults_to_the_run_directory(run_dir: Path, tmp_path: Path) -> None:
    assert write_report(run_dir) == run_dir / "report.html"
    page = write_report(run_dir, tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<svg id="coverage-plot"' in page


def test_the_curve_starts_at_the_seed_and_scales_into_the_plot() -> None:
    from fac.traces.store import TraceStep

    def verify(round_: int, fac: float) -> TraceStep:
        return TraceStep(id=round_, session=1, task_id="t", node="verify", round=round_, status="done", targets=(),
                         inputs={}, outputs={}, coverage={"fac_now": fac}, error="", started_at=0.0, latency_s=0.1)

    curve = coverage_curve([verify(1, 0.5), verify(2, 0.75)], 0.25)
    assert curve == [(0, 0.25), (1, 0.5), (2, 0.75)]
    drawn = plot(curve, 0.9)
    xs, ys = [p[0] for p in drawn.points], [p[1] for p in drawn.points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # rounds go right, FAC goes up
    assert drawn.goal_y is not None and drawn.goal_y < ys[-1]


def test_report_of_a_missing_or_half_written_run_is_an_input_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run directory"):
        render_report(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"run_id": "x", "config": {}}))
    with pytest.raises(InputError, match="has no trace"):
        render_report(tmp_path)
    (tmp_path / "trace.sqlite").write_bytes((run_dir / "trace.sqlite").read_bytes())
    (tmp_path / "run.json").write_text('{"fac_before": 0.5, "fac_n')  # torn
    with pytest.raises(InputError, match=r"run\.json: not valid JSON"):
        render_report(tmp_path)
    (tmp_path / "run.json").unlink()
    assert "No run.json" in render_report(tmp_path)  # a run that crashed before its first status is still shown
    with reading(tmp_path) as store:
        assert len(store.steps()) == 10
