"""bench/calibrate_gates.py and bench/downstream.py: their measuring and judging parts on small inputs (the benches
themselves need the real model and ../shared/data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # the benches import results_file from their folder
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regurgitation_calibration_counts_real_copies_and_catches_substrings(monkeypatch: pytest.MonkeyPatch) -> None:
    calibrate = _bench("calibrate_gates", monkeypatch)
    distinct = [f"tweet number {i} says word{i} and other{i} things about thing{i} today" for i in range(40)]
    anchor = [*distinct, distinct[0]]  # one real tweet repeated: a copy of another anchor tweet
    result = calibrate.regurgitation(anchor, [{"kind": "copy", "text": distinct[3]}, {"kind": "new", "text": "hi"}])
    assert result["false_reject"]["8"]["0.5"] == pytest.approx(2 / 41)  # both copies of the repeated tweet
    assert result["substring_caught"] == 1.0 and result["cases"] == [1.0, 0.0]


def _row(in_domain: float, out_of_domain: float) -> dict[str, object]:
    return {"n": 3, "in_domain": {"mean": in_domain, "sd": 0.0}, "out_of_domain": {"mean": out_of_domain, "sd": 0.0}}


def test_downstream_targets_need_fac_above_every_synthetic_arm_and_not_below_the_seed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    downstream = _bench("downstream", monkeypatch)
    rows = {"seed only": _row(0.95, 0.60), "fac": _row(0.97, 0.59), "untargeted": _row(0.94, 0.58),
            "untargeted + gates": _row(0.96, 0.55), "open loop": _row(0.90, 0.50), "real": _row(0.98, 0.70)}
    met = downstream.targets(rows, ("in_domain", "out_of_domain"))
    assert met["fac > untargeted, untargeted + gates, open loop (in_domain)"] is True
    assert met["fac > untargeted, untargeted + gates, open loop (out_of_domain)"] is True
    assert met["fac >= seed only (in_domain)"] is True and met["fac >= seed only (out_of_domain)"] is False
    rows["untargeted + gates"] = _row(0.975, 0.55)
    again = downstream.targets(rows, ("in_domain",))
    assert again["fac > untargeted, untargeted + gates, open loop (in_domain)"] is False


def test_downstream_reuse_reads_back_the_arms_a_run_wrote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    downstream = _bench("downstream", monkeypatch)
    seed_file = tmp_path / "seed.jsonl"
    seed_file.write_text('{"text": "seed tweet"}\n', encoding="utf-8")
    arms = {arm: [f"{arm} sample {i}" for i in range(2)] for arm in downstream.ARMS if arm != "seed only"}
    for arm, texts in arms.items():
        downstream.arm_file(tmp_path, arm).write_text("".join(f'{{"text": "{t}"}}\n' for t in texts), encoding="utf-8")
    (tmp_path / downstream.ARMS_FILE).write_text('{"stats": {"fac": {"seconds": 7}}, "equal_n": 2, "asked_n": 100}',
                                                 encoding="utf-8")
    reused = downstream.reused_arms(seed_file, tmp_path)
    assert reused["seed"] == ["seed tweet"] and reused["samples"] == arms
    assert reused["equal_n"] == 2 and reused["stats"]["fac"]["seconds"] == 7
    assert downstream.arm_file(tmp_path, "untargeted + gates").name == "untargeted_gates.jsonl"
