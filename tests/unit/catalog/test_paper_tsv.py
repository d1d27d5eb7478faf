"""The FAC-Synthesis authors' TSV (annotate_<task>.py output) imported as a judge Catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from fac.commands import options
from fac.tools.catalog.paper_tsv import read_paper_tsv
from fac.tools.catalog.records import Catalog
from fac.tools.errors import InputError

SPACE = {"model": "m", "layer": 1, "sae": "s", "mode": "sae", "threshold": 0.0, "d_sae": 128}
HEADER = "FeatureID\tTask\tVerify\tSummary\tWords\n"
ROWS = [  # as their writer escapes them: newlines inside a field become \n
    "3\tyes|||Analysis: insults aimed at a person.\\nFinal Decision: [[Yes]]\tyes\tInsults or slurs\t"
    "Span 1: you are an idiot\\nSpan 2: Query-1: what a loser\n",
    "7\tno|||Analysis: weather talk.\\nFinal Decision: [[No]]\tprobably\tWeather\tSpan 1: it rains\n",
    "9\t-\t-\tCannot Tell.\tSpan 1: the the\n",  # not judged
    "12\tmaybe|||Analysis: violence, or cannot tell.\\nFinal Decision: [[Maybe]]\tyes\tThreats\tSpan 1: i will\n",
    "21\tprobably|||Analysis: threats of harm.\\nFinal Decision: [[Probably]]\tno\tHarm\tSpan 1: hurt you\n",
]


def write_tsv(path: Path, rows: list[str] = ROWS, header: str = HEADER) -> Path:
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


def test_relevance_follows_the_authors_rule_task_and_verify_relevant_and_no_cannot_tell(tmp_path: Path) -> None:
    catalog = read_paper_tsv(write_tsv(tmp_path / "f_Toxic_TaskHarmful.tsv"), "toxicity", SPACE)
    assert catalog.method == "judge" and catalog.space == SPACE
    assert [r.feature for r in catalog.records] == [3, 7, 9, 12, 21]
    assert catalog.task_features() == [3]  # 7: task No; 9: not judged; 12: "cannot tell"; 21: verify no
    first = catalog.record(3)
    assert first.decision == "Yes" and first.explanation == "Insults or slurs"
    assert first.reason.startswith("insults aimed at a person.")
    assert [e.span for e in first.evidence] == ["you are an idiot", "what a loser"]  # unescaped, Query- dropped
    assert catalog.record(9).decision is None and catalog.record(9).explanation is None


@pytest.mark.parametrize(("rows", "header", "message"), [
    (ROWS, "FeatureID\tVerify\tSummary\tWords\n", r"f\.tsv:1: no column Task"),
    (["x\t-\t-\ta\tb\n"], HEADER, r"f\.tsv:2: FeatureID 'x' is not a number"),
    ([ROWS[0], ROWS[0]], HEADER, r"f\.tsv:3: FeatureID 3 appears twice"),
    (["3\t-\t-\n"], HEADER, r"f\.tsv:2: 3 fields but the header has 5"),
    (["500\t-\t-\ta\tb\n"], HEADER, r"f\.tsv:2: FeatureID 500 is outside the SAE's 0\.\.127"),
])
def test_a_malformed_tsv_is_one_input_error_naming_file_and_line(tmp_path: Path, rows: list[str], header: str,
                                                                 message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_paper_tsv(write_tsv(tmp_path / "f.tsv", rows, header), "toxicity", SPACE)


def test_fac_catalog_import_writes_a_catalog_of_the_given_space(tiny_space: Any, tmp_path: Path, capsys: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options.SpaceOptions, "load", lambda self: tiny_space)
    out = tmp_path / "c.json"
    code, _, err = run_cli(["catalog", "import", str(write_tsv(tmp_path / "f.tsv")), "--task", "toxicity",
                            "--no-store", "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    written = Catalog.load_json(out)
    assert written.task_features() == [3] and written.space == tiny_space.describe()
    assert "1 task-relevant features of 5 imported" in " ".join(err.split())


def test_fac_catalog_import_checks_the_file_before_the_model_loads(tmp_path: Path, capsys: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options.SpaceOptions, "load", lambda self: pytest.fail("the model loaded"))
    bad = write_tsv(tmp_path / "f.tsv", ["x\t-\t-\ta\tb\n"])
    code, _, err = run_cli(["catalog", "import", str(bad), "--task", "toxicity", "--no-store"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "f.tsv:2: FeatureID 'x'" in err, err
