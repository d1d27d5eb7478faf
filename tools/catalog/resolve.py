"""Which catalog a command uses: the one place that decides, for `fac coverage`, `fac run` and `fac catalog`.

Order: a catalog file (`--catalog`); else the catalog stored in chroma for the task in this feature space;
else the catalog shipped with a built-in task (when built in the same space); else, for commands that
measure (`build_missing`), one built now with the LLM-free contrast method and stored. Browsing commands
(`fac catalog show|export`) take any space's catalog when there is only one, and load the feature space
only when they must choose between stored catalogs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fac.tools.catalog.build import Progress, build_catalog, load_catalog_file
from fac.tools.catalog.contrast import ContrastConfig
from fac.tools.catalog.records import SPACE_FIELDS, Catalog
from fac.tools.catalog.tasks import check_name, get_task, normalise_name
from fac.tools.errors import InputError

if TYPE_CHECKING:
    from fac.tools.catalog.store import CatalogStore
    from fac.tools.space.features import FeatureSpace

logger = logging.getLogger(__name__)

def catalog_file(path: Path, task_name: str | None) -> Catalog:
    """A catalog file (JSON or parquet export), refused when it belongs to another task than `task_name`."""
    loaded = load_catalog_file(path)
    if task_name is not None and normalise_name(task_name) != loaded.task:
        raise InputError(f"{path}: this catalog is for task {loaded.task!r}, not {task_name!r}")
    return loaded


def same_space(catalog: Catalog, described: dict[str, Any]) -> bool:
    """Whether `catalog` was built in the feature space `described` (model, layer, SAE, mode)."""
    return all(catalog.space.get(k) == described.get(k) for k in SPACE_FIELDS)


def resolve_catalog(
    space: FeatureSpace | Callable[[], FeatureSpace],
    task_name: str | None,
    catalog: Path | None = None,
    *,
    guideline_file: Path | None = None,
    store: CatalogStore | None = None,
    build_missing: bool = True,
    any_space: bool = False,
    contrast_config: ContrastConfig | None = None,
    progress: Progress | None = None,
) -> Catalog:
    """The task's catalog (see the module doc). `space` may be a loader, called only when the space is needed;
    with `build_missing=False` (browsing) a missing catalog is an error and a shipped one is used as is;
    `any_space` takes the task's only stored catalog whatever its space, without loading the space."""
    loaded_space: list[FeatureSpace] = []

    def get_space() -> FeatureSpace:
        if not loaded_space:
            loaded_space.append(space() if callable(space) else space)
        return loaded_space[0]

    if catalog is not None:
        found = catalog_file(catalog, task_name)
        if build_missing:
            found.check_space(get_space().describe())
        return found
    if task_name is None:
        raise InputError("name a task with --task, or give a catalog file with --catalog")
    name = check_name(task_name)
    if store is not None:  # before get_task: a custom task's stored catalog needs no guideline file
        stored = store.find(name)
        if any_space and len(stored) == 1:
            lone = store.load(name, stored[0].space_key)
            if lone is not None:
                return lone
        if stored or build_missing:
            in_space = store.load(name, get_space().key)
            if in_space is not None:
                in_space.check_space(get_space().describe())
                logger.info("using the stored catalog of %s (%d task features)", name, len(in_space.task_features()))
                return in_space
    task = get_task(task_name, guideline_file)
    if task.catalog is not None:
        shipped = load_catalog_file(task.catalog)
        if not build_missing or same_space(shipped, get_space().describe()):
            logger.info("using the catalog shipped with task %s: %s", task.name, task.catalog)
            return shipped
        logger.info("the catalog shipped with task %s was built in another feature space; building one", task.name)
    if not build_missing:
        raise InputError(f"no catalog for task {task.name!r} yet; build one with "
                         f"`fac catalog build --task {task.name}`")
    built = build_catalog(get_space(), task, "contrast", contrast_config=contrast_config, progress=progress)
    if store is not None:
        store.save(built, get_space().key)
    return built
