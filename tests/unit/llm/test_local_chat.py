"""LocalChatModel on the tiny random Llama: chat template applied, greedy by default, usage counted, seeded."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from fac.tools.errors import ConfigError
from fac.tools.llm.client import chat_name
from fac.tools.llm.local_chat import LocalChatModel
from fac.tools.space.models import LoadedModel

MESSAGES = [SystemMessage("you are helpful"), HumanMessage("the cat sat on the mat")]


@pytest.fixture()
def chat(tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast) -> LocalChatModel:
    return LocalChatModel.from_loaded(LoadedModel(tiny_lm, tiny_tokenizer, "tiny-llama"), max_new_tokens=4)


def _prompt_ids(tok: PreTrainedTokenizerFast) -> list[int]:
    """MESSAGES through the chat template, built independently of LocalChatModel."""
    conversation: list[dict[str, Any]] = [{"role": "system", "content": "you are helpful"},
                                          {"role": "user", "content": "the cat sat on the mat"}]
    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _greedy_reference(lm: LlamaForCausalLM, tok: PreTrainedTokenizerFast, max_new_tokens: int) -> tuple[int, list[int]]:
    ids = torch.tensor([_prompt_ids(tok)])
    with torch.no_grad():
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                          do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return ids.shape[1], out[0, ids.shape[1] :].tolist()


def test_reply_is_the_greedy_continuation_of_the_chat_template_with_its_token_counts(
    chat: LocalChatModel, tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    n_prompt, new_ids = _greedy_reference(tiny_lm, tiny_tokenizer, 4)
    reply = chat.invoke(MESSAGES)
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)
    assert reply.content == tiny_tokenizer.decode(new_ids, skip_special_tokens=True).strip()
    assert reply.usage_metadata == {"input_tokens": n_prompt, "output_tokens": len(new_ids),
                                    "total_tokens": n_prompt + len(new_ids)}
    assert reply.response_metadata["model_name"] == "tiny-llama" == chat_name(chat)
    assert chat.invoke(MESSAGES).content == reply.content  # greedy: deterministic


def test_max_new_tokens_is_respected_also_per_call(chat: LocalChatModel) -> None:
    assert 1 <= chat.invoke(MESSAGES).usage_metadata["output_tokens"] <= 4  # type: ignore[index]
    assert chat.invoke(MESSAGES, max_new_tokens=1).usage_metadata["output_tokens"] == 1  # type: ignore[index]


def test_seeded_sampling_repeats_and_leaves_the_global_rng_alone(chat: LocalChatModel) -> None:
    sampler = chat.model_copy(update={"temperature": 1.0, "seed": 7, "max_new_tokens": 6})
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = sampler.invoke(MESSAGES).content
    assert torch.equal(torch.rand(3), expected)  # generation ran in a forked RNG
    assert sampler.invoke(MESSAGES).content == first


def test_batch_runs_every_conversation(chat: LocalChatModel) -> None:
    replies = chat.batch([[HumanMessage("the dog ran")], [HumanMessage("red and blue")]])
    assert len(replies) == 2 and all(r.usage_metadata and r.usage_metadata["input_tokens"] > 0 for r in replies)


def test_a_tokenizer_without_chat_template_is_a_config_error(
    tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        LocalChatModel.from_loaded(LoadedModel(tiny_lm, plain, "plain"))
    with pytest.raises(ConfigError, match="no chat template"):
        LocalChatModel(model=tiny_lm, tokenizer=plain, model_id="plain").invoke("hi")


def test_choose_returns_the_choice_with_the_highest_summed_log_probability(
    chat: LocalChatModel, tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    choices = ["the cat", "red", "blue dog sat"]
    reply = chat.choose(MESSAGES, choices)
    scores = reply.response_metadata["logprobs"]
    prompt = _prompt_ids(tiny_tokenizer)
    for choice in choices:  # reference: full forward, log-softmax at each choice token
        ids = tiny_tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = tiny_lm(torch.tensor([prompt + ids])).logits[0].log_softmax(-1)
        expected = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(ids))
        assert scores[choice] == pytest.approx(expected, abs=1e-4)
    assert reply.content == max(choices, key=lambda c: scores[c])
    n_best = len(tiny_tokenizer(str(reply.content), add_special_tokens=False)["input_ids"])
    assert reply.usage_metadata == {"input_tokens": len(prompt), "output_tokens": n_best,
                                    "total_tokens": len(prompt) + n_best}


def test_choose_refuses_empty_choices(chat: LocalChatModel) -> None:
    with pytest.raises(ConfigError, match="non-empty choices"):
        chat.choose(MESSAGES, ["yes", " "])
