"""Merging catalogs of one space: union of the task features, the relevant record kept, mismatches refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from fac.tools.catalog.merge import merge_catalogs
from fac.tools.catalog.records import Catalog, FeatureRecord
from fac.tools.errors import ConfigError

SPACE = {"model": "m", "layer": 3, "sae": "s@1", "mode": "sae", "threshold": 0.0}


def _catalog(relevant: dict[int, bool], anchor: str, space: dict[str, Any] = SPACE,
             method: str = "contrast") -> Catalog:
    records = tuple(FeatureRecord(feature=j, relevant=r, reason=f"{anchor}:{j}", activation_rate=0.1,
                                  method="contrast" if method == "contrast" else "judge")
                    for j, r in sorted(relevant.items()))
    return Catalog(task="toxicity", method="contrast" if method == "contrast" else "judge", space=space,
                   anchor=anchor, records=records)


def test_a_feature_is_relevant_iff_some_input_finds_it_with_that_inputs_record() -> None:
    toxic = _catalog({1: True, 2: False, 3: False}, "toxic vs benign")
    hate = _catalog({2: True, 3: False, 4: True}, "hate vs offensive")
    merged = merge_catalogs([toxic, hate])
    assert merged.task_features() == [1, 2, 4]
    assert merged.record(2).reason == "relevant in catalog 2 of 2: hate vs offensive:2"
    assert merged.record(3).reason == "toxic vs benign:3" and not merged.record(3).relevant
    assert merged.anchor == "[1] toxic vs benign + [2] hate vs offensive" and merged.space == SPACE


def test_catalogs_of_other_spaces_or_methods_are_refused() -> None:
    base = _catalog({1: True}, "a")
    with pytest.raises(ConfigError, match="sae"):
        merge_catalogs([base, _catalog({1: True}, "b", {**SPACE, "sae": "other@2"})])
    with pytest.raises(ConfigError, match="floors"):
        merge_catalogs([base, _catalog({1: True}, "b", {**SPACE, "floors": "rho=0.5@abc"})])
    with pytest.raises(ConfigError, match="one method"):
        merge_catalogs([base, _catalog({1: True}, "b", method="judge")])
    with pytest.raises(ConfigError, match="at least two"):
        merge_catalogs([base])


def test_the_merge_command_writes_the_union(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _catalog({1: True, 2: False}, "a").save_json(tmp_path / "a.json")
    _catalog({2: True}, "b").save_json(tmp_path / "b.json")
    code, out, err = run_cli(["catalog", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                            "--out", str(tmp_path / "m.json")], capsys, monkeypatch)
    assert code == 0 and "2 task-relevant features of 2" in out + err
    assert Catalog.load_json(tmp_path / "m.json").task_features() == [1, 2]
    code, _, err = run_cli(["catalog", "merge", str(tmp_path / "a.json"), str(tmp_path / "nope.json"),
                            "--out", str(tmp_path / "n.json")], capsys, monkeypatch)
    assert code == 2 and "nope.json: no such file" in err and not (tmp_path / "n.json").exists()
