"""FeatureSpace scores: max over the text's own tokens (never padding or template), spans, modes, records."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fac.tools.errors import InputError
from fac.tools.space.features import FeatureSpace, SampleScores
from fac.tools.space.residual import TokenizedSample

TEXTS = ["the cat sat on the mat", "dog ran", "a red cat and a blue dog ran fast on the mat now", "why is it bad"]


@torch.no_grad()
def all_positions(space: FeatureSpace, sample: TokenizedSample) -> torch.Tensor:  # (t, d_sae)
    """SAE activations at every token of one sample, computed by hand from a full forward."""
    hidden = space.reader.hidden_naive([sample])[0]  # (t, d_model)
    if space.mode == "paper":
        sae = space.sae
        return torch.relu((hidden - sae.b_dec * sae.cfg.apply_b_dec_to_input) @ sae.W_enc + sae.b_enc)
    return space.sae.encode(hidden)


def as_dense(scores: SampleScores, d_sae: int) -> np.ndarray:
    dense = np.zeros(d_sae, dtype=np.float32)
    dense[scores.feature_ids] = scores.scores
    return dense


def assert_same(a: SampleScores, b: SampleScores, atol: float = 1e-5) -> None:
    np.testing.assert_array_equal(a.feature_ids, b.feature_ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=atol)
    np.testing.assert_array_equal(a.span_starts, b.span_starts)
    np.testing.assert_array_equal(a.span_ends, b.span_ends)
    assert (a.text, a.n_tokens, a.truncated) == (b.text, b.n_tokens, b.truncated)


@pytest.mark.parametrize("mode", ["sae", "paper"])
def test_early_exit_scores_equal_the_naive_full_forward(tiny_space: FeatureSpace, mode: str) -> None:
    space = replace(tiny_space, mode=mode, cache=None)
    for fast, naive in zip(space.score(TEXTS), space.score(TEXTS, naive=True), strict=True):
        assert len(fast.feature_ids) > 0
        assert_same(fast, naive)


def test_a_sample_scores_the_same_alone_as_padded_in_a_batch_of_longer_ones(tiny_space: FeatureSpace) -> None:
    space = replace(tiny_space, cache=None)
    batched = space.score(TEXTS, naive=True)  # naive: the SAE runs on padding positions too
    for text, in_batch in zip(TEXTS, batched, strict=True):
        assert_same(space.score([text], naive=True)[0], in_batch)
    assert len(list(space.reader.batches(space.tokenize(TEXTS)))) == 1  # the short ones really were padded


def test_scores_are_the_max_over_the_texts_own_tokens_not_the_template(tiny_space: FeatureSpace) -> None:
    space = replace(tiny_space, cache=None)
    sample = space.tokenize([TEXTS[0]])[0]
    z = all_positions(space, sample)  # (t, d_sae)
    own = sample.content_positions
    template = [i for i in range(len(sample.input_ids)) if i not in own]
    template_only = (z[template].amax(0) > 0) & (z[own].amax(0) == 0)
    assert int(template_only.sum()) > 0  # features that would appear if the template were scored
    scores = space.score([TEXTS[0]])[0]
    np.testing.assert_allclose(as_dense(scores, space.d_sae), z[own].amax(0).numpy(), rtol=0, atol=1e-5)
    assert not set(scores.feature_ids.tolist()) & set(torch.nonzero(template_only).flatten().tolist())
    assert scores.n_tokens == len(space.reader.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"])


def test_span_ends_at_the_argmax_token_and_holds_at_most_span_tokens(tiny_space: FeatureSpace) -> None:
    space = replace(tiny_space, cache=None, span_tokens=3)
    text = TEXTS[2]
    sample = space.tokenize([text])[0]
    z = all_positions(space, sample)[sample.content_positions]  # (n_content, d_sae)
    base = sample.rendered.content_start
    tokens = [(s - base, e - base) for s, e in (sample.offsets[i] for i in sample.content_positions)]
    scores = space.score([text])[0]
    assert len(scores.feature_ids) > 10
    for feature in scores.feature_ids.tolist():
        hit = scores.hit(feature)
        assert hit is not None and hit.span == text[hit.span_start : hit.span_end]
        argmax = tokens[int(z[:, feature].argmax())]
        assert hit.span_start <= argmax[0] and hit.span_end == argmax[1]
        assert 1 <= sum(1 for s, e in tokens if s >= hit.span_start and e <= hit.span_end) <= 3
    assert any(hit.span_start > 0 for hit in scores.top(len(scores.feature_ids)))  # some spans were cut


def test_paper_mode_gives_dense_nonnegative_scores_that_bound_the_topk_ones(tiny_space: FeatureSpace) -> None:
    topk = replace(tiny_space, cache=None).score(TEXTS)
    dense = replace(tiny_space, cache=None, mode="paper").score(TEXTS)
    for sparse_scores, dense_scores in zip(topk, dense, strict=True):
        assert len(dense_scores.feature_ids) > len(sparse_scores.feature_ids)
        assert (dense_scores.scores > 0).all()
        assert set(sparse_scores.feature_ids.tolist()) <= set(dense_scores.feature_ids.tolist())
        for feature in sparse_scores.feature_ids.tolist():
            assert dense_scores.score_of(feature) >= sparse_scores.score_of(feature) - 1e-6


def test_active_keeps_scores_strictly_above_the_threshold() -> None:
    scores = record(ids=[3, 7, 9], values=[0.1, 0.5, 1.0])
    assert scores.active().tolist() == [3, 7, 9]
    assert scores.active(0.5).tolist() == [9]
    assert scores.active(1.0).tolist() == []
    assert scores.score_of(7) == pytest.approx(0.5) and scores.score_of(8) == 0.0
    assert scores.hit(8) is None and [h.feature for h in scores.top(2)] == [9, 7]


@pytest.mark.parametrize("n_active", [0, 3])
def test_pack_unpack_round_trips_every_field(n_active: int) -> None:
    ids, values = [2, 5, 11][:n_active], [0.25, 1.5, 3.0][:n_active]
    scores = record(ids=ids, values=values, truncated=True)
    back = SampleScores.unpack(scores.pack(), scores.text)
    assert_same(back, scores, atol=0)
    assert back.feature_ids.dtype == np.int32 and back.scores.dtype == np.float32


def test_real_scores_survive_pack_unpack(tiny_space: FeatureSpace) -> None:
    scores = replace(tiny_space, cache=None).score(TEXTS[:1])[0]
    assert_same(SampleScores.unpack(scores.pack(), scores.text), scores, atol=0)


def test_truncated_samples_are_scored_on_their_kept_tokens_and_flagged(tiny_space: FeatureSpace) -> None:
    space = replace(tiny_space, cache=None, reader=replace(tiny_space.reader, max_tokens=12, token_budget=64))
    long_text = " ".join(["the cat sat on the mat"] * 4)
    scores = space.score([long_text, "dog"])
    assert scores[0].truncated and not scores[1].truncated
    assert scores[0].n_tokens == 12 - space.reader.renderer.prefix_tokens
    assert scores[0].span_ends.max() <= len("the cat sat on")  # nothing past the kept tokens


def test_a_text_with_nothing_to_score_is_an_input_error(tiny_space: FeatureSpace) -> None:
    with pytest.raises(InputError, match="sample 2: empty text"):
        tiny_space.score(["the cat", "   "])


def record(ids: list[int], values: list[float], truncated: bool = False) -> SampleScores:
    text = "the cat sat on the mat"
    n = len(ids)
    return SampleScores(text=text, feature_ids=np.asarray(ids, dtype=np.int32),
                        scores=np.asarray(values, dtype=np.float32), span_starts=np.zeros(n, dtype=np.int32),
                        span_ends=np.arange(1, n + 1, dtype=np.int32) * 3, n_tokens=6, truncated=truncated)


def test_results_held_on_the_device_across_batches_equal_per_batch_copies(tiny_space: FeatureSpace) -> None:
    texts = ["the cat sat on the mat and the dog ran fast " * 3, "why is it bad", "red blue", "i love kind people"]
    tight = replace(tiny_space, reader=replace(tiny_space.reader, token_budget=64), cache=None)
    progress: list[int] = []
    held = replace(tight, flush_bytes=1 << 40, cache=tiny_space.cache).score(texts, on_batch=progress.append)
    assert len(list(tight.reader.batches(tight.tokenize(texts)))) > 1 and sum(progress) == len(texts)
    assert tiny_space.cache is not None and tiny_space.cache.count(tiny_space.score_key) == len(texts)
    for a, b in zip(held, tight.score(texts), strict=True):
        np.testing.assert_array_equal(a.feature_ids, b.feature_ids)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.span_starts, b.span_starts)
