"""SAE loading and the checks that tie an SAE to a model and layer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_sae
from safetensors.torch import load_file

from fac.tools.errors import ConfigError
from fac.tools.space.features import FeatureSpace
from fac.tools.space.residual import LayerReader
from fac.tools.space.sae_training import save_sae
from fac.tools.space.saes import load_sae, sae_hook_layer


def space_with(reader: LayerReader, sae: Any) -> FeatureSpace:
    return FeatureSpace(reader, sae, "tiny-llama", "some-sae")


@pytest.fixture()
def reader(tiny_lm: Any, tiny_tokenizer: Any) -> LayerReader:
    return LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256)


def test_an_sae_of_another_width_is_refused_with_both_sizes(reader: LayerReader) -> None:
    with pytest.raises(ConfigError, match=r"SAE some-sae has d_in=16 but model tiny-llama has hidden size 32"):
        space_with(reader, make_sae(d_in=16))


def test_an_sae_of_another_layer_is_refused_with_both_layers(reader: LayerReader) -> None:
    with pytest.raises(ConfigError, match=r"trained on layer 2 but the model is read at layer 1"):
        space_with(reader, make_sae(layer=2))


def test_an_sae_deeper_than_the_model_is_refused(reader: LayerReader) -> None:
    with pytest.raises(ConfigError, match=r"reads layer 7 but model tiny-llama has 2 blocks"):
        space_with(reader, make_sae(layer=7))


@pytest.mark.parametrize(("hook", "layer"), [("blocks.14.hook_resid_post", 15), ("model.layers.3", 4),
                                              ("layers.0", 1), ("blocks.3.hook_resid_pre", None), ("", None)])
def test_the_hook_name_gives_the_hidden_states_index(hook: str, layer: int | None) -> None:
    sae = make_sae()
    sae.cfg.metadata.hook_name = hook
    assert sae_hook_layer(sae) == layer


def test_a_missing_sae_directory_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"SAE path /no/such/sae does not exist"):
        load_sae("/no/such/sae")


def test_a_directory_without_cfg_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no cfg.json"):
        load_sae(str(tmp_path))


def test_a_registry_sae_offline_fails_fast_and_points_to_a_local_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"gpt2-small-res-jb:blocks.0.hook_resid_pre: the hub is unreachable.*--sae"):
        load_sae("gpt2-small-res-jb:blocks.0.hook_resid_pre")
    assert time.monotonic() - started < 15  # sae-lens's own timeouts would take minutes


def test_an_sae_saved_in_fp16_loads_back_with_its_weights_layer_and_a_digest_id(tmp_path: Path) -> None:
    sae = make_sae(layer=2)
    save_sae(sae, tmp_path / "my-sae", fp16=True)
    loaded, sae_id = load_sae(str(tmp_path / "my-sae"))
    assert loaded.cfg.d_in == 32 and loaded.cfg.d_sae == 128 and loaded.cfg.k == 8
    assert sae_hook_layer(loaded) == 2
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        expected = getattr(sae, name).detach().to(torch.float16).float()
        torch.testing.assert_close(getattr(loaded, name).detach().float(), expected, rtol=0, atol=0)
    assert sae_id.startswith("my-sae@") and len(sae_id) == len("my-sae@") + 16

    other = make_sae(layer=2, seed=1)
    save_sae(other, tmp_path / "my-sae-2" / "my-sae", fp16=True)
    assert load_sae(str(tmp_path / "my-sae-2" / "my-sae"))[1] != sae_id  # same name, other weights


def test_save_sae_writes_cfg_json_and_fp16_safetensors(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "half", fp16=True)
    save_sae(make_sae(), tmp_path / "full", fp16=False)
    half = load_file(tmp_path / "half" / "sae_weights.safetensors")
    full = load_file(tmp_path / "full" / "sae_weights.safetensors")
    assert {t.dtype for t in half.values()} == {torch.float16}
    assert {t.dtype for t in full.values()} == {torch.float32}
    assert json.loads((tmp_path / "half" / "cfg.json").read_text())["dtype"] == "float16"
    size = (tmp_path / "half" / "sae_weights.safetensors").stat().st_size
    assert size < 0.6 * (tmp_path / "full" / "sae_weights.safetensors").stat().st_size
