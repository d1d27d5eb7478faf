"""Union of catalogs built in one feature space on different anchors or contrasts.

A task's guideline often names several things (toxicity: insults and profanity, and attacks on protected
characteristics); one contrast (toxic vs benign) finds the features of the commonest kind only. Building
one catalog per contrast (e.g. toxic vs benign, and hate vs merely offensive) and taking the union keeps
what each finds: a feature is task-relevant iff some input catalog says so, with that catalog's record
(evidence, statistics) and a reason naming which contrasts found it.
"""

from __future__ import annotations

from collections.abc import Sequence

from fac.tools.catalog.records import SPACE_FIELDS, Catalog, FeatureRecord
from fac.tools.errors import ConfigError


def merge_catalogs(catalogs: Sequence[Catalog], *, task: str | None = None) -> Catalog:
    """The union of `catalogs` (same space and method); the first catalog's record wins among equals."""
    if len(catalogs) < 2:
        raise ConfigError("merging needs at least two catalogs")
    first = catalogs[0]
    for number, other in enumerate(catalogs[1:], 2):
        differ = [k for k in (*SPACE_FIELDS, "floors") if first.space.get(k) != other.space.get(k)]
        if differ:
            raise ConfigError(f"catalog {number} ({other.anchor or other.task}) was built in another feature space "
                              f"than catalog 1 ({', '.join(differ)} differ); rebuild them in one space")
        if other.method != first.method:
            raise ConfigError(f"catalog {number} was built by {other.method}, catalog 1 by {first.method}: merge "
                              "catalogs of one method")
    chosen: dict[int, FeatureRecord] = {}
    found_by: dict[int, list[int]] = {}
    for number, catalog in enumerate(catalogs, 1):
        for record in catalog.records:
            if record.relevant:
                found_by.setdefault(record.feature, []).append(number)
            held = chosen.get(record.feature)
            if held is None or (record.relevant and not held.relevant):
                chosen[record.feature] = record
    records = []
    for feature in sorted(chosen):
        record = chosen[feature]
        if feature in found_by:
            which = ", ".join(str(n) for n in found_by[feature])
            record = record.model_copy(update={"reason": f"relevant in catalog {which} of {len(catalogs)}: "
                                               f"{record.reason}"})
        records.append(record)
    anchors = " + ".join(f"[{n}] {c.anchor or c.task}" for n, c in enumerate(catalogs, 1))
    return Catalog(task=task or first.task, method=first.method, space=first.space, anchor=anchors,
                   records=tuple(records))
