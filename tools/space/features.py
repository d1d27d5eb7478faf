"""FeatureSpace: text -> per-sample SAE feature scores, argmax tokens and evidence spans (METHOD §1).

a_j(x) = max over the scored tokens t of z[t, j]; padding and the chat-template prefix never count.
The model runs only up to the hooked block. Two activation modes: the SAE's own `encode` ("sae",
default) and "paper" (dense ReLU pre-activations, as the authors' scripts; use threshold 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch

from fac.tools.cache_dir import default_cache_dir
from fac.tools.errors import ConfigError, InputError
from fac.tools.space.floors import FeatureFloors
from fac.tools.space.rendering import RenderMode, Sample
from fac.tools.space.residual import LayerReader, TokenizedSample
from fac.tools.space.score_cache import ScoreCache

if TYPE_CHECKING:
    from sae_lens import SAE

logger = logging.getLogger(__name__)

ActivationMode = Literal["sae", "paper"]
_HEADER = struct.Struct("<iBi")  # n_tokens, truncated, n_active


@dataclass(frozen=True)
class FeatureHit:
    """One feature's score on one sample, with its evidence span (chars of the scored text)."""

    feature: int
    score: float
    span: str
    span_start: int
    span_end: int


@dataclass(frozen=True, eq=False)
class SampleScores:
    """Scores of one sample's active features (score > 0), sorted by feature id."""

    text: str  # the scored region: the sample's own text
    feature_ids: np.ndarray  # (n_active,) int32, ascending
    scores: np.ndarray  # (n_active,) float32
    span_starts: np.ndarray  # (n_active,) int32 char offsets into `text`
    span_ends: np.ndarray  # (n_active,) int32
    n_tokens: int  # scored tokens
    truncated: bool

    def active(self, threshold: float = 0.0) -> np.ndarray:
        """Feature ids with score > threshold (the x-activates-j test)."""
        return self.feature_ids[self.scores > threshold]

    def score_of(self, feature: int) -> float:
        at = int(np.searchsorted(self.feature_ids, feature))
        return float(self.scores[at]) if at < len(self.feature_ids) and self.feature_ids[at] == feature else 0.0

    def _hit(self, at: int) -> FeatureHit:
        start, end = int(self.span_starts[at]), int(self.span_ends[at])
        return FeatureHit(int(self.feature_ids[at]), float(self.scores[at]), self.text[start:end], start, end)

    def hit(self, feature: int) -> FeatureHit | None:
        at = int(np.searchsorted(self.feature_ids, feature))
        if at < len(self.feature_ids) and self.feature_ids[at] == feature:
            return self._hit(at)
        return None

    def above(self, floors: np.ndarray) -> SampleScores:
        """The same record without the features scoring at or below their floor (floors: (d_sae,))."""
        keep = self.scores > floors[self.feature_ids]
        if keep.all():
            return self
        return SampleScores(self.text, self.feature_ids[keep], self.scores[keep], self.span_starts[keep],
                            self.span_ends[keep], self.n_tokens, self.truncated)

    def top(self, n: int) -> list[FeatureHit]:
        order = np.argsort(-self.scores, kind="stable")[:n]
        return [self._hit(int(at)) for at in order]

    def pack(self) -> bytes:
        head = _HEADER.pack(self.n_tokens, int(self.truncated), len(self.feature_ids))
        arrays = (self.feature_ids.astype("<i4"), self.scores.astype("<f4"),
                  self.span_starts.astype("<i4"), self.span_ends.astype("<i4"))
        return head + b"".join(a.tobytes() for a in arrays)

    @classmethod
    def unpack(cls, payload: bytes, text: str) -> SampleScores:
        n_tokens, truncated, n = _HEADER.unpack_from(payload)
        body = np.frombuffer(payload, dtype="<i4", offset=_HEADER.size, count=4 * n)
        return cls(
            text=text,
            feature_ids=body[:n].astype(np.int32),
            scores=body[n : 2 * n].view("<f4").astype(np.float32),
            span_starts=body[2 * n : 3 * n].astype(np.int32),
            span_ends=body[3 * n :].astype(np.int32),
            n_tokens=n_tokens,
            truncated=bool(truncated),
        )


@dataclass
class ScorePlan:
    """One call's samples, tokenized and hashed, with what the cache already holds and what is left to score."""

    tokenized: list[TokenizedSample]
    hashes: list[str]
    results: list[SampleScores | None]
    todo: list[int]  # the first sample of each text not in the cache, in input order
    first_of: dict[str, int] = field(default_factory=dict)


