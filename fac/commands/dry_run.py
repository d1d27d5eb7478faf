"""`fac run --dry-run`: what a run would do, from its resolved config, without a generator or a run directory."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from fac.console import console
from fac.graph.config import RunConfig


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")  # plain lines: a terminal's width never wraps the JSON or the lists


def dry_run_report(cfg: RunConfig, out: Path) -> None:
    """Print the resolved config, the feature space, F_task, the seed's FAC and missing features, and the
    generator tokens the goals need (at least: every draft kept; at most: every attempt spent, capped by
    the budget). Loads the feature space and the catalog and scores the seed (cached); writes nothing."""
    from fac.agents.planner import draft_cost
    from fac.graph.runner import load_catalog, load_space
    from fac.graph.state import GenState
    from fac.tools.coverage import activated_features, fac_score
    from fac.tools.text.datasets import read_samples

    seed = read_samples(cfg.seed, cfg.text_field)
    with console.status("loading the feature space and catalog, scoring the seed…"):
        space = load_space(cfg)
        catalog = load_catalog(cfg, space)
        catalog.check_space(space.describe())
        task = catalog.task_features()
        activated = activated_features(space.score(seed), cfg.threshold)
    missing = sorted(set(task) - activated)
    fac = fac_score(task, activated)
    per_draft = draft_cost(GenState(), cfg)
    need = max(0, math.ceil(cfg.goal_fac * len(task) - 1e-9) - (len(task) - len(missing)))
    low = need * cfg.min_per_feature * per_draft
    high = min(float(cfg.budget_tokens), len(missing) * cfg.max_attempts_per_feature * per_draft)
    _line(json.dumps({"out": str(out), "run_id": cfg.run_id(out.name), "config": cfg.model_dump(mode="json")},
                     indent=1, ensure_ascii=False))
    described = space.describe()
    _line(f"feature space: model {described.get('model')} · layer {described.get('layer')} · SAE "
          f"{described.get('sae')} · mode {described.get('mode')} · δ {cfg.threshold}")
    _line(f"F_task: {len(task)} features ({catalog.method} catalog of task {catalog.task}); seed "
          f"{len(seed)} samples: FAC {fac:.3f}, {len(missing)} missing; the goal {cfg.goal_fac} needs "
          f"{need} more")
    shown = ", ".join(map(str, missing[:30])) + (" …" if len(missing) > 30 else "")
    _line(f"missing: {shown or 'none'}")
    _line(f"generator tokens: at least ~{low:,.0f} (every draft kept), at most ~{high:,.0f} (every attempt "
          f"spent, budget {cfg.budget_tokens:,}); ~{per_draft:,.0f} per draft before any is measured")
