"""RunConfig validation and fingerprints, and how a run directory guards its config."""

from __future__ import annotations

from pathlib import Path

import pytest

from fac.graph.config import RunConfig, load_config, make_config
from fac.graph.runner import open_run
from fac.tools.errors import ConfigError, InputError

BASE = {"seed": "seed.jsonl", "task": "toxicity"}


def test_a_config_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="budget_token: Extra inputs are not permitted"):
        make_config({**BASE, "budget_token": 10})
    file = tmp_path / "run.toml"
    file.write_text('seed = "s.jsonl"\ntask = "toxicity"\ngoal_facc = 0.5\n')
    with pytest.raises(ConfigError, match=r"run\.toml: goal_facc"):
        load_config(file, {})


def test_flags_override_the_file_and_unset_flags_do_not(tmp_path: Path) -> None:
    file = tmp_path / "run.json"
    file.write_text('{"seed": "s.jsonl", "task": "toxicity", "goal_fac": 0.5, "max_rounds": 7}')
    cfg = load_config(file, {"goal_fac": 0.8, "max_rounds": None})
    assert (cfg.goal_fac, cfg.max_rounds) == (0.8, 7)


def test_accept_threshold_below_the_activation_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"δ_accept=0\.1 is below"):
        make_config({**BASE, "threshold": 0.5, "accept_threshold": 0.1})


def test_accept_threshold_defaults_to_the_activation_threshold() -> None:
    assert RunConfig(**BASE, threshold=5.0).delta_accept == 5.0
    assert RunConfig(**BASE, threshold=5.0, accept_threshold=6.0).delta_accept == 6.0


def test_the_task_sets_the_output_format_unless_given() -> None:
    assert RunConfig(**BASE).output_format == "text"
    assert RunConfig(seed="s", task="helpfulness").output_format == "pair"
    assert RunConfig(**BASE, output_format="query").output_format == "query"


def test_fingerprint_ignores_limits_and_operational_fields_but_not_results() -> None:
    base = RunConfig(**BASE)
    assert base.fingerprint() == base.updated(budget_tokens=5, goal_fac=0.5, concurrency=9).fingerprint()
    other = base.updated(temperature=0.2, sae="other")
    assert other.fingerprint() != base.fingerprint()
    assert base.differences(other) == ["sae: 'default' -> 'other'", "temperature: 0.8 -> 0.2"]


def test_a_run_directory_with_another_config_is_refused_naming_the_fields(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "demo"
    open_run(out, RunConfig(**BASE))
    with pytest.raises(ConfigError, match=r"another config \(temperature: 0.8 -> 0.3\)"):
        open_run(out, RunConfig(**BASE, temperature=0.3))
    cfg, _ = open_run(out, RunConfig(**BASE, budget_tokens=10))  # same fingerprint: continues the run
    assert cfg.budget_tokens == 10


def test_resume_may_raise_limits_but_not_change_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    open_run(out, RunConfig(**BASE))
    cfg, _ = open_run(out, resume=True, overrides={"budget_tokens": 123, "temperature": None})
    assert cfg.budget_tokens == 123 and cfg.temperature == 0.8
    with pytest.raises(ConfigError, match="temperature would change the results"):
        open_run(out, resume=True, overrides={"temperature": 0.1})


def test_resuming_a_missing_run_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run to resume"):
        open_run(tmp_path / "absent", resume=True)


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a fac run directory"):
        open_run(tmp_path, RunConfig(**BASE))
