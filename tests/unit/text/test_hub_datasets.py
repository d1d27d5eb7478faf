"""Hub dataset ids (`hf:OWNER/NAME[:SPLIT]`) as seeds and data: read where the hub is reachable, one line offline."""

from __future__ import annotations

from typing import Any

import datasets
import pytest
from conftest import run_cli

from fac.tools.errors import InputError
from fac.tools.hub import HubDataset, parse_hub_dataset
from fac.tools.text.datasets import read_records


@pytest.mark.parametrize(("spec", "parsed"), [
    ("hf:lmsys/toxic-chat", HubDataset("lmsys/toxic-chat", "train")),
    ("hf:lmsys/toxic-chat:test", HubDataset("lmsys/toxic-chat", "test")),
    ("hf:org/name:train[:100]", HubDataset("org/name", "train[:100]")),
    ("seed.jsonl", None),
])
def test_hub_ids_name_a_repo_and_a_split_defaulting_to_train(spec: str, parsed: HubDataset | None) -> None:
    assert parse_hub_dataset(spec) == parsed


def test_a_malformed_hub_id_is_an_input_error() -> None:
    with pytest.raises(InputError, match="hf:no-owner: expected a hub dataset id hf:OWNER/NAME"):
        list(read_records("hf:no-owner"))


def test_offline_a_hub_id_is_one_error_naming_it_and_nothing_is_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(InputError, match=r"hf:lmsys/toxic-chat:test: cannot read hub dataset lmsys/toxic-chat "
                                         r"\(split test\): the hub is offline"):
        list(read_records("hf:lmsys/toxic-chat:test"))


def test_a_reachable_hub_split_is_read_like_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked: list[tuple[Any, ...]] = []

    def load_dataset(repo_id: str, split: str) -> datasets.Dataset:
        asked.append((repo_id, split))
        rows = [{"user_input": "you idiot", "toxicity": 1}, {"user_input": "hi", "toxicity": 0}]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    records = list(read_records("hf:lmsys/toxic-chat:test", "user_input"))
    assert asked == [("lmsys/toxic-chat", "test")]
    assert [r.sample for r in records] == ["you idiot", "hi"] and records[1].line == 2


def test_an_unreachable_hub_is_one_error_naming_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def load_dataset(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(InputError, match=r"^hf:org/name: cannot read hub dataset org/name \(split train\): "
                                         r"Couldn't reach 'org/name' on the Hub \(LocalEntryNotFoundError\)$"):
        list(read_records("hf:org/name"))


def test_fac_coverage_on_a_hub_seed_offline_exits_2_before_any_model_loads(capsys: Any,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.tools.space.features import FeatureSpace

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(FeatureSpace, "load", classmethod(lambda cls, *a, **k: pytest.fail("a model loaded")))
    code, _, err = run_cli(["coverage", "hf:lmsys/toxic-chat:test", "--task", "toxicity"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "hf:lmsys/toxic-chat:test: cannot read hub dataset" in err, err


def test_the_python_api_reads_a_hub_id_like_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import fac

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda repo_id, split: datasets.Dataset.from_list([{"text": repo_id}]))
    assert fac.api.as_samples("hf:org/name:test") == ["org/name"]
