"""`fac coverage`: the FAC of a seed dataset for a task, its missing features and text-diversity baselines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from fac.commands import options as opt
from fac.console import console, progress, setup_logging, stdout
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.datasets import read_records

if TYPE_CHECKING:
    from fac.tools.catalog.records import Catalog, FeatureRecord
    from fac.tools.coverage import CoverageReport, RelevanceCheck
    from fac.tools.space.rendering import Sample
    from fac.tools.text.embeddings import Embedder

EMBEDDERS = ("minilm", "hashing", "none")
LENGTH_WARNING_R = 0.7


EXIT_BELOW_BAR = 1  # --fail-under: the data is fine, its coverage is below the bar


def _validate(seed: Path, text_field: str | None) -> int:
    """Read the whole seed once, keeping nothing: every input error surfaces before a model loads."""
    n_records = sum(1 for _ in read_records(seed, text_field))
    if not n_records:
        raise InputError(f"{seed}: the dataset is empty; expected at least one record")
    return n_records


def _samples(seed: Path, text_field: str | None) -> Iterator[Sample]:
    return (record.sample for record in read_records(seed, text_field))


def _stages(bar: Any) -> Callable[[str, int], Callable[[int], None]]:
    def stage(name: str, total: int) -> Callable[[int], None]:
        task_id = bar.add_task(name, total=total)
        return lambda n: bar.advance(task_id, n)

    return stage


def _embedder(name: str) -> Embedder | None:
    from fac.tools.text.embeddings import HashingEmbedder, default_embedder

    if name == "minilm":
        return default_embedder()
    return HashingEmbedder() if name == "hashing" else None


def _judge_check(judge_model: str, judge_url: str | None, key_env: str, task: str, guideline: Path | None,
                 catalog: Catalog, reasons: dict[int, str], shared: Any = None) -> RelevanceCheck:
    """Strict mode's relevance check: the LLM judge (explain → verify → relevance) on the seed's own spans."""
    from fac.tools.cache_dir import default_cache_dir
    from fac.tools.catalog.judge import FeatureCandidate, JudgeCache, judge_chat, judge_features
    from fac.tools.catalog.records import FeatureEvidence
    from fac.tools.catalog.tasks import get_task

    spec = get_task(catalog.task if guideline is None else task, guideline)
    chat, cached_as = judge_chat(judge_model, judge_url, key_env, shared=shared)  # named as catalog build does
    cache = JudgeCache(default_cache_dir() / "judge.sqlite")

    def check(feature: int, spans: Any) -> bool:
        evidence = tuple(FeatureEvidence(score=s.score, span=s.span, sample=s.sample) for s in spans)
        candidate = FeatureCandidate(feature, catalog.record(feature).activation_rate, evidence)
        (record,) = judge_features([candidate], spec.guideline, chat, cache, task=spec.name, model_name=cached_as)
        reasons[feature] = record.reason
        return bool(record.relevant)

    return check


def coverage(
    seed: Path = typer.Argument(..., help="Seed dataset: jsonl/csv/parquet/txt (optionally .gz) or HF dir."),
    task: str = typer.Option(..., "--task", help="Task whose relevant features (F_task) are measured."),
    catalog: Path | None = typer.Option(None, "--catalog", help="Catalog file, JSON or parquet (default: the "
                                        "stored catalog of the task, else the shipped one, else built now)."),
    text_field: str | None = typer.Option(None, help="Field holding the text (default: detected)."),
    strict: bool = typer.Option(False, "--strict", help="Covered = activated AND judged relevant on the seed's "
                                "own spans (needs --judge-model)."),
    judge_model: str | None = opt.JUDGE_MODEL,
    judge_url: str | None = opt.JUDGE_BASE_URL,
    judge_key_env: str = opt.JUDGE_KEY_ENV,
    old_judge_url: str | None = opt.deprecated_option("--judge-url"),
    guideline: Path | None = typer.Option(None, "--guideline", help="Task guideline file (custom tasks, --strict)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    fail_under: float | None = typer.Option(None, "--fail-under", min=0.0, max=1.0,
                                            help="Exit with code 1 when FAC is below this (a CI gate)."),
    top_missing: int = typer.Option(20, "--top-missing", help="Missing (and least covered) features to list."),
    embedder: str = typer.Option("minilm", "--embedder", help="Embedding baseline: minilm, hashing or none."),
    baseline_size: int = typer.Option(2000, "--baseline-size", help="Texts sampled (seeded) for the baselines."),
    embedding_size: int = typer.Option(500, "--embedding-size", help="Of those, texts embedded for the "
                                       "embedding baseline."),
    chunk_size: int = typer.Option(1024, "--chunk-size", help="Samples scored per chunk (memory stays flat)."),
    chroma_dir: Path | None = typer.Option(None, "--chroma-dir", help="Embedded chroma directory holding built "
                                           "catalogs (default: $FAC_CACHE_DIR/chroma or ~/.cache/fac/chroma)."),
    chroma_host: str | None = typer.Option(None, "--chroma-host", help="Use a Chroma server at this host instead."),
    chroma_port: int = typer.Option(8000, "--chroma-port", help="Port of the Chroma server."),
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    threshold: float = opt.THRESHOLD,
    device: str | None = opt.DEVICE,
    dtype: str = opt.DTYPE,
    max_tokens: int = opt.MAX_TOKENS,
    no_cache: bool = opt.NO_CACHE,
    ray: str | None = opt.RAY,
    ray_actors: int = opt.RAY_ACTORS,
    ray_gpus_per_actor: float = opt.RAY_GPUS,
    ray_cpus_per_actor: float = opt.RAY_CPUS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Measure FAC = |F_task ∩ A_δ(seed)| / |F_task| and list the task features the seed misses."""
    from fac.tools.catalog.resolve import catalog_file, resolve_catalog
    from fac.tools.catalog.store import open_store
    from fac.tools.catalog.tasks import get_task
    from fac.tools.coverage import measure_coverage

    setup_logging(verbose)
    judge_url = opt.alias(judge_url, old_judge_url, "--judge-base-url", "--judge-url")
    if top_missing < 0 or baseline_size < 1 or embedding_size < 2 or chunk_size < 1:
        raise ConfigError(f"--top-missing={top_missing} must be >= 0, --baseline-size={baseline_size} >= 1, "
                          f"--embedding-size={embedding_size} >= 2, --chunk-size={chunk_size} >= 1")
    if strict and not judge_model:
        raise ConfigError("--strict re-judges each activated feature on the seed's own spans: pass --judge-model "
                          "('local' or an OpenAI-compatible model name)")
    if embedder not in EMBEDDERS:
        raise ConfigError(f"--embedder {embedder!r}: expected one of {', '.join(EMBEDDERS)}")
    if chroma_dir is not None and chroma_host is not None:
        raise ConfigError(f"give --chroma-dir ({chroma_dir}) or --chroma-host ({chroma_host}), not both")
    # Everything that can be checked without a model is checked first.
    ray_options = opt.ray_options(ray, ray_actors, ray_gpus_per_actor, ray_cpus_per_actor)
    from_file = catalog_file(catalog, task) if catalog is not None else None
    if from_file is None:
        get_task(task, guideline)  # unknown task -> one line naming the known ones
    n_records = _validate(seed, text_field)
    from fac.tools.catalog.judge import LOCAL_JUDGE

    if strict and judge_model and judge_model != LOCAL_JUDGE:
        from fac.tools.llm.preflight import Endpoint, preflight

        preflight(Endpoint("judge", judge_model, judge_url, judge_key_env))
    space_options = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, no_cache)
    space = space_options.load_on(ray_options)
    with progress() as bar:
        # the stored catalog of the task in this space, else the shipped one, else one built now
        loaded = from_file or resolve_catalog(space, task, guideline_file=guideline,
                                                    store=open_store(chroma_dir, chroma_host, chroma_port),
                                                    progress=_stages(bar))
        loaded.check_space(space.describe())
        reasons: dict[int, str] = {}
        check = (_judge_check(judge_model, judge_url, judge_key_env, task, guideline, loaded, reasons,
                              opt.shared_default_model(space, model)) if strict and judge_model else None)
        scoring = bar.add_task(f"scoring {seed.name}", total=n_records)
        report = measure_coverage(
            space, _samples(seed, text_field), loaded, strict=strict, relevance_check=check,
            embedder=_embedder(embedder), embedding_baseline=embedder != "none", baseline_size=baseline_size,
            embedding_size=embedding_size, chunk_size=chunk_size,
            on_batch=lambda n: bar.advance(scoring, n),
        )
    if as_json:
        sys.stdout.write(json.dumps({"seed": str(seed), **report.to_json()}, ensure_ascii=False) + "\n")
    else:
        _print_report(report, loaded, reasons, top_missing, seed)
    if fail_under is not None and report.fac < fail_under:
        console.print(f"[red]FAC {report.fac:.3f} < --fail-under {fail_under:g}[/red]", highlight=False)
        raise typer.Exit(EXIT_BELOW_BAR)


