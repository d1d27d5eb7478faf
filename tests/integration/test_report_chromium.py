"""`fac report` in a real browser (Debian's chromium, headless): the page renders its plot, and hostile text in
samples stays text (no script runs, no element is injected). Skipped when /usr/bin/chromium is absent;
install it with `apt-get install -y chromium`."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from fac.traces.report import write_report
from fac.traces.store import TraceFeature, TraceStore

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = ("<script>document.title='pwned';document.body.setAttribute('data-pwned','1')</script>"
           "<img src=x onerror=\"document.title='pwned'\">")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


def make_run(root: Path) -> Path:
    """A finished two-round run, written through the trace store (no model needed), with hostile texts."""
    root.mkdir(parents=True)
    config = {"seed": "seed.jsonl", "task": "toxicity", "goal_fac": 0.9, "min_per_feature": 1}
    (root / "config.json").write_text(json.dumps({"run_id": "demo-abc", "config": config}))
    (root / "run.json").write_text(json.dumps({"phase": "done", "fac_before": 0.5, "fac_now": 1.0, "goal_fac": 0.9,
                                               "covered": 4, "n_task": 4, "accepted": 2, "round": 2,
                                               "tokens_used": 480, "budget_tokens": 1000, "stop_reason": "goal",
                                               "stop_detail": "FAC 1.000 >= goal 0.9"}))
    store = TraceStore.create(root)
    session = store.start_session("demo-abc")
    store.put_features([TraceFeature(feature=j, explanation=f"feature {j} {HOSTILE}", relevance="Yes",
                                     spans=(HOSTILE,)) for j in (7, 8)])
    measure = store.start_step(session, "t0", "measure", 0, [], {"seed_samples": 2}, 0.0)
    store.finish_step(measure, status="done", round_=0, targets=[], outputs={"missing": [7, 8], "fac_before": 0.5},
                      error="", latency_s=0.1)
    for round_, (feature, fac) in enumerate(((7, 0.75), (8, 1.0)), 1):
        gen = store.start_step(session, f"g{round_}", "generate", round_, [feature], {}, float(round_))
        call = store.start_call(session, f"g{round_}", "generate", "scripted", {}, [
            {"role": "human", "content": f"Examples: {HOSTILE}"}], f"h{round_}", float(round_))
        store.finish_call(call, model="scripted", response=HOSTILE, tokens_in=100, tokens_out=20, latency_s=0.2)
        store.finish_step(gen, status="done", round_=round_, targets=[feature], outputs={"drafts": 2}, error="",
                          latency_s=0.3)
        ver = store.start_step(session, f"v{round_}", "verify", round_, [feature], {}, float(round_) + 0.5)
        store.add_verdict(step=ver, call=call, round_=round_, feature=feature, kind="draft", decision="rejected",
                          reason=f"target-not-activated: {HOSTILE}", score=0.0, span="", text=HOSTILE,
                          sample_id="r", credited=[], prompt_hash=f"h{round_}")
        store.add_verdict(step=ver, call=None, round_=round_, feature=feature, kind="draft", decision="accepted",
                          reason="accepted", score=1.5, span=HOSTILE, text=f"accepted {HOSTILE}", sample_id="a",
                          credited=[feature], prompt_hash=f"h{round_}")
        store.finish_step(ver, status="done", round_=round_, targets=[feature], outputs={"accepted": 1}, error="",
                          latency_s=0.1)
        store.set_coverage(ver, {"fac_now": fac})
    store.end_session(session, "done")
    store.close()
    return root


def dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=2000",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("chromium") / "runs" / "demo")
    return write_report(run)


def assert_inert(dom: str) -> None:
    """No script ran and no element came out of the hostile text, which is shown as text."""
    assert "<title>fac report: demo-abc</title>" in dom and "pwned</title>" not in dom
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "<script" not in dom and "<img" not in dom
    assert dom.count("&lt;script&gt;document.title=") >= 6


def test_report_renders_its_plot_and_numbers_and_no_sample_executes(report: Path) -> None:
    dom = dump_dom(report)
    svg = re.search(r'<svg id="coverage-plot".*?</svg>', dom, re.S)
    assert svg is not None
    points = re.search(r'<polyline class="curve" points="([^"]+)"', svg.group())
    assert points is not None and len(points.group(1).split()) == 3  # seed, round 1, round 2
    assert svg.group().count("<circle") == 3
    assert re.search(r'id="fac-before">FAC before<b>0\.500</b>', dom)
    assert re.search(r'id="fac-after">FAC after<b>1\.000</b>', dom)
    assert_inert(dom)


def test_escaping_alone_keeps_samples_inert(report: Path, tmp_path: Path) -> None:
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.read_text(encoding="utf-8"))
    assert "Content-Security-Policy" not in html  # without the CSP, only the escaping protects the page
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    assert_inert(dump_dom(page))
