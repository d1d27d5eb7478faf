"""The authors' TopK SAE .pt/.pth files (FAC-Synthesis sae_pretrain/autoencoder.py) load through sae-lens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli

from fac.tools.errors import ConfigError
from fac.tools.space.features import FeatureSpace
from fac.tools.space.residual import LayerReader
from fac.tools.space.saes import load_sae, sae_hook_layer

D_INP, D_HIDE, TOP_K = 32, 64, 5


def write_paper_sae(path: Path, top_k: int | None = TOP_K) -> dict[str, torch.Tensor]:
    """A file as TopKSAE.dump_disk writes it: state_dict (mask, W_enc, b_enc, b_dec) and config."""
    torch.manual_seed(0)
    weight = {"mask": torch.ones(D_HIDE), "W_enc": torch.randn(D_INP, D_HIDE) * 0.3,
              "b_enc": torch.randn(D_HIDE) * 0.1, "b_dec": torch.randn(D_INP) * 0.1}
    config: dict[str, int] = {"d_inp": D_INP, "d_hide": D_HIDE}
    if top_k is not None:
        config["topK"] = top_k
    torch.save({"weight": weight, "config": config}, path)
    return weight


def reference_encode(weight: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> torch.Tensor:
    """TopKSAE.encode from the authors' autoencoder.py."""
    h = (x - weight["b_dec"]) @ weight["W_enc"] + weight["b_enc"]
    mask = torch.zeros_like(h).scatter_(-1, torch.topk(h, k=k, dim=-1).indices, 1)
    return torch.relu(h * mask)


def test_a_paper_topk_file_encodes_as_the_authors_code_does_with_tied_decoder(tmp_path: Path) -> None:
    path = tmp_path / "TopK7_l2_h32_epoch0.pth"
    weight = write_paper_sae(path)
    sae, sae_id = load_sae(str(path))
    x = torch.randn(7, D_INP)
    torch.testing.assert_close(sae.encode(x), reference_encode(weight, x, TOP_K))
    torch.testing.assert_close(sae.W_dec, weight["W_enc"].T)
    assert sae.cfg.k == TOP_K and sae_id.startswith("TopK7_l2_h32_epoch0@")  # type: ignore[attr-defined]
    assert sae_hook_layer(sae) == 2  # `_l2_`: mounted on decoder layer 2 = hidden_states[2]


def test_a_paper_file_without_topk_is_their_plain_relu_sae(tmp_path: Path) -> None:
    path = tmp_path / "sae.pt"
    weight = write_paper_sae(path, top_k=None)
    sae, _ = load_sae(str(path))
    x = torch.randn(3, D_INP)
    torch.testing.assert_close(sae.encode(x), torch.relu((x - weight["b_dec"]) @ weight["W_enc"] + weight["b_enc"]))
    assert sae_hook_layer(sae) is None  # no layer in the name: --layer is needed


def test_a_paper_sae_scores_texts_in_a_feature_space(tmp_path: Path, tiny_lm: Any, tiny_tokenizer: Any) -> None:
    path = tmp_path / "TopK7_l1_h32_epoch0.pth"
    write_paper_sae(path)
    sae, sae_id = load_sae(str(path))
    space = FeatureSpace(LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256), sae, "tiny",
                         sae_id)
    (scores,) = space.score(["the cat sat on the mat"])
    assert 0 < len(scores.active(0.0)) <= D_HIDE


@pytest.mark.parametrize(("content", "message"), [
    ({"weight": {}, "config": {"d_inp": D_INP}}, "config needs integer d_inp and d_hide"),
    ({"state": 1}, "expected the FAC-Synthesis SAE layout"),
    ({"weight": {"W_enc": torch.zeros(D_HIDE, D_INP)}, "config": {"d_inp": D_INP, "d_hide": D_HIDE}},
     r"weight\['W_enc'\] is \(64, 32\), expected \(32, 64\)"),
])
def test_a_malformed_paper_file_is_one_config_error_naming_the_file(tmp_path: Path, content: Any,
                                                                    message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(content, path)
    with pytest.raises(ConfigError, match=rf"bad\.pt: {message}"):
        load_sae(str(path))


def test_a_missing_or_unreadable_pt_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sae(str(tmp_path / "absent.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt: not a readable torch checkpoint"):
        load_sae(str(tmp_path / "junk.pt"))


def test_fac_features_with_a_bad_pt_file_is_one_line_exit_2_before_the_model_loads(
        tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fac.tools.space.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    torch.save({"weight": {}, "config": {}}, tmp_path / "paper.pt")
    code, _, err = run_cli(["features", "the cat", "--sae", str(tmp_path / "paper.pt")], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "paper.pt: config needs integer d_inp" in " ".join(err.split())
