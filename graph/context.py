"""Deps: everything heavy or stateful a node needs, passed as `context=`; never part of the state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fac.graph.config import RunConfig

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from fac.graph.checkpoint import SampleLog
    from fac.tools.catalog.records import Catalog
    from fac.tools.quality.gates import QualityGates
    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.rendering import Sample


class Store(Protocol):
    """The near-duplicate index (`fac.tools.text.store.SampleStore`): upsert by id, nearest stored neighbour."""

    def add(self, ids: Sequence[str], texts: Sequence[str],
            metadatas: Sequence[Mapping[str, str | int | float | bool] | None] | None = None) -> None: ...

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]: ...

    def count(self) -> int: ...


@dataclass(frozen=True)
class Deps:
    """The run's config and its heavy objects: feature space, catalog, seed, store, generator, sample log."""

    config: RunConfig
    space: FeatureSpace
    catalog: Catalog
    seed: tuple[Sample, ...]
    store: Store
    writer: BaseChatModel
    log: SampleLog
    run_id: str
    task_summary: str = ""
    gates: QualityGates | None = None  # the verifier's quality gates (None: off)
    seed_layouts: tuple[str, ...] = ()  # the seed's records in the generator's layout (structured formats), if any
