"""kill -9 a real `fac run` process mid-run, resume it, and check no accepted sample is lost or duplicated.

The run is a real subprocess on tiny models saved to disk (random Llama + word tokenizer as the
feature-space model and the local generator, a random TopK SAE), so it exercises the real journal,
checkpointer and resume path, not an injected crash. Marked `process` (two process starts, ~30 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_lm, make_sae, make_tokenizer

from fac.tools.catalog.records import Catalog, FeatureEvidence, FeatureRecord
from fac.tools.space.features import FeatureSpace

pytestmark = pytest.mark.process

SEED = ["the cat sat on the mat", "the dog ran home"]
KILL_AFTER_SAMPLES = 1
START_TIMEOUT_S = 120.0


def _fac(*args: str) -> list[str]:
    return [sys.executable, "-c", "from fac.cli import main; main()", *args]


def _ids(path: Path) -> list[str]:
    """Ids of the complete JSON lines of a samples.jsonl (a torn last line is skipped)."""
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.append(json.loads(line)["id"])
        except json.JSONDecodeError:
            continue
    return ids


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Any]:
    """Tiny model and SAE on disk, a two-text seed and a catalog of every SAE feature."""
    model_dir, sae_dir = tmp_path / "model", tmp_path / "sae"
    make_lm().save_pretrained(model_dir)
    make_tokenizer().save_pretrained(model_dir)
    make_sae().save_model(sae_dir)
    space = FeatureSpace.load(str(model_dir), str(sae_dir), use_cache=False)
    evidence = (FeatureEvidence(score=1.0, span="cat", sample="the cat"),)
    records = tuple(FeatureRecord(feature=j, relevant=True, activation_rate=0.1, method="contrast", evidence=evidence)
                    for j in range(space.d_sae))
    catalog = tmp_path / "catalog.json"
    Catalog(task="toxicity", method="contrast", space=space.describe(), records=records).save_json(catalog)
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in SEED))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FAC_CACHE_DIR": str(tmp_path / "cache")}
    return {"model": model_dir, "sae": sae_dir, "catalog": catalog, "seed": seed, "env": env, "tmp": tmp_path}


def test_a_killed_run_resumes_without_losing_or_duplicating_accepted_samples(world: dict[str, Any]) -> None:
    tmp, out = world["tmp"], world["tmp"] / "run"
    run = _fac("run", str(world["seed"]), "--task", "toxicity", "--catalog", str(world["catalog"]),
               "--model", str(world["model"]), "--sae", str(world["sae"]), "--generator", "local",
               "--generator-model", str(world["model"]), "--embedder", "hashing", "--out", str(out),
               "--goal-fac", "1.0", "--budget-tokens", "40000", "--max-new-tokens", "16")
    with (tmp / "first.log").open("w") as log:
        proc = subprocess.Popen(run, cwd=tmp, env=world["env"], stdout=log, stderr=subprocess.STDOUT)
        samples = out / "samples.jsonl"
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if samples.is_file() and len(_ids(samples)) >= KILL_AFTER_SAMPLES:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{(tmp / 'first.log').read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    before = _ids(samples)  # what was accepted (fsync'ed) when the process died
    assert len(before) >= KILL_AFTER_SAMPLES

    resumed = subprocess.run(_fac("run", "--resume", str(out), "--budget-tokens", "3000"), cwd=tmp,
                             env=world["env"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = _ids(samples)
    assert after[: len(before)] == before  # nothing accepted before the kill was lost or rewritten
    assert len(after) == len(set(after))  # and nothing was written twice
    assert len(samples.read_text(encoding="utf-8").splitlines()) == len(after)  # no torn line left behind
    assert len(after) > len(before), "the resumed run accepted nothing new"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_stops_a_run_cleanly_and_it_resumes(world: dict[str, Any], signum: int) -> None:
    tmp, out = world["tmp"], world["tmp"] / "run"
    run = _fac("run", str(world["seed"]), "--task", "toxicity", "--catalog", str(world["catalog"]),
               "--model", str(world["model"]), "--sae", str(world["sae"]), "--generator", "local",
               "--generator-model", str(world["model"]), "--embedder", "hashing", "--out", str(out),
               "--goal-fac", "1.0", "--budget-tokens", "40000", "--max-new-tokens", "16")
    proc = subprocess.Popen(run, cwd=tmp, env={**world["env"], "COLUMNS": "400"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + START_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if samples.is_file() and _ids(samples):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    assert f"fac run --resume {out}" in " ".join(output.split())
    status = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert status["phase"] == "interrupted" and signal.Signals(signum).name in status["interrupted"]
    before = _ids(samples)
    assert status["accepted"] == len(before)
    resumed = subprocess.run(_fac("run", "--resume", str(out), "--budget-tokens", "3000"), cwd=tmp,
                             env=world["env"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = _ids(samples)
    assert after[: len(before)] == before and len(after) == len(set(after))
