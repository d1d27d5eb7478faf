"""The embedded model read and steered at one block, for the downstream benches (steering, reward model).

Right-padded batches, so a sequence's own positions never shift, or one prefix's KV cache continued by single
tokens; a steering vector is added to the block's output at the positions run while `steer` is open.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


class _Stop(Exception):
    """Raised by the read hook to end a pass at the block."""


@dataclass
class Probe:
    """A causal LM, its tokenizer and the block whose output (hidden_states[layer]) is read or steered."""

    model: Any
    tokenizer: Any
    layer: int  # hidden_states index: the output of block layer - 1

    @classmethod
    def load(cls, layer: int = 15, model: str = "default") -> Probe:
        from fac.tools.space.models import load_model

        loaded = load_model(model, dtype="float32")
        loaded.model.eval()
        return cls(loaded.model, loaded.tokenizer, layer)

    @property
    def block(self) -> torch.nn.Module:
        from fac.tools.space.residual import decoder_blocks

        return decoder_blocks(self.model)[self.layer - 1]

    def chat(self, messages: Sequence[dict[str, str]], *, generation_prompt: bool = False) -> str:
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=generation_prompt)
        return str(text)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _batch(self, seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (b, t)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids, mask

    @torch.no_grad()
    def run(self, seqs: Sequence[list[int]], batch_size: int = 8,
            logits: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per batch: (the block's output (b, t, d_model), the logits at each sequence's last token (b, vocab));
        without `logits` the pass stops at the block and the second item is None."""
        captured: list[torch.Tensor] = []

        def keep(_m: torch.nn.Module, _a: object, output: Any) -> None:
            captured.append((output[0] if isinstance(output, tuple) else output).detach().float())
            if not logits:
                raise _Stop

        handle = self.block.register_forward_hook(keep)
        try:
            for start in range(0, len(seqs), batch_size):
                chunk = seqs[start : start + batch_size]
                ids, mask = self._batch(chunk)
                captured.clear()
                try:
                    out = self.model(input_ids=ids, attention_mask=mask).logits  # (b, t, vocab)
                except _Stop:
                    yield captured[-1], None
                    continue
                last = torch.tensor([len(s) - 1 for s in chunk])
                yield captured[-1], out[torch.arange(len(chunk)), last].float()
        finally:
            handle.remove()

    @torch.no_grad()
    def prefix(self, ids: list[int]) -> Any:
        """The KV cache of one sequence, to continue it by single tokens with `step`."""
        return self.model(input_ids=torch.tensor([ids]), use_cache=True).past_key_values

    @torch.no_grad()
    def step(self, past: Any, token: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One more token after a prefix (its cache is copied, not changed): (the block's output there (d_model,),
        the next-token logits (vocab,))."""
        import copy

        captured: list[torch.Tensor] = []

        def keep(_m: torch.nn.Module, _a: object, output: Any) -> None:
            captured.append((output[0] if isinstance(output, tuple) else output).detach().float())

        handle = self.block.register_forward_hook(keep)
        try:
            out = self.model(input_ids=torch.tensor([[token]]), past_key_values=copy.deepcopy(past), use_cache=True)
        finally:
            handle.remove()
        return captured[-1][0, -1], out.logits[0, -1].float()

    @contextmanager
    def steer(self, vector: torch.Tensor, multiplier: float) -> Iterator[None]:
        """Add `multiplier * vector` to the block's output at every position while the context is open."""

        def add(_m: torch.nn.Module, _a: object, output: Any) -> Any:
            if isinstance(output, tuple):
                return (output[0] + multiplier * vector.to(output[0].dtype), *output[1:])
            return output + multiplier * vector.to(output.dtype)

        handle = self.block.register_forward_hook(add)
        try:
            yield
        finally:
            handle.remove()
