"""Keep a wide TopK SAE's latents alive in a short run: data-based decoder init and dead-latent resampling.

With 16k random latents in a 576-d residual space most directions never win a top-k slot, and a run of a
few hundred steps is too short for the auxiliary loss to revive them (62.9 % dead after 382 steps,
bench/RESULTS.md). Two standard remedies:
- data init: each decoder row starts at a centred, normalised training activation (the encoder is its
  transpose), so every latent starts out as the best match of at least one real token;
- resampling (Anthropic, "Towards Monosemanticity"): every few steps, each latent that has not fired for
  the dead window is re-pointed at the residual of a badly reconstructed input of the current batch
  (drawn with probability proportional to the squared loss), with its optimiser state cleared.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def init_from_data(sae: Any, acts: torch.Tensor, seed: int, scale: float = 1.0) -> None:
    """Decoder rows = distinct random training activations (times `scale`, the SAE's input normalisation)
    minus b_dec, at the decoder's current row norm; encoder = decoder transpose. Only the drawn rows are
    scaled: the activations can be gigabytes."""
    d_sae = sae.W_dec.shape[0]
    generator = torch.Generator().manual_seed(seed)
    n = acts.shape[0]
    rows = torch.randperm(n, generator=generator)[:d_sae] if n >= d_sae else torch.randint(n, (d_sae,),
                                                                                            generator=generator)
    directions = acts[rows].to(sae.W_dec.dtype) * scale - sae.b_dec
    directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    norms = sae.W_dec.norm(dim=1, keepdim=True)
    sae.W_dec.copy_(directions * norms)
    sae.W_enc.copy_(sae.W_dec.T)


@torch.no_grad()
def resample_dead(sae: Any, optimizer: torch.optim.Optimizer, dead: torch.Tensor, scaled_batch: torch.Tensor,
                  seed: int) -> int:
    """Re-point the `dead` latents (bool mask, (d_sae,)) at residuals of the batch; returns how many."""
    index = dead.nonzero().squeeze(1)
    if index.numel() == 0:
        return 0
    x = scaled_batch.to(sae.W_dec.dtype)
    feature_acts, _ = sae.encode_with_hidden_pre(x)
    residual = x - sae.decode(feature_acts)
    loss = residual.pow(2).sum(1)
    if float(loss.sum()) <= 0:
        return 0
    generator = torch.Generator().manual_seed(seed)
    picked = torch.multinomial(loss.pow(2), index.numel(), replacement=index.numel() > x.shape[0],
                               generator=generator)
    directions = residual[picked] / residual[picked].norm(dim=1, keepdim=True).clamp_min(1e-8)
    alive = ~dead
    dec_norm = float(sae.W_dec[alive].norm(dim=1).mean()) if alive.any() else 1.0
    enc_norm = float(sae.W_enc[:, alive].norm(dim=0).mean()) if alive.any() else 1.0
    sae.W_dec[index] = directions * dec_norm
    sae.W_enc[:, index] = directions.T * enc_norm
    sae.b_enc[index] = 0.0
    _clear_adam_state(optimizer, sae, index)
    return int(index.numel())


def _clear_adam_state(optimizer: torch.optim.Optimizer, sae: Any, index: torch.Tensor) -> None:
    """Zero the Adam moments of the resampled rows (W_dec), columns (W_enc) and entries (b_enc)."""
    for param, dim in ((sae.W_dec, 0), (sae.W_enc, 1), (sae.b_enc, 0)):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].index_fill_(dim, index, 0.0)
