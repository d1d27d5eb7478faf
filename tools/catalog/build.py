"""Build a task's feature catalog (contrast or LLM judge).

`build_catalog` scores the task's anchor corpus once (and its background, for contrast) and writes
one FeatureRecord per feature. Which catalog a command uses (file, stored, shipped, or built now) is
decided in tools/catalog/resolve.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fac.tools.catalog.contrast import ContrastConfig, contrast
from fac.tools.catalog.evidence import CorpusStats, collect_matched_stats, collect_split_stats, collect_stats
from fac.tools.catalog.records import Catalog, FeatureRecord
from fac.tools.catalog.tasks import TaskSpec
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.datasets import read_records, read_samples

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from fac.tools.catalog.judge import JudgeCache, JudgeStats
    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.rendering import Sample

logger = logging.getLogger(__name__)

BuildMethod = Literal["contrast", "judge"]
JudgeOrder = Literal["frequency", "contrast"]
Progress = Callable[[str, int], Callable[[int], None]]
"""(stage description, total samples) -> callback advancing that stage by n samples."""


def load_catalog_file(path: Path) -> Catalog:
    """A catalog exported as JSON or parquet."""
    return Catalog.load_parquet(path) if path.suffix == ".parquet" else Catalog.load_json(path)


def _labelled(task: TaskSpec) -> list[tuple[Sample, bool]]:
    """The anchor's samples, each marked task-positive iff its label is one of the positive labels."""
    assert task.anchor is not None and task.label_field is not None
    if not task.positive_labels:
        raise ConfigError(f"--label-field {task.label_field}: name the task-positive labels with --positive-labels")
    wanted = set(task.positive_labels)
    pairs, seen = [], set()
    for record in read_records(task.anchor, task.text_field):
        if task.label_field not in record.fields:
            raise InputError(f"{task.anchor}:{record.line}: no field {task.label_field!r}; fields here: "
                             f"{', '.join(map(str, record.fields)) or 'none'}")
        label = str(record.fields[task.label_field])
        seen.add(label)
        pairs.append((record.sample, label in wanted))
    positives = sum(p for _, p in pairs)
    if positives == 0 or positives == len(pairs):
        side = "no" if positives == 0 else "only"
        raise InputError(f"{task.anchor}: {side} samples with {task.label_field} in {sorted(wanted)}; labels found: "
                         f"{', '.join(sorted(seen)[:20])}; contrast needs both task-positive and other samples")
    return pairs


def _stage(progress: Progress | None, name: str, total: int) -> Callable[[int], None] | None:
    return progress(name, total) if progress else None


def anchor_stats(
    space: FeatureSpace,
    task: TaskSpec,
    *,
    need_background: bool,
    top_k: int = 10,
    chunk_size: int = 256,
    match_length: bool = False,
    progress: Progress | None = None,
) -> tuple[CorpusStats, CorpusStats | None]:
    """Counts and evidence over the task-positive text, and counts over the background when there is one;
    `match_length`: both on length-matched subsets (evidence from the kept task-positive samples)."""
    if task.anchor is None:
        raise ConfigError(f"task {task.name!r} ships no anchor corpus; pass one with --anchor FILE")
    if match_length:
        if not need_background:
            raise ConfigError("--match-length matches task-positive and background samples: it needs the contrast")
        if task.label_field is None and task.background is None:
            raise ConfigError(f"--match-length needs background text for task {task.name!r}: pass --background FILE")
        both = _labelled(task) if task.label_field is not None else (
            [(s, True) for s in read_samples(task.anchor, task.text_field)]
            + [(s, False) for s in read_samples(task.background, task.text_field)])  # type: ignore[arg-type]
        advance = _stage(progress, "scoring anchor and background", len(both))
        return collect_matched_stats(space, both, top_k=top_k, chunk_size=chunk_size, on_batch=advance)
    if task.label_field is not None:
        pairs = _labelled(task)
        advance = _stage(progress, f"scoring {task.anchor.name}", len(pairs))
        split: tuple[CorpusStats, CorpusStats | None] = collect_split_stats(space, pairs, top_k=top_k,
                                                                             chunk_size=chunk_size, on_batch=advance)
        return split
    if need_background and task.background is None:
        raise ConfigError(f"contrast (the method, or --judge-order contrast) needs background text for task "
                          f"{task.name!r}: pass --background FILE, or a labelled anchor with --label-field and "
                          "--positive-labels (or use --method judge, ordered by frequency)")
    positives = read_samples(task.anchor, task.text_field)
    pos = collect_stats(space, positives, top_k=top_k, chunk_size=chunk_size,
                        on_batch=_stage(progress, f"scoring {task.anchor.name}", len(positives)))
    if task.background is None or not need_background:
        return pos, None
    background = read_samples(task.background, task.text_field)
    bg = collect_stats(space, background, top_k=0, chunk_size=chunk_size,
                       on_batch=_stage(progress, f"scoring {task.background.name}", len(background)))
    return pos, bg


