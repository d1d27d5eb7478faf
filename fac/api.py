"""fac as a Python library: the feature space, coverage, catalogs and the agent, on data in memory or in files.

Everything the command line does, callable from a notebook or a pipeline step (a distilabel step, a
`datasets.map`, a CI check). Data may be a `datasets.Dataset`, a list of texts, a list of conversations
(role/content dicts), a list of records, or a path to a file fac reads. Heavy modules load on first use,
so `import fac` stays cheap.

    import fac
    space = fac.load_space()                                   # SmolLM2-135M + the shipped SAE
    report = fac.coverage(["some text", "another"], task="toxicity", space=space)
    result = fac.synthesize(seed_dataset, task="toxicity", out="runs/tox", goals=fac.Goals(fac=0.9), space=space)
    result.samples                                             # a datasets.Dataset of the accepted samples
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fac.tools.space.ray_pool import RayOptions as RayOptions  # re-exported: fac.RayOptions

if TYPE_CHECKING:
    import datasets
    from langchain_core.language_models import BaseChatModel

    from fac.graph.status import Status
    from fac.tools.catalog.records import Catalog
    from fac.tools.coverage import CoverageReport
    from fac.tools.space.features import FeatureSpace, SampleScores
    from fac.tools.space.rendering import Sample



@dataclass(frozen=True)
class SpaceSpec:
    """What a feature space is made of, without loading it: picklable, so pipeline workers can load their own."""

    model: str = "default"
    sae: str = "default"
    layer: int | None = None
    mode: str = "sae"
    threshold: float = 0.0
    device: str | None = None
    dtype: str = "auto"
    max_tokens: int = 512
    use_cache: bool = True

    def load(self) -> FeatureSpace:
        """The loaded space (once per process and spec)."""
        return _load_cached(self)


_LOADED: dict[SpaceSpec, Any] = {}


def _load_cached(spec: SpaceSpec) -> FeatureSpace:
    from fac.tools.errors import ConfigError
    from fac.tools.space.features import FeatureSpace

    if spec not in _LOADED:
        if spec.mode not in ("sae", "paper"):
            raise ConfigError(f"mode {spec.mode!r}: expected 'sae' or 'paper'")
        _LOADED[spec] = FeatureSpace.load(spec.model, spec.sae, layer=spec.layer,
                                          mode="paper" if spec.mode == "paper" else "sae",
                                          threshold=spec.threshold, device=spec.device, dtype=spec.dtype,
                                          max_tokens=spec.max_tokens, use_cache=spec.use_cache)
    space: FeatureSpace = _LOADED[spec]
    return space


def load_space(model: str = "default", sae: str = "default", **settings: Any) -> FeatureSpace:
    """A feature space: `model` ('default', a hub id, a local HF directory or a .gguf) read by `sae` ('default',
    a sae-lens directory, a FAC-Synthesis .pt/.pth file or RELEASE:SAE_ID); settings as SpaceSpec (layer, mode,
    threshold, device, dtype, ...)."""
    return SpaceSpec(model, sae, **settings).load()


def _space(space: FeatureSpace | SpaceSpec | None, ray: RayOptions | None = None) -> FeatureSpace:
    if ray is not None:
        from fac.tools.errors import ConfigError
        from fac.tools.space.ray_scoring import with_ray

        if not (space is None or isinstance(space, SpaceSpec)):
            raise ConfigError("ray=RayOptions(...) needs the space as a fac.SpaceSpec (each actor loads its own "
                              "copy), not a loaded FeatureSpace")
        spec = space or SpaceSpec()
        return with_ray(spec.load(), spec, ray)
    if space is None:
        return SpaceSpec().load()
    return space.load() if isinstance(space, SpaceSpec) else space


def as_samples(data: Any, text_field: str | None = None) -> list[Sample]:
    """The samples in `data` (see the module doc); the text is found as in files (--text-field to choose)."""
    from fac.tools.text.datasets import read_samples, samples_from_rows

    if isinstance(data, str | Path):
        return read_samples(data, text_field)
    if hasattr(data, "column_names") and hasattr(data, "__iter__"):  # a datasets.Dataset
        return samples_from_rows(iter(data), text_field, source="dataset")
    return samples_from_rows(list(data), text_field)


def score(texts: Any, space: FeatureSpace | SpaceSpec | None = None, text_field: str | None = None
          ) -> list[SampleScores]:
    """The SAE feature scores of each sample (active features, their scores and evidence spans)."""
    return _space(space).score(as_samples(texts, text_field))


def load_catalog(task: str | None = None, *, catalog: str | Path | None = None,
                 space: FeatureSpace | SpaceSpec | None = None, guideline: str | Path | None = None,
                 store: bool = True) -> Catalog:
    """The task's catalog as `fac coverage` finds it: a file, the stored one, the shipped one, or built now."""
    from fac.tools.catalog.resolve import resolve_catalog
    from fac.tools.catalog.store import open_store

    return resolve_catalog(_space(space), task, Path(catalog) if catalog else None,
                           guideline_file=Path(guideline) if guideline else None,
                           store=open_store() if store and catalog is None else None)


