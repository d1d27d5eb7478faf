"""Data-based decoder init and dead-latent resampling keep a wide TopK SAE's latents alive."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from test_sae_training import CONFIG, N_TRAIN, one_thread, sparse_data  # noqa: F401 (one_thread: autouse)

from fac.tools.errors import ConfigError
from fac.tools.space.sae_init import init_from_data, resample_dead
from fac.tools.space.sae_training import SAETrainingConfig, evaluate_sae, train_sae


def tiny_sae(d_sae: int = 32, d_in: int = 16) -> TopKTrainingSAE:
    torch.manual_seed(0)
    return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=2, dtype="float32", device="cpu"))


def test_data_init_points_each_decoder_row_at_a_distinct_centred_activation() -> None:
    sae = tiny_sae()
    acts = torch.randn(100, 16) * 3 + 1
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0))
    norms = sae.W_dec.norm(dim=1).clone()
    init_from_data(sae, acts, seed=0)
    centred = acts - acts.mean(0)
    cosine = (sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)) @ (centred / centred.norm(dim=1, keepdim=True)).T
    best = cosine.max(dim=1)
    assert torch.allclose(best.values, torch.ones(32), atol=1e-5)  # every row is one activation's direction
    assert best.indices.unique().numel() == 32  # drawn without replacement
    torch.testing.assert_close(sae.W_dec.norm(dim=1), norms)
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)


def test_resampling_repoints_only_dead_latents_and_clears_their_optimiser_state() -> None:
    sae = tiny_sae()
    optimizer = torch.optim.Adam(sae.parameters())
    batch = torch.randn(64, 16)
    loss = sae.decode(sae.encode_with_hidden_pre(batch)[0]).pow(2).sum()
    loss.backward()
    optimizer.step()
    dead = torch.zeros(32, dtype=torch.bool)
    dead[[3, 7, 20]] = True
    before_dec, before_enc = sae.W_dec.detach().clone(), sae.W_enc.detach().clone()
    assert resample_dead(sae, optimizer, dead, batch, seed=0) == 3
    assert torch.equal(sae.W_dec[~dead], before_dec[~dead]) and torch.equal(sae.W_enc[:, ~dead], before_enc[:, ~dead])
    assert not torch.isclose(sae.W_dec[dead], before_dec[dead]).all(dim=1).any()
    torch.testing.assert_close(sae.W_enc[:, dead] / sae.W_enc[:, dead].norm(dim=0),
                               (sae.W_dec[dead] / sae.W_dec[dead].norm(dim=1, keepdim=True)).T)
    state = optimizer.state[sae.W_enc]
    assert float(state["exp_avg"][:, dead].abs().sum()) == 0 and float(state["exp_avg"][:, ~dead].abs().sum()) > 0
    assert float(optimizer.state[sae.W_dec]["exp_avg_sq"][dead].abs().sum()) == 0
    assert float(sae.b_enc.detach()[dead].abs().sum()) == 0
    assert resample_dead(sae, optimizer, torch.zeros(32, dtype=torch.bool), batch, seed=0) == 0


def test_resampling_revives_most_dead_latents_of_an_overcomplete_sae_and_lifts_its_fit() -> None:
    held = sparse_data(2048, seed=1)
    quality = {}
    for resample_every in (0, 20):
        cfg = dataclasses.replace(CONFIG, d_sae=256, resample_every=resample_every)
        sae = train_sae(sparse_data(N_TRAIN, seed=0), cfg, hook_name="blocks.0.hook_resid_post", model_name="s")
        quality[resample_every] = evaluate_sae(sae, held, n_texts=7)
    assert quality[0].dead_fraction > 0.5  # 256 random latents, 64 true directions: most never fire
    assert quality[20].dead_fraction < 0.2
    assert quality[20].explained_variance > quality[0].explained_variance + 0.03


def test_data_init_alone_trains_and_keeps_more_latents_than_random_init() -> None:
    held = sparse_data(2048, seed=1)
    dead = {}
    for init in ("random", "data"):
        cfg = dataclasses.replace(CONFIG, d_sae=256, init=init)
        sae = train_sae(sparse_data(N_TRAIN, seed=0), cfg, hook_name="blocks.0.hook_resid_post", model_name="s")
        dead[init] = evaluate_sae(sae, held, n_texts=7).dead_fraction
    assert dead["data"] < dead["random"]


@pytest.mark.parametrize(("field", "value"), [("init", "kmeans"), ("resample_every", -1)])
def test_bad_init_or_resampling_settings_are_refused_naming_the_flags(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=r"--init .* and --resample-every"):
        SAETrainingConfig(**{field: value})  # type: ignore[arg-type]
