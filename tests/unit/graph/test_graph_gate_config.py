"""The quality gates in RunConfig: on by default at the calibrated thresholds, switchable, hashed into the run id."""

from __future__ import annotations

import pytest

from fac.commands.run import gate_flags
from fac.graph.config import RunConfig, make_config
from fac.tools.errors import ConfigError
from fac.tools.quality.novelty import NOVELTY_DISTANCE
from fac.tools.quality.regurgitation import MAX_COPIED_SHARE

BASE = {"seed": "seed.jsonl", "task": "toxicity"}


def test_every_gate_is_on_by_default_at_its_calibrated_threshold() -> None:
    cfg = RunConfig(**BASE)
    assert cfg.gate_meta_text and cfg.gate_regurgitation and cfg.gate_membership
    assert cfg.max_copied_share == MAX_COPIED_SHARE == 0.5 and cfg.novelty_distance == NOVELTY_DISTANCE == 0.32
    assert cfg.membership_threshold is None and cfg.membership_judge_model is None


@pytest.mark.parametrize("change", [{"gate_meta_text": False}, {"gate_regurgitation": False},
                                    {"gate_membership": False}, {"max_copied_share": 0.8}, {"novelty_distance": 0.2},
                                    {"membership_threshold": 0.4}, {"membership_judge_model": "m"},
                                    {"membership_model": "m.json"}])
def test_gate_settings_change_the_fingerprint(change: dict[str, object]) -> None:
    assert RunConfig(**BASE, **change).fingerprint() != RunConfig(**BASE).fingerprint()


def test_the_judges_endpoint_and_key_are_operational() -> None:
    moved = RunConfig(**BASE, membership_judge_base_url="http://h:1/v1", membership_judge_key_env="K")
    assert moved.fingerprint() == RunConfig(**BASE).fingerprint()


@pytest.mark.parametrize(("field", "value"), [("max_copied_share", 0.0), ("max_copied_share", 1.5),
                                               ("novelty_distance", 2.5), ("membership_threshold", 1.2)])
def test_out_of_range_thresholds_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        make_config({**BASE, field: value})


def test_no_gate_names_map_to_config_fields() -> None:
    assert gate_flags(["meta-text", "novelty"]) == {"gate_meta_text": False, "novelty_distance": 0.0}
    assert gate_flags(["regurgitation", "membership"]) == {"gate_regurgitation": False, "gate_membership": False}
    with pytest.raises(ConfigError, match="--no-gate nope"):
        gate_flags(["nope"])