class RemoteScorer(Protocol):
    """Scores each chunk's uncached samples elsewhere (tools/space/ray_scoring.py: a Ray actor pool); the space
    keeps the cache, the plan and the order, so results equal `score` chunk by chunk."""

    def score_chunks(self, space: FeatureSpace, chunks: Iterable[Sequence[Sample]],
                     on_batch: Callable[[int], None] | None) -> Iterator[list[SampleScores]]: ...


@dataclass(frozen=True)
class FeatureSpace:
    """A model read at one layer, an SAE on that layer, and the scoring rules (mode, threshold, spans)."""

    reader: LayerReader
    sae: SAE[Any]
    model_id: str
    sae_id: str
    mode: ActivationMode = "sae"
    threshold: float = 0.0
    span_tokens: int = 32
    cache: ScoreCache | None = None
    weights_id: str = ""  # the model's content identity (LoadedModel.weights_id); "" = model_id alone
    flush_bytes: int | None = None  # results held on the device before one copy to the host; None: 0 on a
    # CPU (records and cache rows per batch), 256 MiB on a GPU (no host round trip per batch)
    floors: FeatureFloors | None = None  # per-latent activation floors (tools/space/floors.py); None: δ only
    remote: RemoteScorer | None = field(default=None, compare=False)  # score_chunks runs there when set

    def __post_init__(self) -> None:
        from fac.tools.space.saes import sae_hook_layer

        d_model, d_in = self.reader.d_model, int(self.sae.cfg.d_in)
        if d_in != d_model:
            raise ConfigError(
                f"SAE {self.sae_id} has d_in={d_in} but model {self.model_id} has hidden size {d_model}: "
                "the SAE was trained on another model"
            )
        hooked = sae_hook_layer(self.sae)
        depth = self.reader.model.config.num_hidden_layers
        if hooked is not None and hooked > depth:
            raise ConfigError(f"SAE {self.sae_id} reads layer {hooked} but model {self.model_id} has {depth} blocks")
        if hooked is not None and hooked != self.reader.layer:
            raise ConfigError(
                f"SAE {self.sae_id} was trained on layer {hooked} but the model is read at layer {self.reader.layer}"
            )
        if self.mode not in ("sae", "paper"):
            raise ConfigError(f"activation mode {self.mode!r} is not 'sae' or 'paper'")
        if self.threshold < 0:
            raise ConfigError(f"threshold δ={self.threshold} must be >= 0")
        if self.span_tokens < 1:
            raise ConfigError(f"span_tokens={self.span_tokens} must be >= 1")
        if self.floors is not None and self.floors.d_sae != self.d_sae:
            raise ConfigError(f"SAE {self.sae_id} has {self.d_sae} latents but its feature floors name "
                              f"{self.floors.d_sae}; recalibrate them with `fac sae calibrate`")

    @property
    def layer(self) -> int:
        return int(self.reader.layer)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def precision(self) -> str:
        """The precision scores are computed in: weights dtype, plus the autocast dtype when on."""
        return self.reader.precision.name

    @property
    def key(self) -> str:
        """Identity of the feature space: model (by content), layer, SAE (by content), mode, rendering, caps."""
        parts = [self.model_id, self.weights_id, self.layer, self.sae_id, self.mode, self.reader.renderer.mode,
                 self.reader.max_tokens, self.span_tokens]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]

    @property
    def score_key(self) -> str:
        """The score cache's key: the space's key and, readable in each row, the precision it was computed in."""
        return f"{self.key}/{self.precision}"

    def describe(self) -> dict[str, Any]:
        described = {"model": self.model_id, "layer": self.layer, "sae": self.sae_id, "mode": self.mode,
                     "threshold": self.threshold, "d_sae": self.d_sae, "precision": self.precision}
        if self.floors is not None:
            described["floors"] = self.floors.identity
        return described

    @classmethod
    def load(
        cls,
        model: str = "default",
        sae: str = "default",
        *,
        layer: int | None = None,
        mode: ActivationMode = "sae",
        threshold: float = 0.0,
        render: RenderMode = "auto",
        max_tokens: int = 512,
        token_budget: int = 8192,
        device: str | None = None,
        dtype: str = "auto",
        cache_dir: Path | None = None,
        use_cache: bool = True,
        use_floors: bool = True,
    ) -> FeatureSpace:
        """Load model + SAE; the layer defaults to the SAE's own hook layer. The SAE directory's feature
        floors apply when it has them (`use_floors=False`: δ alone, the raw TopK activations)."""
        from fac.tools.space.floors import load_floors
        from fac.tools.space.models import load_model
        from fac.tools.space.saes import load_sae, sae_directory, sae_hook_layer

        loaded_sae, sae_id = load_sae(sae)
        directory = sae_directory(sae)
        floors = load_floors(directory) if use_floors and directory is not None else None
        hooked = sae_hook_layer(loaded_sae)
        if layer is None and hooked is None:
            raise ConfigError(f"SAE {sae_id} does not say which layer it reads; pass --layer")
        loaded = load_model(model, device=device, dtype=dtype)
        loaded_sae = loaded_sae.to(device=next(loaded.model.parameters()).device)
        reader = LayerReader(loaded.model, loaded.tokenizer, layer or hooked or 0, render, max_tokens, token_budget,
                             autocast=loaded.precision.autocast)
        cache = ScoreCache((cache_dir or default_cache_dir()) / "scores.sqlite") if use_cache else None
        return cls(reader, loaded_sae, loaded.model_id, sae_id, mode, threshold, cache=cache,
                   weights_id=loaded.weights_id, floors=floors)

    @torch.no_grad()
    def _encode(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., d_sae)
        x = hidden.to(self.sae.dtype)
        if self.mode == "paper":
            return torch.relu(self.sae.process_sae_in(x) @ self.sae.W_enc + self.sae.b_enc)
        encoded: torch.Tensor = self.sae.encode(x)
        return encoded

    def _reduce(self, sample: TokenizedSample, values: np.ndarray, positions: np.ndarray) -> SampleScores:
        """One sample's max scores (d_sae,) and their argmax (index into its content tokens) -> its record;
        the span ends at the argmax token and holds span_tokens tokens."""
        active = np.flatnonzero(values > 0)
        pos = positions[active]
        content = np.asarray(sample.content_positions)
        offsets = np.asarray(sample.offsets, dtype=np.int64)  # (t, 2)
        first = np.maximum(pos - self.span_tokens + 1, 0)
        base = sample.rendered.content_start
        return SampleScores(
            text=sample.rendered.content,
            feature_ids=active.astype(np.int32),
            scores=values[active].astype(np.float32),
            span_starts=(offsets[content[first], 0] - base).astype(np.int32),
            span_ends=np.minimum(offsets[content[pos], 1] - base, len(sample.rendered.content)).astype(np.int32),
            n_tokens=len(content),
            truncated=sample.truncated,
        )

    def tokenize(self, samples: Sequence[Sample]) -> list[TokenizedSample]:
        """Render and tokenize; a sample with nothing to score is bad input."""
        tokenized = []
        for number, sample in enumerate(samples, 1):
            tok = self.reader.tokenize(sample)
            if not tok.content_positions:
                raise InputError(f"sample {number}: empty text: nothing to score")
            tokenized.append(tok)
        return tokenized

    def score(
        self,
        samples: Sequence[Sample],
        *,
        naive: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[SampleScores]:
        """Scores for each sample, from the cache where present; `naive` runs the reference full forward."""
        plan = self.plan(samples, use_cache=not naive)
        tokenized, hashes, results, todo = plan.tokenized, plan.hashes, plan.results, plan.todo
        if on_batch and len(todo) < len(samples):
            on_batch(len(samples) - len(todo))
        pending: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []  # (sample indices, values, positions)

        def flush() -> None:
            """One device-to-host copy for all pending batches, then records, cache rows and progress."""
            if not pending:
                return
            values = torch.cat([v for _, v, _ in pending]).float().cpu().numpy()  # (n, d_sae)
            positions = torch.cat([p for _, _, p in pending]).cpu().numpy()  # (n, d_sae)
            row = 0
            for indices, _, _ in pending:
                fresh = [self._reduce(tokenized[i], values[row + k], positions[row + k]) for k, i in enumerate(indices)]
                row += len(indices)
                for i, scores in zip(indices, fresh, strict=True):
                    results[i] = scores
                if self.cache is not None and not naive:
                    self.cache.put_many(self.score_key, [(hashes[i], r.pack()) for i, r in zip(indices, fresh,
                                                                                              strict=True)])
                if on_batch:
                    on_batch(len(indices))
            pending.clear()

        held, limit = 0, self.flush_bytes
        if limit is None:
            limit = 0 if self.reader.device.type == "cpu" else 256 << 20
        for batch in self.reader.batches([tokenized[i] for i in todo]):
            indices = [todo[j] for j in batch]
            values, positions = self._score_batch([tokenized[i] for i in indices], naive)
            pending.append((indices, values, positions))
            held += 2 * values.numel() * 8
            if held >= limit:
                flush()
                held = 0
        flush()
        return self.finish(plan)

    def plan(self, samples: Sequence[Sample], *, use_cache: bool = True) -> ScorePlan:
        """Tokenize and hash `samples`, take what the cache holds, and list the texts left to score."""
        tokenized = self.tokenize(samples)
        hashes = [hashlib.sha256(t.rendered.text.encode("utf-8", "surrogatepass")).hexdigest() for t in tokenized]
        results: list[SampleScores | None] = [None] * len(samples)
        if self.cache is not None and use_cache:
            found = self.cache.get_many(self.score_key, sorted(set(hashes)))
            for i, h in enumerate(hashes):
                if h in found:
                    results[i] = SampleScores.unpack(found[h], tokenized[i].rendered.content)
        first_of: dict[str, int] = {}
        todo = [first_of.setdefault(h, i) for i, h in enumerate(hashes) if results[i] is None and h not in first_of]
        return ScorePlan(tokenized, hashes, results, todo, first_of)

    def finish(self, plan: ScorePlan) -> list[SampleScores]:
        """The plan's results once every text in `todo` is scored: repeats filled in, truncation reported."""
        results = plan.results
        for i, h in enumerate(plan.hashes):
            if results[i] is None:
                results[i] = results[plan.first_of[h]]
        truncated = sum(1 for r in results if r is not None and r.truncated)
        if truncated:
            logger.warning("%d of %d samples exceed %d tokens and were truncated", truncated, len(results),
                           self.reader.max_tokens)
        scored = [r for r in results if r is not None]
        if self.floors is None:
            return scored
        floors = self.floors.values  # the cache keeps raw scores, so another ρ needs no new forward pass
        return [r.above(floors) for r in scored]

    def score_chunks(self, chunks: Iterable[Sequence[Sample]], *,
                     on_batch: Callable[[int], None] | None = None) -> Iterator[list[SampleScores]]:
        """`score` of each chunk, in order: here, or on `remote` (a Ray actor pool) when the space has one."""
        if self.remote is not None:
            yield from self.remote.score_chunks(self, chunks, on_batch)
            return
        for chunk in chunks:
            yield self.score(chunk, on_batch=on_batch)

    def _score_batch(self, members: Sequence[TokenizedSample], naive: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, each feature's max over its scored tokens and that token's index among them, computed
        on the model's device without a host round trip: (b, d_sae) values and (b, d_sae) positions."""
        device = self.reader.device
        rows = torch.tensor([r for r, s in enumerate(members) for _ in s.content_positions], dtype=torch.long)
        cols = torch.cat([torch.arange(len(s.content_positions)) for s in members])  # index among scored tokens
        if naive:
            hidden = self.reader.hidden_naive(members)  # (b, t, d_model)
            every = self._encode(hidden)  # (b, t, d_sae): the SAE on every position, padding included
            flat_acts = every.reshape(-1, every.shape[-1])
        else:
            hidden = self.reader.hidden(members)  # (b, t, d_model)
            flat_acts = hidden.reshape(-1, hidden.shape[-1])
        width_t = hidden.shape[1]
        where = torch.tensor([r * width_t + p for r, s in enumerate(members) for p in s.content_positions],
                             dtype=torch.long)  # (n_scored,) into the flattened (b * t) positions
        pinned = device.type == "cuda"  # pinned host memory: the copies queue behind the GPU's work, no wait
        rows, cols, where = ((x.pin_memory() if pinned else x).to(device, non_blocking=True)
                             for x in (rows, cols, where))
        acts = flat_acts[where] if naive else self._encode(flat_acts[where])  # (n_scored, d_sae)
        width = max(len(s.content_positions) for s in members)
        dense = acts.new_zeros((len(members), width, acts.shape[-1]))  # (b, width, d_sae); scores are >= 0
        dense[rows, cols] = acts
        values, positions = dense.max(dim=1)  # (b, d_sae) each
        return values, positions
