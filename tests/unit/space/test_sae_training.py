"""SAE training: a short run learns synthetic sparse data, in the raw activation space; the split is clean."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fac.tools.space.residual import LayerReader
from fac.tools.space.sae_training import (
    SAETrainingConfig,
    cached_activations,
    collect_activations,
    evaluate_sae,
    split_heldout,
    train_sae,
)

CONFIG = SAETrainingConfig(d_sae=64, k=4, epochs=1, batch_tokens=128, lr=2e-2, warmup_steps=5,
                           dead_feature_window=20, norm_estimate_batches=2)
N_TRAIN = 300 * 128  # 300 steps


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: thread hand-offs cost more than the maths (2-5x slower with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sparse_data(n: int, seed: int, scale: float = 30.0, offset: float = 5.0) -> torch.Tensor:  # (n, 16)
    """Each row: 3 of 64 fixed unit directions with positive weights, then scaled and shifted."""
    atoms = torch.randn(64, 16, generator=torch.Generator().manual_seed(123))
    atoms = atoms / atoms.norm(dim=1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.rand(n, 64, generator=generator).argsort(dim=1)[:, :3]
    codes = torch.zeros(n, 64).scatter_(1, chosen, torch.rand(n, 3, generator=generator) * 2 + 0.5)
    return codes @ atoms * scale + offset


def train(acts: torch.Tensor) -> Any:
    return train_sae(acts, CONFIG, hook_name="blocks.0.hook_resid_post", model_name="synthetic")


def test_a_short_run_explains_most_of_the_variance_of_held_out_raw_activations() -> None:
    sae = train(sparse_data(N_TRAIN, seed=0))
    held = sparse_data(2048, seed=1)
    quality = evaluate_sae(sae, held, n_texts=7)
    assert quality.explained_variance > 0.5
    assert quality.l0 == pytest.approx(4.0)
    assert (quality.n_tokens, quality.n_texts) == (2048, 7)
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    assert evaluate_sae(sae, held / 30, n_texts=7).explained_variance < 0  # it works in the raw space only


def test_the_activation_scale_is_folded_into_the_weights_exactly() -> None:
    small, large = train(sparse_data(N_TRAIN, seed=0)), train(sparse_data(N_TRAIN, seed=0) * 1000)
    held = sparse_data(256, seed=1)
    z_small, z_large = small.encode(held), large.encode(held * 1000)  # (n, d_sae)
    assert torch.equal(z_small > 0, z_large > 0)
    torch.testing.assert_close(large.decode(z_large) / 1000, small.decode(z_small), rtol=1e-3, atol=1e-3)


def test_too_few_activations_for_one_batch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"100 activations are fewer than one batch of 128"):
        train(sparse_data(100, seed=0))


def test_split_heldout_is_disjoint_complete_ordered_and_seeded() -> None:
    texts = [f"text {i}" for i in range(200)]
    train_texts, held = split_heldout(texts, 0.1, seed=0)
    assert len(held) == 20 and not set(train_texts) & set(held)
    assert sorted(train_texts + held) == sorted(texts)
    assert train_texts == sorted(train_texts, key=texts.index) and held == sorted(held, key=texts.index)
    assert split_heldout(texts, 0.1, seed=0) == (train_texts, held)
    assert split_heldout(texts, 0.1, seed=1)[1] != held
    assert len(split_heldout(texts[:5], 0.01, seed=0)[1]) == 1  # never an empty held-out set


def test_collected_activations_are_the_scored_tokens_of_every_text(tiny_lm: Any, tiny_tokenizer: Any) -> None:
    reader = LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=20, token_budget=40)
    texts = ["the cat sat on the mat", "dog", "a red cat and a blue dog ran fast"]
    acts = collect_activations(reader, texts)  # (n_tokens, d_model), batches reorder the texts
    samples = [reader.tokenize(t) for t in texts]
    assert acts.shape == (sum(len(s.content_positions) for s in samples), 32)
    expected = torch.cat([reader.hidden_naive([s])[0, s.content_positions] for s in samples])
    order = torch.argsort(expected[:, 0])
    torch.testing.assert_close(acts[torch.argsort(acts[:, 0])], expected[order], rtol=0, atol=1e-5)


def test_cached_activations_reuse_the_tensor_of_the_same_inputs_only(
    tiny_lm: Any, tiny_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256)
    first = cached_activations(reader, "tiny", ["the cat", "dog ran"], tmp_path)
    monkeypatch.setattr(reader, "hidden", lambda _s: (_ for _ in ()).throw(AssertionError("model ran")))
    torch.testing.assert_close(cached_activations(reader, "tiny", ["the cat", "dog ran"], tmp_path), first)
    with pytest.raises(AssertionError, match="model ran"):
        cached_activations(reader, "other-model", ["the cat", "dog ran"], tmp_path)


def test_activations_of_another_precision_are_cached_apart(tiny_lm: Any, tiny_tokenizer: Any, tmp_path: Path) -> None:
    from fac.tools.space.sae_training import activation_cache_path

    exact = LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256)
    fast = LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256, autocast=torch.bfloat16)
    assert activation_cache_path(tmp_path, "tiny", exact, ["the cat"]) != activation_cache_path(
        tmp_path, "tiny", fast, ["the cat"])
