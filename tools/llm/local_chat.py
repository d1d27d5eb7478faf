"""LocalChatModel: an in-process Hugging Face causal LM as a langchain chat model (no server, no key).

It applies the tokenizer's chat template, generates greedily at temperature 0 (else samples with
temperature/top_p), and reports token usage like an OpenAI endpoint. A lock serialises `generate`,
so langchain's thread-pool `batch` is safe; calls run one at a time. `choose` scores a closed set of
replies instead of generating (how the judge gets a decision out of a small model that rambles).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from jinja2 import TemplateError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from fac.tools.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.callbacks import CallbackManagerForLLMRun

    from fac.tools.space.models import LoadedModel

logger = logging.getLogger(__name__)

_ROLES = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}


def _role(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage):
        return message.role
    for cls, role in _ROLES.items():
        if isinstance(message, cls):
            return role
    raise ConfigError(f"the local chat model takes system/user/assistant messages, not {type(message).__name__}")


class LocalChatModel(BaseChatModel):
    """A chat model over an in-process HF causal LM and its tokenizer (which must have a chat template)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = Field(description="A transformers PreTrainedModel (causal LM).")
    tokenizer: Any = Field(description="Its tokenizer, with a chat template.")
    model_id: str = Field(description="Stable id for cache keys and reports.")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, gt=0)
    seed: int | None = Field(None, description="Seed set (in a forked RNG) before each call when sampling.")
    precision: str = Field("auto", description="auto (the weights' own dtype, as loaded) or bf16-autocast (bf16 "
                                               "matrix products over fp32 weights).")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, **settings: Any) -> LocalChatModel:
        """Wrap a LoadedModel (from `fac.tools.space.models.load_model`), in the precision it was loaded for."""
        if not getattr(loaded.tokenizer, "chat_template", None):
            raise ConfigError(f"model {loaded.model_id} has no chat template; the local judge needs an "
                              "instruct/chat model")
        settings.setdefault("precision", "bf16-autocast" if loaded.precision.autocast else "auto")
        return cls(model=loaded.model, tokenizer=loaded.tokenizer, model_id=loaded.model_id, **settings)

    def _autocast(self) -> AbstractContextManager[object]:
        """bf16 autocast around the model's calls when the precision asks for it."""
        if self.precision == "auto":
            return nullcontext()
        if self.precision != "bf16-autocast":
            raise ConfigError(f"precision {self.precision!r} is not auto or bf16-autocast")
        return torch.autocast(self.model.device.type, dtype=torch.bfloat16)

    @classmethod
    def default(cls, **settings: Any) -> LocalChatModel:
        """The embedded SmolLM2-135M-Instruct (weak as a judge: for offline runs and smoke tests)."""
        from fac.tools.space.models import load_model

        return cls.from_loaded(load_model("default"), **settings)

    @property
    def _llm_type(self) -> str:
        return "fac-local-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "precision": self.precision}

    def _prompt_ids(self, messages: Sequence[BaseMessage]) -> torch.Tensor:  # (1, n_prompt)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"model {self.model_id} has no chat template; the local judge needs an instruct model")
        conversation = [{"role": _role(m), "content": str(m.text)} for m in messages]
        try:
            text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        except TemplateError:  # templates without a system role (e.g. Gemma): fold it into the first user turn
            if conversation[0]["role"] != "system" or len(conversation) < 2:
                raise
            system, first, *rest = conversation
            merged = {"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}
            text = self.tokenizer.apply_chat_template([merged, *rest], tokenize=False, add_generation_prompt=True)
        ids: torch.Tensor = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return ids

    def choose(self, messages: Sequence[BaseMessage], choices: Sequence[str]) -> AIMessage:
        """The most likely of `choices` as the whole assistant reply to `messages`, scored, not sampled.

        Each choice is scored by the summed log-probability of its tokens after the chat template's
        generation prompt; `response_metadata["logprobs"]` holds every choice's score.
        """
        if not choices or any(not c.strip() for c in choices):
            raise ConfigError(f"choose needs non-empty choices, got {list(choices)!r}")
        prompt = self._prompt_ids(messages)[0]
        device = self.model.device
        scores: dict[str, float] = {}
        lengths: dict[str, int] = {}
        with self._lock, torch.no_grad(), self._autocast():
            for choice in choices:
                ids = torch.tensor(self.tokenizer(choice, add_special_tokens=False)["input_ids"], dtype=torch.long)
                full = torch.cat([prompt, ids]).unsqueeze(0).to(device)
                logits = self.model(input_ids=full, logits_to_keep=len(ids) + 1).logits[0, :-1]  # (n_choice, vocab)
                logprobs = logits.float().log_softmax(-1).gather(1, ids.to(device)[:, None])
                scores[choice], lengths[choice] = float(logprobs.sum()), len(ids)
        best = max(choices, key=lambda c: scores[c])
        n_in = int(prompt.shape[0])
        logger.debug("local choice %s: %s", self.model_id, scores)
        return AIMessage(
            content=best,
            usage_metadata=UsageMetadata(input_tokens=n_in, output_tokens=lengths[best],
                                         total_tokens=n_in + lengths[best]),
            response_metadata={"model_name": self.model_id, "finish_reason": "stop", "logprobs": scores},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        temperature = float(kwargs.get("temperature", self.temperature))
        top_p = float(kwargs.get("top_p", self.top_p))
        max_new_tokens = int(kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens)))
        seed = kwargs.get("seed", self.seed)
        input_ids = self._prompt_ids(messages)
        device = self.model.device
        sampling: dict[str, Any] = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 \
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with (self._lock, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(),
              self._autocast()):
            if seed is not None:
                torch.manual_seed(int(seed))
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=torch.ones_like(input_ids).to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=self.tokenizer.eos_token_id,
                **sampling,
            )  # (1, n_prompt + n_new)
        new_ids = output[0, input_ids.shape[1] :].tolist()
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        hit_limit = len(new_ids) >= max_new_tokens and new_ids[-1:] != [self.tokenizer.eos_token_id]
        finish = "length" if hit_limit else "stop"
        for marker in stop or ():
            if marker in text:
                text, finish = text[: text.index(marker)], "stop"
        n_in, n_out = int(input_ids.shape[1]), len(new_ids)
        logger.debug("local chat %s: %d prompt tokens, %d new", self.model_id, n_in, n_out)
        message = AIMessage(
            content=text,
            usage_metadata=UsageMetadata(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
            response_metadata={"model_name": self.model_id, "finish_reason": finish},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
