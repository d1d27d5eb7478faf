"""Scoring and activation collection on a Ray Data actor pool, equal to the single-process path by construction.

`RayScorer` is a FeatureSpace's `remote`: for each chunk the driver plans as `FeatureSpace.score` does
(tokenize, hash, take cached rows), ships the uncached texts of that chunk as one unit to an actor, which
scores exactly those texts with its own copy of the space (so the forward batches are the local ones), and
writes the returned rows into the driver's score cache. `RayActivations` does the same for
`collect_activations`: the driver plans the forward batches, each actor runs one batch as given.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from fac.tools.errors import ConfigError
from fac.tools.space.features import SampleScores
from fac.tools.space.ray_pool import RayOptions, ordered_map

if TYPE_CHECKING:
    from fac.api import SpaceSpec
    from fac.tools.space.features import FeatureSpace, ScorePlan
    from fac.tools.space.rendering import Sample
    from fac.tools.space.residual import LayerReader

logger = logging.getLogger(__name__)


def _mismatch(what: str, here: str, there: str) -> ConfigError:
    return ConfigError(f"ray: the actors compute in {there} but this process in {here} ({what}); results and "
                       "cache rows would differ: pass --dtype float32 (or the actors' dtype) and the same --device")


@dataclass(frozen=True)
class _ScoreWorker:
    """Built once per actor: its own feature space (no cache: the driver's cache is the only one)."""

    spec: SpaceSpec

    def __call__(self) -> Callable[[list[Sample]], tuple[str, list[bytes]]]:
        # Raw scores: the driver caches what comes back (the cache holds raw scores) and applies its own floors.
        space = replace(replace(self.spec, use_cache=False).load(), floors=None)

        def work(samples: list[Sample]) -> tuple[str, list[bytes]]:
            return space.score_key, [s.pack() for s in space.score(samples)]

        return work


@dataclass(frozen=True)
class RayScorer:
    """A FeatureSpace's `remote`: each chunk's uncached texts scored by one actor holding `spec`'s space."""

    spec: SpaceSpec
    options: RayOptions

    def score_chunks(self, space: FeatureSpace, chunks: Iterable[Sequence[Sample]],
                     on_batch: Callable[[int], None] | None) -> Iterator[list[SampleScores]]:
        """As `space.score` chunk by chunk: a text an earlier chunk still has in flight counts as cached (the
        local path would find it in the cache), so every chunk's forward batches are the local ones."""
        plans: dict[int, tuple[ScorePlan, int, list[int]]] = {}  # unit -> plan, chunk size, deferred samples
        in_flight: set[str] = set()  # texts sent and not yet back
        wanted: Counter[str] = Counter()  # in-flight texts later chunks wait for
        kept: dict[str, SampleScores] = {}  # their results, until those chunks are done
        lock = threading.Lock()  # planning (feeder thread) vs. recording results (here)

        def units() -> Iterator[list[Sample]]:
            for number, chunk in enumerate(chunks):
                with lock:
                    plan = space.plan(chunk)
                    deferred = [i for i in plan.todo if plan.hashes[i] in in_flight]
                    plan.todo = [i for i in plan.todo if plan.hashes[i] not in in_flight]
                    wanted.update(plan.hashes[i] for i in deferred)
                    in_flight.update(plan.hashes[i] for i in plan.todo)
                plans[number] = (plan, len(chunk), deferred)
                yield [chunk[i] for i in plan.todo]

        for number, (key, payloads) in enumerate(ordered_map(_ScoreWorker(self.spec), units(), self.options)):
            plan, size, deferred = plans.pop(number)
            if payloads and key != space.score_key:
                raise _mismatch("score cache key", space.score_key, key)
            with lock:
                for i, payload in zip(plan.todo, payloads, strict=True):
                    h = plan.hashes[i]
                    scores = plan.results[i] = SampleScores.unpack(payload, plan.tokenized[i].rendered.content)
                    in_flight.discard(h)
                    if wanted[h]:
                        kept[h] = scores
                if space.cache is not None and payloads:
                    space.cache.put_many(space.score_key, [(plan.hashes[i], p)
                                                           for i, p in zip(plan.todo, payloads, strict=True)])
                for i in deferred:
                    h = plan.hashes[i]
                    plan.results[i] = kept[h]
                    wanted[h] -= 1
                    if not wanted[h]:
                        del wanted[h], kept[h]
            if on_batch:
                on_batch(size)
            yield space.finish(plan)


def with_ray(space: FeatureSpace, spec: SpaceSpec, options: RayOptions) -> FeatureSpace:
    """`space` (the driver's: tokenizer, cache, identity) scoring its chunks on a Ray actor pool of `spec`."""
    return replace(space, remote=RayScorer(spec, options))


@dataclass(frozen=True)
class ReaderSpec:
    """A model read at one layer, without loading it: `fac sae` builds its reader from this, here and in actors."""

    model: str
    layer: int
    max_tokens: int = 512
    device: str | None = None
    dtype: str = "float32"

    def load(self) -> tuple[LayerReader, str]:
        """The reader and the model's id."""
        from fac.tools.space.models import load_model
        from fac.tools.space.residual import LayerReader

        loaded = load_model(self.model, device=self.device, dtype=self.dtype)
        return LayerReader(loaded.model, loaded.tokenizer, self.layer, max_tokens=self.max_tokens), loaded.model_id


@dataclass(frozen=True)
class _ActivationWorker:
    spec: ReaderSpec

    def __call__(self) -> Callable[[list[str]], tuple[str, np.ndarray]]:
        reader, _ = self.spec.load()

        def work(texts: list[str]) -> tuple[str, np.ndarray]:
            acts = reader.content_activations([reader.tokenize(t) for t in texts]).float().cpu()
            return reader.precision.name, acts.numpy()  # (n_content, d_model)

        return work


@dataclass(frozen=True)
class RayActivations:
    """`collect_activations`' forward batches, each run as planned by one actor holding `spec`'s reader."""

    spec: ReaderSpec
    options: RayOptions

    def activations(self, reader: LayerReader, batches: Iterable[list[str]]) -> Iterator[torch.Tensor]:
        for precision, acts in ordered_map(_ActivationWorker(self.spec), batches, self.options):
            if precision != reader.precision.name:
                raise _mismatch("activation precision", reader.precision.name, precision)
            yield torch.from_numpy(acts)

