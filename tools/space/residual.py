"""Read the residual stream after decoder block L, stopping the forward pass there (no LM head)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from fac.tools.errors import ConfigError
from fac.tools.space.models import Precision
from fac.tools.space.rendering import Rendered, Renderer, RenderMode, Sample


@dataclass(frozen=True)
class TokenizedSample:
    """A rendered sample's tokens, their char offsets in `rendered.text`, and which ones are scored."""

    rendered: Rendered
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    content_positions: list[int]  # token indices inside the scored region
    truncated: bool


class _StopForward(Exception):
    """Raised by the hook on block L to end the forward pass early."""


def decoder_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The model's list of decoder blocks (Llama/Qwen/Mistral `model.layers`, GPT-2 `transformer.h`, ...)."""
    n_layers = model.config.num_hidden_layers
    for name in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        module: object = model
        for part in name.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ConfigError(f"cannot find the {n_layers} decoder blocks of {type(model).__name__}")


@dataclass
class LayerReader:
    """Tokenizes samples, batches them by a token budget and returns hidden_states[layer] of each batch."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layer: int  # HF numbering: hidden_states[layer] = output of decoder block `layer` (1-based)
    render: RenderMode = "auto"
    max_tokens: int = 512
    token_budget: int = 8192  # padded tokens per forward batch
    autocast: torch.dtype | None = None  # matmul dtype under autocast (the CPU default: bf16); None: off
    renderer: Renderer = field(init=False)

    def __post_init__(self) -> None:
        depth = self.model.config.num_hidden_layers
        if not 1 <= self.layer <= depth:
            raise ConfigError(f"layer {self.layer} is outside the model's blocks 1..{depth}")
        if self.max_tokens < 1:
            raise ConfigError(f"--max-tokens {self.max_tokens}: the token cap per sample must be >= 1")
        self.token_budget = max(self.token_budget, self.max_tokens)  # a batch holds at least one capped sample
        self.renderer = Renderer(self.tokenizer, self.render)
        self._block = decoder_blocks(self.model)[self.layer - 1]
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id or 0)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> Precision:
        return Precision(self.model.dtype, self.autocast)

    def tokenize(self, sample: Sample) -> TokenizedSample:
        rendered = self.renderer.render(sample)
        enc = self.tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        truncated = len(ids) > self.max_tokens
        ids, offsets = ids[: self.max_tokens], offsets[: self.max_tokens]
        content = [
            i
            for i, (start, end) in enumerate(offsets)
            if start >= rendered.content_start and start < rendered.content_end and end > start
        ]
        return TokenizedSample(rendered, ids, offsets, content, truncated)

    def batches(self, samples: Sequence[TokenizedSample]) -> Iterator[list[int]]:
        """Index groups, longest first, each within the padded-token budget."""
        order = sorted(range(len(samples)), key=lambda i: -len(samples[i].input_ids))
        batch: list[int] = []
        for i in order:
            width = len(samples[batch[0]].input_ids) if batch else len(samples[i].input_ids)
            if batch and (len(batch) + 1) * width > self.token_budget:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _pad(self, samples: Sequence[TokenizedSample]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), width), self._pad_id, dtype=torch.long)  # (b, t)
        mask = torch.zeros((len(samples), width), dtype=torch.long)  # (b, t)
        for row, s in enumerate(samples):
            ids[row, : len(s.input_ids)] = torch.tensor(s.input_ids)
            mask[row, : len(s.input_ids)] = 1
        device = self.device
        if device.type == "cuda":  # pinned: the copies overlap with the GPU's queue instead of waiting on it
            ids, mask = ids.pin_memory(), mask.pin_memory()
        return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)

    @torch.no_grad()
    def hidden(self, samples: Sequence[TokenizedSample]) -> torch.Tensor:  # (b, t, d_model)
        """Early exit: a hook on block L captures its output and stops the forward pass."""
        ids, mask = self._pad(samples)
        captured: list[torch.Tensor] = []

        def stop(_module: nn.Module, _args: object, output: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _StopForward

        handle = self._block.register_forward_hook(stop)
        try:
            with self.precision.context(self.device.type):
                self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured[0]

    @torch.no_grad()
    def hidden_naive(self, samples: Sequence[TokenizedSample]) -> torch.Tensor:  # (b, t, d_model)
        """The reference path: a full forward with the LM head and every hidden state."""
        ids, mask = self._pad(samples)
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, _args: object, output: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        # HF applies the final norm to hidden_states[depth]; the residual stream is the last block's output.
        last = self.layer == self.model.config.num_hidden_layers
        handle = self._block.register_forward_hook(keep) if last else None
        try:
            with self.precision.context(self.device.type):
                out = self.model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
        finally:
            if handle is not None:
                handle.remove()
        return captured[0] if last else out.hidden_states[self.layer]

    def content_activations(self, samples: Sequence[TokenizedSample]) -> torch.Tensor:  # (n_content, d_model)
        """hidden_states[layer] at the scored tokens of each sample, concatenated in order."""
        hidden = self.hidden(samples)
        rows = [hidden[i, s.content_positions] for i, s in enumerate(samples)]
        return torch.cat(rows) if rows else hidden.new_zeros((0, self.d_model))
