"""`--ray [ADDRESS]` and its companions: parsed, checked before any model loads, one-line errors with exit 2.

These run without Ray; tests/unit/space/test_ray_scoring.py (`pytest -m ray`) runs the pool itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import run_cli

from fac.commands.options import RAY_LOCAL, bare_flag_value, ray_options
from fac.tools.errors import ConfigError
from fac.tools.space.ray_pool import INSTALL_HINT, RayOptions


def test_a_bare_ray_flag_gets_the_local_value_and_an_address_is_kept() -> None:
    assert bare_flag_value(["fac", "coverage", "s.jsonl", "--ray"], "--ray", RAY_LOCAL)[-1] == RAY_LOCAL
    assert bare_flag_value(["--ray", "--ray-actors", "3"], "--ray", RAY_LOCAL) == ["--ray", RAY_LOCAL,
                                                                                 "--ray-actors", "3"]
    assert bare_flag_value(["--ray", "auto"], "--ray", RAY_LOCAL) == ["--ray", "auto"]
    assert bare_flag_value(["--ray=ray://h:10001"], "--ray", RAY_LOCAL) == ["--ray=ray://h:10001"]


def test_ray_options_map_local_to_no_address_and_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import fac.tools.space.ray_pool as ray_pool

    monkeypatch.setattr(ray_pool, "require_ray", lambda: None)
    assert ray_options(None, 2, 0.0, 1.0) is None
    assert ray_options(RAY_LOCAL, 3, 1.0, 2.0) == RayOptions(None, 3, 1.0, 2.0)
    assert ray_options("ray://head:10001", 1, 0.0, 1.0).address == "ray://head:10001"
    with pytest.raises(ConfigError, match="expected 'auto', ray://HOST:PORT"):
        ray_options("seed.jsonl", 1, 0.0, 1.0)
    with pytest.raises(ConfigError, match="at least 1 actor"):
        RayOptions(actors=0)


@pytest.mark.parametrize("command", [
    ["coverage", "SEED", "--task", "toxicity", "--ray"],
    ["catalog", "build", "--task", "toxicity", "--ray", "auto"],
    ["sae", "train", "--corpus", "SEED", "--out", "OUT", "--ray"],
])
def test_without_ray_installed_the_flag_says_how_to_install_it(command: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"text": "the cat sat"}\n')
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = [str(seed) if a == "SEED" else str(tmp_path / "out") if a == "OUT" else a for a in command]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code == 2 and INSTALL_HINT in " ".join(err.split()) and "Traceback" not in err


@pytest.mark.parametrize(("flags", "message"), [
    (["--ray", "not-an-address"], "expected 'auto'"),
    (["--ray", "--ray-actors", "0"], "--ray-actors"),
    (["--ray", "--ray-gpus-per-actor", "-1"], "--ray-gpus-per-actor"),
])
def test_bad_ray_values_are_one_line_errors(flags: list[str], message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"text": "the cat sat"}\n')
    code, _, err = run_cli(["coverage", str(seed), "--task", "toxicity", *flags], capsys, monkeypatch)
    assert code == 2 and message in err and "Traceback" not in err
