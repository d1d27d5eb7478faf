"""The task-membership model next to the catalog: fitted on the task's corpora, stored, found again.

`fit_task_membership` scores the task's anchor (positives) and background (negatives), or a labelled anchor
split by its labels, in the feature space (scores are cached) and fits tools/quality/membership.py's
classifier. Which model a run uses: a file given; else the one stored under the cache directory for this
task and feature space (`fac catalog membership` writes it); else the one shipped with a built-in task when
fitted in the same space; else one fitted now and stored (when the task has corpora); else none.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fac.tools.cache_dir import default_cache_dir
from fac.tools.catalog.build import Progress, _labelled, _stage
from fac.tools.catalog.evidence import chunked
from fac.tools.catalog.tasks import TaskSpec, task_data_dir
from fac.tools.errors import ConfigError
from fac.tools.quality.membership import KEEP, MembershipModel, fit_membership
from fac.tools.text.datasets import read_samples

if TYPE_CHECKING:
    from fac.tools.space.features import FeatureSpace, SampleScores
    from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)

MEMBERSHIP_FILE = "membership.json"


def stored_path(task: str, space: FeatureSpace) -> Path:
    """Where `fac catalog membership` stores the model of `task` in `space` (under the cache directory)."""
    return default_cache_dir() / "membership" / f"{task}-{space.key}.json"


def _score(space: FeatureSpace, samples: list[Sample], name: str, progress: Progress | None) -> list[SampleScores]:
    advance = _stage(progress, f"scoring {name}", len(samples))
    return [s for chunk in space.score_chunks(chunked(samples, 256), on_batch=advance) for s in chunk]


def fit_task_membership(space: FeatureSpace, task: TaskSpec, *, keep: float = KEEP, seed: int = 0,
                        progress: Progress | None = None) -> MembershipModel:
    """The membership model of `task`: its anchor against its background (or its labels), in `space`."""
    if task.anchor is None:
        raise ConfigError(f"task {task.name!r} ships no anchor corpus; pass one with --anchor FILE")
    if task.label_field is not None:
        pairs = _labelled(task)
        positives = [s for s, positive in pairs if positive]
        negatives = [s for s, positive in pairs if not positive]
    else:
        if task.background is None:
            raise ConfigError(f"the membership model needs background text for task {task.name!r}: pass "
                              "--background FILE, or a labelled anchor with --label-field and --positive-labels")
        positives = read_samples(task.anchor, task.text_field)
        negatives = read_samples(task.background, task.text_field)
    pos = _score(space, positives, task.anchor.name, progress)
    neg = _score(space, negatives, task.background.name if task.background else task.anchor.name, progress)
    return fit_membership(pos, neg, task=task.name, space=space.describe(), d_sae=space.d_sae,
                          corpora=task.describe_corpora(), keep=keep, seed=seed)


def resolve_membership(space: FeatureSpace, task: TaskSpec, path: Path | None = None) -> MembershipModel | None:
    """The run's membership model (see the module doc), or None when the task has none and no corpora."""
    described = space.describe()
    if path is not None:
        given = MembershipModel.load(path)
        given.check_space(described, str(path))
        return given
    stored = stored_path(task.name, space)
    if stored.is_file():
        model = MembershipModel.load(stored)
        model.check_space(described, str(stored))
        logger.info("membership model of %s: %s", task.name, stored)
        return model
    data = task_data_dir(task.name) if task.builtin else None
    shipped = data / MEMBERSHIP_FILE if data is not None else None
    if shipped is not None and shipped.is_file() and task.catalog is not None:
        model = MembershipModel.load(shipped)
        try:
            model.check_space(described, str(shipped))
        except ConfigError:
            logger.info("the membership model shipped with task %s was fitted in another feature space", task.name)
        else:
            logger.info("membership model of %s: shipped (%s)", task.name, shipped)
            return model
    if task.anchor is None or (task.background is None and task.label_field is None):
        logger.warning("task %s has no membership model and no anchor/background to fit one: the membership gate "
                       "is off (fit one with `fac catalog membership --task %s --anchor A --background B`)",
                       task.name, task.name)
        return None
    logger.info("fitting the membership model of %s on its corpora (stored in %s)", task.name, stored)
    model = fit_task_membership(space, task)
    model.save(stored)
    return model