def contrast_records(
    pos: CorpusStats, bg: CorpusStats, config: ContrastConfig | None = None, *, all_evidence: bool = False
) -> list[FeatureRecord]:
    """One record per feature active anywhere; evidence for the relevant ones (all with `all_evidence`)."""
    results = contrast(pos.counts, pos.n_samples, bg.counts, bg.n_samples, config)
    return [FeatureRecord(feature=r.feature, relevant=r.relevant, reason=r.reason, activation_rate=pos.rate(r.feature),
                          evidence=pos.evidence(r.feature) if r.relevant or all_evidence else (),
                          method="contrast", stats=r.stats())
            for r in results]


def judge_records(
    pos: CorpusStats,
    task: TaskSpec,
    chat: BaseChatModel,
    judge_cache: JudgeCache | None = None,
    *,
    model_name: str = "",
    min_count: int = 1,
    max_features: int | None = None,
    order: JudgeOrder = "frequency",
    background: CorpusStats | None = None,
    contrast_config: ContrastConfig | None = None,
    workers: int = 1,
    stats: JudgeStats | None = None,
    progress: Progress | None = None,
) -> list[FeatureRecord]:
    """Explain, verify and judge the features the anchor activates, up to max_features of them.

    `order` says which come first: "frequency" (most anchor samples first, the paper's view) or
    "contrast" (the contrast test's relevant features first, by log-odds; needs `background`), so a
    capped judge budget goes to the most task-specific features. `stats` accumulates calls and tokens.
    """
    from fac.tools.cache_dir import default_cache_dir
    from fac.tools.catalog.judge import FeatureCandidate, JudgeCache, judge_features

    active = [j for j in pos.active_features(min_count) if pos.evidence(j)]
    if order == "contrast":
        if background is None:
            raise ConfigError("--judge-order contrast needs a background corpus (or a labelled anchor)")
        results = contrast(pos.counts, pos.n_samples, background.counts, background.n_samples, contrast_config)
        ranked = {r.feature: (not r.relevant, -r.log_odds) for r in results}
        active.sort(key=lambda j: (*ranked.get(j, (True, float("inf"))), j))
    elif order == "frequency":
        active.sort(key=lambda j: (-int(pos.counts[j]), j))
    else:
        raise ConfigError(f"judge order {order!r}: expected 'frequency' or 'contrast'")
    if max_features is not None:
        active = active[:max_features]
    if not active:
        raise InputError(f"no feature fires in {min_count}+ anchor samples of task {task.name!r}: nothing to judge")
    candidates = [FeatureCandidate(feature=j, activation_rate=pos.rate(j), evidence=pos.evidence(j)) for j in active]
    logger.info("judging %d features for task %s with %s", len(candidates), task.name, model_name or "the chat model")
    cache = judge_cache if judge_cache is not None else JudgeCache(default_cache_dir() / "judge.sqlite")
    advance = _stage(progress, f"judging {len(candidates)} features", len(candidates))
    records: list[FeatureRecord] = judge_features(
        candidates, task.guideline, chat, cache, task=task.name, model_name=model_name, max_workers=workers,
        stats=stats, on_feature=(lambda _: advance(1)) if advance else None)
    return records


def build_catalog(
    space: FeatureSpace,
    task: TaskSpec,
    method: BuildMethod = "contrast",
    chat: BaseChatModel | None = None,
    judge_cache: JudgeCache | None = None,
    *,
    judge_model_name: str = "",
    judge_workers: int = 1,
    judge_order: JudgeOrder = "frequency",
    judge_stats: JudgeStats | None = None,
    contrast_config: ContrastConfig | None = None,
    top_k: int = 10,
    min_count: int = 1,
    max_features: int | None = None,
    all_evidence: bool = False,
    chunk_size: int = 256,
    match_length: bool = False,
    progress: Progress | None = None,
) -> Catalog:
    """The catalog of `task` in `space`, by LLM-free contrast (default) or by the LLM judge."""
    if method not in ("contrast", "judge"):
        raise ConfigError(f"catalog method {method!r}: expected 'contrast' or 'judge'")
    if method == "judge" and chat is None:
        raise ConfigError("the judge method needs a chat model: --judge-model/--base-url or --judge-local")
    need_background = method == "contrast" or judge_order == "contrast"
    pos, bg = anchor_stats(space, task, need_background=need_background, top_k=top_k, chunk_size=chunk_size,
                           match_length=match_length, progress=progress)
    if method == "contrast":
        assert bg is not None
        records = contrast_records(pos, bg, contrast_config, all_evidence=all_evidence)
    else:
        assert chat is not None
        records = judge_records(pos, task, chat, judge_cache, model_name=judge_model_name, min_count=min_count,
                                max_features=max_features, order=judge_order, background=bg,
                                contrast_config=contrast_config, workers=judge_workers, stats=judge_stats,
                                progress=progress)
    anchor = task.describe_corpora() + (" (length-matched)" if match_length else "")
    catalog = Catalog(task=task.name, method=method, space=space.describe(), anchor=anchor,
                      records=tuple(sorted(records, key=lambda r: r.feature)))
    logger.info("catalog %s (%s): %d features, %d task-relevant", task.name, method, len(catalog.records),
                len(catalog.task_features()))
    return catalog