def _describe(record: FeatureRecord | None) -> str:
    """What a feature detects: its explanation, else its top catalog evidence span."""
    if record is None:
        return ""
    if record.explanation:
        return str(record.explanation)
    top = max(record.evidence, key=lambda e: e.score, default=None)
    return f"“{top.span}”" if top else ""


def _print_report(report: CoverageReport, catalog: Catalog, reasons: dict[int, str], top_n: int, seed: Path) -> None:
    n_cov, n_task = len(report.covered), report.n_task_features
    stdout.print(Text.assemble(
        ("FAC ", "bold"), (f"{report.fac:.3f}", "bold green" if report.fac >= 0.5 else "bold yellow"),
        f" = |F_task ∩ A_δ| / |F_task| = {n_cov} / {n_task}  ",
        (f"(task {report.task!r}, {report.n_samples} samples of {seed.name}, δ = {report.threshold})", "dim"),
    ))
    if report.strict:
        stdout.print(f"strict: {len(report.covered) + len(report.rejected)} task features activated, "
                     f"{len(report.rejected)} judged not relevant on the seed's spans "
                     f"(activation-only FAC {report.fac_activated:.3f})", highlight=False)
    stdout.print(f"covered {n_cov} · missing {len(report.missing)} · SAE features the seed activates: "
                 f"{report.n_active_features} of {report.space.get('d_sae', '?')} · one sample activates "
                 f"{report.text_sparsity:.1%} of them on average", highlight=False)

    table = Table(title="task features: missing first, then the least covered", title_justify="left")
    for name, justify in (("feature", "right"), ("status", "left"), ("samples", "right"),
                          ("what it detects", "left"), ("why relevant", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    records = {r.feature: r for r in catalog.records}
    rejected, missing_set = set(report.rejected), set(report.missing)
    # missing: the most common in the task's anchor corpus first; covered: the fewest seed samples first
    missing = sorted(report.missing, key=lambda j: -records[j].activation_rate if j in records else 0.0)[:top_n]
    least = sorted(report.covered, key=lambda j: report.counts[j])[:top_n]
    for j in [*missing, *least]:
        status = "rejected" if j in rejected else "missing" if j in missing_set else "covered"
        style = {"missing": "red", "rejected": "yellow", "covered": "green"}[status]
        record = records.get(j)
        why = reasons.get(j) or (record.reason if record else "")
        table.add_row(str(j), Text(status, style=style), str(report.counts[j]),
                      Text(_short(_describe(record), 90)), Text(_short(why, 90)))
    hidden = len(report.missing) - len(missing)
    if table.row_count:
        stdout.print(table)
    if hidden > 0:
        stdout.print(f"… {hidden} more missing features (--top-missing, or --json for all)", highlight=False)

    base = report.baselines
    if base:
        sizes = f"{report.baseline_texts} sampled texts" + (
            f", embeddings of {report.embedding_texts}" if report.embedding_texts else "")
        stdout.print(f"text baselines on {sizes}: " + " · ".join(
            f"{name} {value:.3f}" for name, value in base.items()), highlight=False)
    length = report.length
    stdout.print(f"length: mean {length['mean_tokens']:.1f} · median {length['median_tokens']:.0f} · "
                 f"max {length['max_tokens']:.0f} tokens · r(length, active features) "
                 f"{length['r_length_active']:.2f} · r(length, active task features) "
                 f"{length['r_length_task_active']:.2f}", highlight=False)
    if report.n_truncated:
        stdout.print(f"[yellow]{report.n_truncated} samples were truncated to the token cap[/yellow]")
    if abs(length["r_length_active"]) >= LENGTH_WARNING_R:
        stdout.print(f"[yellow]note: sample length correlates with the number of active features "
                     f"(r = {length['r_length_active']:.2f}); longer samples cover more features[/yellow]")
    space = report.space
    console.print(f"model {space['model']} · layer {space['layer']} · SAE {space['sae']} · mode {space['mode']} · "
                  f"δ={space['threshold']}", highlight=False)


def _short(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
