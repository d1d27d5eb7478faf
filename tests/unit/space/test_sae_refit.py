"""The least-squares decoder refit: same codes, better reconstruction."""

from __future__ import annotations

import torch
from conftest import make_sae

from fac.tools.space.sae_training import evaluate_sae, refit_decoder


def _sparse_data(n: int = 3000, d: int = 32, atoms: int = 48, active: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=gen)
    codes = torch.zeros(n, atoms)
    for row in range(n):
        picks = torch.randperm(atoms, generator=gen)[:active]
        codes[row, picks] = torch.rand(active, generator=gen) * 3
    return codes @ dictionary + 0.5  # (n, d), offset so the decoder bias matters


def test_refit_keeps_every_code_and_improves_explained_variance() -> None:
    acts = _sparse_data()
    sae = make_sae(d_in=32, d_sae=128, k=8)
    codes_before = sae.encode(acts[:200]).clone()
    before = evaluate_sae(sae, acts, n_texts=1).explained_variance

    refit_decoder(sae, acts)

    assert torch.allclose(sae.encode(acts[:200]), codes_before, atol=1e-4)
    after = evaluate_sae(sae, acts, n_texts=1).explained_variance
    assert after > before + 0.2
    assert after > 0.5


def test_refit_leaves_never_firing_latents_near_their_old_direction() -> None:
    acts = _sparse_data()
    sae = make_sae(d_in=32, d_sae=128, k=8)
    with torch.no_grad():
        sae.b_enc[:4] = -1e4  # latents 0-3 can never win the top-k
    old = sae.W_dec[:4].clone()
    refit_decoder(sae, acts)
    assert torch.allclose(sae.W_dec[:4], old, atol=1e-3)
