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
