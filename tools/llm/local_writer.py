"""The generator's in-process backend: LocalChatModel with batched generation.

On a CPU a 135M model is bound by reading its weights once per decoding step, so one left-padded
`generate` over eight prompts costs little more than over one. `batch` runs the prompts in chunks of
`batch_size`, reports one LLM run per prompt to the callbacks (traces see every call) and usage per
prompt as an endpoint would (its own prompt and completion tokens, padding excluded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from langchain_core.callbacks import CallbackManager
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import Field

from fac.tools.llm.local_chat import LocalChatModel

logger = logging.getLogger(__name__)


class BatchedLocalChat(LocalChatModel):
    """LocalChatModel whose `batch` decodes up to `batch_size` prompts in one padded forward pass."""

    batch_size: int = Field(8, gt=0, description="Prompts decoded together.")

    def batch(
        self,
        inputs: Sequence[Any],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        seeds: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Replies to `inputs` (message lists) in order; `seeds[i]` seeds the chunk that starts at prompt i."""
        if not inputs:
            return []
        run_config = ensure_config(config[0] if isinstance(config, Sequence) else config)
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        out: list[Any] = []
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            seed = seeds[start] if seeds else self.seed
            out.extend(self._run_chunk(chunk, run_config, seed, return_exceptions))
        return out

    def _run_chunk(self, chunk: list[list[BaseMessage]], config: RunnableConfig, seed: int | None,
                   return_exceptions: bool) -> list[Any]:
        manager = CallbackManager.configure(config.get("callbacks"), self.callbacks, self.verbose, config.get("tags"),
                                            self.tags, config.get("metadata"), self.metadata)
        run_managers = manager.on_chat_model_start(self._serialized, chunk, invocation_params=self._identifying_params,
                                                   name=config.get("run_name"), batch_size=len(chunk))
        try:
            replies = self._decode(chunk, seed)
        except Exception as err:
            for run_manager in run_managers:
                run_manager.on_llm_error(err)
            if return_exceptions:
                return [err] * len(chunk)
            raise
        for run_manager, reply in zip(run_managers, replies, strict=True):
            run_manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]))
        return replies

    def _decode(self, chunk: list[list[BaseMessage]], seed: int | None) -> list[AIMessage]:
        prompts = [self._prompt_ids(messages)[0] for messages in chunk]  # each (n_prompt,)
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (b, width), left-padded
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = ids
            mask[row, width - len(ids) :] = 1
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
                                    if self.temperature > 0 else {"do_sample": False})
        device = self.model.device
        with (self._lock, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(),
              self._autocast()):
            if seed is not None:
                torch.manual_seed(int(seed))
            output = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                         max_new_tokens=self.max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                                         **sampling)  # (b, width + n_new)
        replies = []
        for row, ids in enumerate(prompts):
            new = output[row, width:].tolist()
            n_out = new.index(eos) + 1 if eos in new else len(new)
            text = self.tokenizer.decode(new[:n_out], skip_special_tokens=True).strip()
            usage = UsageMetadata(input_tokens=len(ids), output_tokens=n_out, total_tokens=len(ids) + n_out)
            replies.append(AIMessage(content=text, usage_metadata=usage,
                                     response_metadata={"model_name": self.model_id,
                                                        "finish_reason": "stop" if eos in new else "length"}))
        logger.debug("local batch of %d: %d prompt tokens max, %d new", len(prompts), width, output.shape[1] - width)
        return replies
