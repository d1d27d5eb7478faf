"""LayerReader: the early exit reads the same residual stream as a full forward; batching, truncation, rendering."""

from __future__ import annotations

import pytest
import torch
from conftest import make_lm
from transformers import PreTrainedTokenizerFast

from fac.tools.errors import ConfigError
from fac.tools.space.residual import LayerReader

TEXTS = ["the cat sat on the mat", "dog ran", "a red cat and a blue dog ran fast on the mat now", "why"]


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_early_exit_reads_the_same_residual_as_the_full_forward_at_every_layer(
    tiny_tokenizer: PreTrainedTokenizerFast, layer: int
) -> None:
    reader = LayerReader(make_lm(layers=3), tiny_tokenizer, layer, max_tokens=64, token_budget=256)
    samples = [reader.tokenize(t) for t in TEXTS]
    early, full = reader.hidden(samples), reader.hidden_naive(samples)  # (b, t, d_model)
    assert early.shape == full.shape == (len(TEXTS), max(len(s.input_ids) for s in samples), 32)
    torch.testing.assert_close(early, full, rtol=0, atol=1e-6)


def test_early_exit_stops_after_the_hooked_block(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    lm = make_lm(layers=3)
    reader = LayerReader(lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256)
    ran: list[str] = []
    blocks = enumerate(lm.model.layers)
    hooks = [block.register_forward_hook(lambda *_a, i=i: ran.append(f"block{i}")) for i, block in blocks]
    hooks.append(lm.lm_head.register_forward_hook(lambda *_a: ran.append("lm_head")))
    try:
        reader.hidden([reader.tokenize("the cat")])
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == ["block0"]


def test_content_positions_cover_exactly_the_texts_own_tokens(tiny_reader: LayerReader) -> None:
    text = "the cat sat on the mat"
    sample = tiny_reader.tokenize(text)
    own = tiny_reader.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [sample.input_ids[i] for i in sample.content_positions] == own
    assert sample.content_positions[0] == tiny_reader.renderer.prefix_tokens
    assert sample.rendered.content == text
    assert not sample.truncated


def test_a_conversation_scores_from_the_first_turn_to_the_last_not_the_system_prompt(tiny_reader: LayerReader) -> None:
    messages = [{"role": "system", "content": "you are kind"}, {"role": "user", "content": "why is the cat red"},
                {"role": "assistant", "content": "it is not"}]
    sample = tiny_reader.tokenize(messages)
    assert sample.rendered.content.startswith("why is the cat red")
    assert sample.rendered.content.endswith("it is not")
    scored = [sample.rendered.text[slice(*sample.offsets[i])] for i in sample.content_positions]
    assert "kind" not in scored and scored[0] == "why" and scored[-1] == "not"


def test_truncation_at_max_tokens_keeps_the_first_tokens_and_says_so(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    reader = LayerReader(make_lm(), tiny_tokenizer, 1, max_tokens=12, token_budget=64)
    long_text = " ".join(["the cat sat on the mat"] * 4)
    sample = reader.tokenize(long_text)
    assert sample.truncated
    assert len(sample.input_ids) == 12
    assert len(sample.content_positions) == 12 - reader.renderer.prefix_tokens
    assert not reader.tokenize("the cat").truncated


def test_batches_respect_the_token_budget_and_go_longest_first(tiny_tokenizer: PreTrainedTokenizerFast) -> None:
    reader = LayerReader(make_lm(), tiny_tokenizer, 1, max_tokens=40, token_budget=60)
    texts = [" ".join(["cat"] * n) for n in (1, 9, 3, 20, 5, 2, 14, 7)]
    samples = [reader.tokenize(t) for t in texts]
    batches = list(reader.batches(samples))
    lengths = [[len(samples[i].input_ids) for i in batch] for batch in batches]
    assert sorted(i for batch in batches for i in batch) == list(range(len(texts)))
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat, reverse=True)
    assert all(len(batch) * max(batch) <= 60 for batch in lengths)
    assert len(batches) > 1  # the budget actually split the work


def test_a_budget_below_the_token_cap_grows_to_it_and_a_zero_cap_or_outside_layer_are_config_errors(
    tiny_tokenizer: PreTrainedTokenizerFast,
) -> None:
    lm = make_lm()
    assert LayerReader(lm, tiny_tokenizer, 1, max_tokens=512, token_budget=100).token_budget == 512
    with pytest.raises(ConfigError, match=r"--max-tokens 0: the token cap per sample must be >= 1"):
        LayerReader(lm, tiny_tokenizer, 1, max_tokens=0)
    for layer in (0, 3):
        with pytest.raises(ConfigError, match=rf"layer {layer} is outside the model's blocks 1..2"):
            LayerReader(lm, tiny_tokenizer, layer)


@pytest.fixture()
def tiny_reader(tiny_lm: torch.nn.Module, tiny_tokenizer: PreTrainedTokenizerFast) -> LayerReader:
    return LayerReader(tiny_lm, tiny_tokenizer, 1, max_tokens=64, token_budget=256)  # type: ignore[arg-type]
