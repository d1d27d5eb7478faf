"""bench/selection.py's table shows each method's mean and spread (the bench itself needs ../shared/data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[3] / "bench" / "selection.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("selection_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_reports_fac_spread_only_for_repeated_draws() -> None:
    row = {"in_domain": {"mean": 0.95, "sd": 0.001}, "out_of_domain": {"mean": 0.6, "sd": 0.01}}
    result = {"rows": [{"k": 0, "method": "seed only", "fac": [0.757], **row},
                       {"k": 5, "method": "random", "picked": 5, "fac": [0.8, 0.9], "mean_tokens": 20.0, **row}]}
    table = _bench().format_table(result).splitlines()
    assert table[2] == "| 0 | seed only | 0 | 0.757 | — | 0.9500 ± 0.0010 | 0.6000 ± 0.0100 |"
    assert table[3].startswith("| 5 | random | 5 | 0.850 ± 0.071 | 20.0 |")