def build_catalog(task: str, *, space: FeatureSpace | SpaceSpec | None = None, anchor: str | Path | None = None,
                  background: str | Path | None = None, guideline: str | Path | None = None,
                  method: str = "contrast", judge: BaseChatModel | None = None, ray: RayOptions | None = None
                  ) -> Catalog:
    """Build a task's catalog on its anchor corpus (and background, for contrast); `method="judge"` needs `judge`,
    any LangChain chat model (e.g. `ChatOpenAI`). `ray` scores the corpora on a Ray actor pool (same catalog)."""
    from fac.tools.catalog.build import build_catalog as build
    from fac.tools.catalog.tasks import get_task
    from fac.tools.errors import ConfigError

    if method not in ("contrast", "judge"):
        raise ConfigError(f"method {method!r}: expected 'contrast' or 'judge'")
    if method == "judge" and judge is None:
        raise ConfigError("method='judge' needs a chat model: build_catalog(..., judge=ChatOpenAI(model=...))")
    spec = get_task(task, Path(guideline) if guideline else None).with_corpora(
        anchor=Path(anchor) if anchor else None, background=Path(background) if background else None)
    return build(_space(space, ray), spec, "judge" if method == "judge" else "contrast", judge)


def coverage(data: Any, task: str | None = None, *, catalog: Catalog | str | Path | None = None,
             space: FeatureSpace | SpaceSpec | None = None, text_field: str | None = None,
             baselines: bool = True, ray: RayOptions | None = None) -> CoverageReport:
    """FAC of `data` for `task` (or against `catalog`), with covered/missing features and text baselines; `ray`
    (RayOptions: address, actors, gpus_per_actor) scores on a Ray actor pool, with the same result."""
    from fac.tools.catalog.records import Catalog
    from fac.tools.coverage import measure_coverage
    from fac.tools.text.embeddings import default_embedder

    loaded = _space(space, ray)
    found = catalog if isinstance(catalog, Catalog) else load_catalog(task, catalog=catalog, space=loaded)
    found.check_space(loaded.describe())
    return measure_coverage(loaded, as_samples(data, text_field), found, baselines=baselines,
                            embedder=default_embedder() if baselines else None, embedding_baseline=baselines)


@dataclass(frozen=True)
class Goals:
    """When the agent stops: FAC reached with `min_per_feature` samples per new feature, or a budget spent."""

    fac: float = 0.9
    min_per_feature: int = 2
    max_attempts_per_feature: int = 8
    max_rounds: int = 30
    budget_tokens: int = 300_000

    def fields(self) -> dict[str, Any]:
        return {"goal_fac": self.fac, "min_per_feature": self.min_per_feature,
                "max_attempts_per_feature": self.max_attempts_per_feature, "max_rounds": self.max_rounds,
                "budget_tokens": self.budget_tokens}


@dataclass(frozen=True)
class SynthesisResult:
    """A finished (or interrupted) run: its directory, status (FAC before/now, stop reason) and samples."""

    run_dir: Path
    run_id: str
    status: Status
    exhausted: tuple[int, ...]
    rejections: dict[str, int] = field(default_factory=dict)
    interrupted: str | None = None

    @property
    def samples(self) -> datasets.Dataset:
        """The accepted samples as a `datasets.Dataset` (one row per sample; format fields become columns)."""
        import datasets

        from fac.graph.run_dir import RunDir

        rows = RunDir(self.run_dir).sample_rows()
        return datasets.Dataset.from_list(rows)

    def report(self) -> dict[str, Any]:
        """The run's run.json (what `fac status` shows)."""
        from fac.graph.run_dir import RunDir

        return RunDir(self.run_dir).read_status()


def _run_space(cfg: Any) -> SpaceSpec:
    """The feature space a run's config names (loaded once per process, shared with other API calls)."""
    return SpaceSpec(cfg.model, cfg.sae, cfg.layer, cfg.mode, cfg.threshold, cfg.device, cfg.dtype, cfg.max_tokens)


def _finish(result: Any) -> SynthesisResult:
    return SynthesisResult(result.paths.root, result.run_id, result.status, result.exhausted, result.rejections,
                           result.interrupted)


def synthesize(seed: Any, task: str, out: str | Path, *, goals: Goals | None = None,
               space: FeatureSpace | SpaceSpec | None = None, catalog: Catalog | None = None,
               writer: BaseChatModel | None = None, text_field: str | None = None, **settings: Any
               ) -> SynthesisResult:
    """Run the agent on `seed` until `goals` are met; `settings` are RunConfig fields (generator, base_url,
    generator_model, temperature, ...). A seed in memory is written to `out`/seed.jsonl, so the run resumes."""
    from fac.graph.config import make_config
    from fac.graph.runner import make_deps, open_run, preflight_endpoints, run

    out = Path(out)
    lines: list[str] | None = None
    if isinstance(seed, str | Path):
        seed_path = Path(seed)
    else:
        lines = [json.dumps({"messages": s} if not isinstance(s, str) else {"text": s}, ensure_ascii=False)
                 for s in as_samples(seed, text_field)]
        seed_path, text_field = out / "seed.jsonl", None
    values = {"seed": str(seed_path), "task": task, "text_field": text_field, **(goals or Goals()).fields(),
              **settings}
    cfg = make_config({k: v for k, v in values.items() if v is not None})
    if writer is None:
        preflight_endpoints(cfg)  # before the run directory and the models
    cfg, paths = open_run(out, cfg)
    if lines is not None:
        seed_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    deps = make_deps(cfg, paths, space=_space(space if space is not None else _run_space(cfg)), catalog=catalog,
                     writer=writer)
    return _finish(run(deps, paths))


def resume(run_dir: str | Path, *, writer: BaseChatModel | None = None,
           space: FeatureSpace | SpaceSpec | None = None, **limits: Any) -> SynthesisResult:
    """Continue a run from its last checkpoint; `limits` may raise goals and budgets (goal_fac, budget_tokens...)."""
    from fac.graph.runner import make_deps, open_run, preflight_endpoints, run

    cfg, paths = open_run(Path(run_dir), resume=True, overrides=limits)
    if writer is None:
        preflight_endpoints(cfg)
    deps = make_deps(cfg, paths, space=_space(space if space is not None else _run_space(cfg)), writer=writer)
    return _finish(run(deps, paths))
