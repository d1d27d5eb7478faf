"""BatchedLocalChat on the tiny random Llama: padded batches decode like single prompts; callbacks see each call."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from fac.tools.llm.local_chat import LocalChatModel
from fac.tools.llm.local_writer import BatchedLocalChat

PROMPTS = [[HumanMessage("the cat sat on the mat")], [HumanMessage("why")], [HumanMessage("i hate stupid people now")]]


class Counter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started, self.ended = 0, 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.started += len(messages)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ended += 1


@pytest.fixture()
def models(tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Any]:
    common = {"model": tiny_lm, "tokenizer": tiny_tokenizer, "model_id": "tiny", "max_new_tokens": 5}
    return BatchedLocalChat(**common, batch_size=2), LocalChatModel(**common)


def test_a_padded_batch_decodes_each_prompt_like_a_single_call(models: tuple[Any, Any]) -> None:
    batched, single = models
    replies = batched.batch(PROMPTS)
    for prompt, reply in zip(PROMPTS, replies, strict=True):
        alone = single.invoke(prompt)
        assert reply.content == alone.content and reply.usage_metadata == alone.usage_metadata


def test_callbacks_see_one_llm_run_per_prompt(models: tuple[Any, Any]) -> None:
    counter = Counter()
    models[0].batch(PROMPTS, {"callbacks": [counter]})
    assert (counter.started, counter.ended) == (3, 3)


def test_sampling_is_reproducible_per_seed(models: tuple[Any, Any]) -> None:
    batched = models[0].model_copy(update={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8})
    first = [m.content for m in batched.batch(PROMPTS, seeds=[1, 2, 3])]
    assert first == [m.content for m in batched.batch(PROMPTS, seeds=[1, 2, 3])]
    assert first != [m.content for m in batched.batch(PROMPTS, seeds=[7, 8, 9])]


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-autocast", "torch.bfloat16"), ("auto", "torch.float32")])
def test_the_precision_sets_the_dtype_the_linears_generate_in(
    tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast, precision: str, dtype: str
) -> None:
    chat = BatchedLocalChat(model=tiny_lm, tokenizer=tiny_tokenizer, model_id="tiny", max_new_tokens=2,
                            precision=precision)
    seen: set[str] = set()
    handle = tiny_lm.model.layers[0].mlp.down_proj.register_forward_hook(lambda _m, _a, out: seen.add(str(out.dtype)))
    try:
        chat.batch(PROMPTS[:2])
    finally:
        handle.remove()
    assert seen == {dtype}


def test_from_loaded_generates_in_the_precision_the_model_was_loaded_for(
    tiny_lm: LlamaForCausalLM, tiny_tokenizer: PreTrainedTokenizerFast
) -> None:
    import torch

    from fac.tools.errors import ConfigError
    from fac.tools.space.models import LoadedModel, Precision

    fast = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", precision=Precision(torch.float32, torch.bfloat16))
    assert BatchedLocalChat.from_loaded(fast).precision == "bf16-autocast"
    assert BatchedLocalChat.from_loaded(LoadedModel(tiny_lm, tiny_tokenizer, "tiny")).precision == "auto"
    with pytest.raises(ConfigError, match=r"precision 'int8' is not auto or bf16-autocast"):
        BatchedLocalChat(model=tiny_lm, tokenizer=tiny_tokenizer, model_id="tiny", precision="int8").batch(PROMPTS[:1])
