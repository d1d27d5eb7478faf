"""`fac catalog build|show|export`: the task feature catalog, built by contrast or an LLM judge, kept in chroma."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from fac.commands import options as opt
from fac.console import console, progress, setup_logging, stdout
from fac.tools.errors import ConfigError, InputError

if TYPE_CHECKING:
    from fac.tools.catalog.build import Progress
    from fac.tools.catalog.records import Catalog, FeatureRecord
    from fac.tools.catalog.store import CatalogStore

catalog_app = typer.Typer(help="Build, show and export the feature catalog of a task.", no_args_is_help=True)

TASK = typer.Option(None, "--task", "-t", help="Task: toxicity, helpfulness, instruction_following, sycophancy, "
                    "survival_instinct, or a new name with --guideline.")
GUIDELINE = typer.Option(None, "--guideline", help="Guideline file (markdown/text): a custom task or a new guideline.")
CATALOG = typer.Option(None, "--catalog", help="A catalog file (JSON or parquet export) instead of the stored one.")
CHROMA_DIR = typer.Option(None, "--chroma-dir", help="Embedded chroma directory (default: $FAC_CACHE_DIR/chroma "
                          "or ~/.cache/fac/chroma).")
CHROMA_HOST = typer.Option(None, "--chroma-host", help="Use a Chroma server at this host instead.")
CHROMA_PORT = typer.Option(8000, "--chroma-port", help="Port of the Chroma server.")


def _store(chroma_dir: Path | None, host: str | None, port: int) -> CatalogStore:
    from fac.tools.catalog.store import open_store

    if chroma_dir is not None and host is not None:
        raise ConfigError(f"give --chroma-dir ({chroma_dir}) or --chroma-host ({host}), not both")
    return open_store(chroma_dir, host, port)


def _need_file(path: Path | None, flag: str) -> None:
    if path is not None and not path.exists():
        raise InputError(f"{path}: no such file ({flag})")


@contextmanager
def _progress() -> Iterator[Progress]:
    with progress() as bar:

        def stage(name: str, total: int) -> Callable[[int], None]:
            task_id = bar.add_task(name, total=total)
            return lambda n: bar.advance(task_id, n)

        yield stage


@catalog_app.command("build")
def build(
    task: str = typer.Option(..., "--task", "-t", help="Task: toxicity, helpfulness, instruction_following, "
                             "sycophancy, survival_instinct, or a new name with --guideline."),
    guideline: Path | None = GUIDELINE,
    anchor: Path | None = typer.Option(None, "--anchor", help="Task-positive corpus (default: shipped)."),
    background: Path | None = typer.Option(None, "--background", help="Background corpus to contrast against."),
    label_field: str | None = typer.Option(None, "--label-field", help="Label field splitting a labelled --anchor."),
    positive_labels: str | None = typer.Option(None, "--positive-labels", help="Comma-separated task-positive labels."),
    text_field: str | None = typer.Option(None, "--text-field", help="Field holding the text (default: detected)."),
    method: str = typer.Option("contrast", "--method", help="contrast (no LLM) or judge (explain → verify → judge)."),
    judge_model: str | None = opt.JUDGE_MODEL,
    base_url: str | None = opt.JUDGE_BASE_URL,
    key_env: str = opt.JUDGE_KEY_ENV,
    judge_local: bool = typer.Option(False, "--judge-local", help="Same as --judge-model local."),
    old_base_url: str | None = opt.deprecated_option("--base-url"),
    old_key_env: str | None = opt.deprecated_option("--key-env"),
    judge_workers: int = typer.Option(1, "--judge-workers", help="Features judged in parallel (remote endpoints)."),
    judge_order: str = typer.Option("frequency", "--judge-order", help="Judge: which features come first under "
                                    "--max-features: frequency (most anchor samples) or contrast (most "
                                    "over-represented vs the background)."),
    max_features: int | None = typer.Option(None, "--max-features", help="Judge: at most this many features, "
                                            "the most frequent first."),
    min_count: int = typer.Option(1, "--min-count", help="Judge: only features active in this many anchor samples."),
    q_max: float = typer.Option(0.05, "--q-max", help="Contrast: Benjamini-Hochberg FDR level."),
    min_log_odds: float = typer.Option(1.0, "--min-log-odds", help="Contrast: minimum log odds ratio."),
    min_positive: int = typer.Option(5, "--min-positive", help="Contrast: minimum task-positive samples activating."),
    all_evidence: bool = typer.Option(False, "--all-evidence", help="Contrast: keep evidence of non-relevant "
                                      "features too (larger catalog)."),
    top_k: int = typer.Option(10, "--top-k", help="Evidence items (distinct spans) kept per feature."),
    match_length: bool = typer.Option(False, "--match-length", help="Contrast: test on task-positive and background "
                                      "samples matched by token length (a feature gains nothing from longer texts)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the catalog as JSON here."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Also write the catalog as parquet here."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the catalog in chroma."),
    chroma_dir: Path | None = CHROMA_DIR,
    chroma_host: str | None = CHROMA_HOST,
    chroma_port: int = CHROMA_PORT,
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
    """Build a task's feature catalog from its anchor corpus and store it (chroma, and --out/--parquet)."""
    from fac.tools.catalog.build import build_catalog
    from fac.tools.catalog.contrast import ContrastConfig
    from fac.tools.catalog.judge import LOCAL_JUDGE, JudgeStats
    from fac.tools.catalog.tasks import get_task

    setup_logging(verbose)
    base_url = opt.alias(base_url, old_base_url, "--judge-base-url", "--base-url")
    key_env = str(opt.alias(key_env, old_key_env, "--judge-key-env", "--key-env", opt.KEY_ENV_DEFAULT))
    if method not in ("contrast", "judge"):
        raise ConfigError(f"--method {method!r}: expected contrast or judge")
    if judge_order not in ("frequency", "contrast"):
        raise ConfigError(f"--judge-order {judge_order!r}: expected frequency or contrast")
    if method == "judge" and bool(judge_model) == judge_local:
        raise ConfigError("--method judge needs exactly one of --judge-model NAME (with --judge-base-url) or "
                          "--judge-model local")
    if method == "contrast" and (judge_model or judge_local or base_url):
        raise ConfigError("--judge-model/--judge-base-url/--judge-local apply to --method judge only")
    if judge_local:
        judge_model = LOCAL_JUDGE
    if top_k < 1 or min_count < 1 or judge_workers < 1 or (max_features is not None and max_features < 1):
        raise ConfigError(f"--top-k {top_k}, --min-count {min_count}, --judge-workers {judge_workers} and "
                          f"--max-features {max_features} must be >= 1")
    for path, flag in ((anchor, "--anchor"), (background, "--background"), (guideline, "--guideline")):
        _need_file(path, flag)
    labels = tuple(p.strip() for p in positive_labels.split(",") if p.strip()) if positive_labels else None
    spec = get_task(task, guideline).with_corpora(anchor=anchor, background=background, label_field=label_field,
                                                 positive_labels=labels, text_field=text_field)
    contrast_config = ContrastConfig(q_max=q_max, min_log_odds=min_log_odds, min_positive=min_positive)
    ray_options = opt.ray_options(ray, ray_actors, ray_gpus_per_actor, ray_cpus_per_actor)
    store = None if no_store else _store(chroma_dir, chroma_host, chroma_port)
    if method == "judge" and judge_model != LOCAL_JUDGE:
        from fac.tools.llm.preflight import Endpoint, preflight

        preflight(Endpoint("judge", str(judge_model), base_url, key_env))  # before any model loads
    space_options = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, no_cache)
    space = space_options.load_on(ray_options)
    chat, judge_name = (_chat(str(judge_model), base_url, key_env, space, model) if method == "judge"
                        else (None, ""))
    judge_stats = JudgeStats()
    with _progress() as stage:
        catalog = build_catalog(space, spec, "judge" if method == "judge" else "contrast", chat,
                                judge_model_name=judge_name, judge_workers=judge_workers, judge_stats=judge_stats,
                                judge_order="contrast" if judge_order == "contrast" else "frequency",
                                contrast_config=contrast_config, top_k=top_k, min_count=min_count,
                                max_features=max_features, all_evidence=all_evidence, match_length=match_length,
                                progress=stage)
    where = []
    if store is not None:
        where.append(f"chroma collection {store.save(catalog, space.key)}")
    if out is not None:
        catalog.save_json(out)
        where.append(str(out))
    if parquet is not None:
        catalog.save_parquet(parquet)
        where.append(str(parquet))
    _print_table(catalog, top=20, show_all=catalog.method == "judge")  # a judged feature is worth seeing either way
    if method == "judge":
        console.print(f"judge {judge_name}: {judge_stats.features} features judged, {judge_stats.relevant} "
                      f"relevant; {judge_stats.calls} calls ({judge_stats.cache_hits} answered from the cache), "
                      f"{judge_stats.input_tokens:,} input / {judge_stats.output_tokens:,} output tokens spent",
                      highlight=False)
    console.print(f"catalog of {catalog.task}: {len(catalog.task_features())} task-relevant features of "
                  f"{len(catalog.records)} recorded ({catalog.method}); saved to {', '.join(where) or 'nowhere'}",
                  highlight=False)


def _chat(judge_model: str, base_url: str | None, key_env: str, space: Any, model: str) -> tuple[Any, str]:
    """The judge chat model and the name it is cached under; the local judge reuses the space's default model."""
    from fac.tools.catalog.judge import judge_chat

    shared = opt.shared_default_model(space, model)
    chat_and_name: tuple[Any, str] = judge_chat(judge_model, base_url, key_env, shared=shared)
    return chat_and_name


def _resolve(task: str | None, catalog: Path | None, guideline: Path | None, open_store: Callable[[], CatalogStore],
             space_options: opt.SpaceOptions) -> Catalog:
    """The catalog to browse: a file, else the stored one (the only one, or the one of the chosen space), else
    the shipped one; the feature space loads only to choose between stored catalogs."""
    from fac.tools.catalog.resolve import resolve_catalog

    return resolve_catalog(space_options.load, task, catalog, guideline_file=guideline,
                           store=open_store() if catalog is None else None, build_missing=False,
                           any_space=space_options == _DEFAULT_SPACE)


def _lookup_space(model: str, sae: str, layer: int | None, mode: str, max_tokens: int) -> opt.SpaceOptions:
    """The space a stored catalog is looked up in: threshold, device, dtype and cache left at their defaults."""
    return opt.SpaceOptions(model, sae, layer, mode, 0.0, None, "auto", max_tokens, False)


_DEFAULT_SPACE = _lookup_space("default", "default", None, "sae", 512)


def _row_stats(rec: FeatureRecord) -> str:
    if rec.method == "contrast" and rec.stats:
        return f"{rec.stats.get('log_odds', 0):+.2f} / {rec.stats.get('q_value', 1):.1e}"
    return rec.decision or ""


def _print_table(catalog: Catalog, *, top: int, show_all: bool) -> None:
    records = [r for r in catalog.records if show_all or r.relevant]
    if catalog.method == "contrast":
        records.sort(key=lambda r: (-r.relevant, -r.stats.get("log_odds", 0.0), r.feature))
    else:
        records.sort(key=lambda r: (-r.relevant, -r.activation_rate, r.feature))
    table = Table(title=f"{catalog.task}: {len(catalog.task_features())} task-relevant features "
                  f"({catalog.method}; {len(catalog.records)} recorded)", title_justify="left")
    table.add_column("feature", justify="right")
    table.add_column("rel")
    table.add_column("rate", justify="right")
    table.add_column("log-odds / q" if catalog.method == "contrast" else "decision")
    table.add_column("explanation or top span")
    for rec in records[:top]:
        what = rec.explanation or (rec.evidence[0].span if rec.evidence else rec.reason)
        table.add_row(str(rec.feature), "yes" if rec.relevant else "no", f"{rec.activation_rate:.1%}",
                      _row_stats(rec), Text(" ".join(what.split())[:100]))
    stdout.print(table)
    space = catalog.space
    console.print(f"model {space.get('model')} · layer {space.get('layer')} · SAE {space.get('sae')} · "
                  f"mode {space.get('mode')} · anchor {catalog.anchor or '?'}", highlight=False)


def _print_feature(catalog: Catalog, feature: int) -> None:
    try:
        rec = catalog.record(feature)
    except KeyError:
        raise InputError(f"feature {feature} is not in the catalog of {catalog.task!r} "
                         f"({len(catalog.records)} features recorded)") from None
    stdout.print(Text(f"feature {rec.feature}: {'task-relevant' if rec.relevant else 'not relevant'} "
                      f"({rec.method}{', ' + rec.decision if rec.decision else ''}); "
                      f"active in {rec.activation_rate:.1%} of anchor samples"))
    if rec.explanation:
        stdout.print(Text(f"explanation: {rec.explanation}"))
    stdout.print(Text(f"reason: {rec.reason}"))
    table = Table(title="evidence", title_justify="left")
    table.add_column("score", justify="right")
    table.add_column("span")
    table.add_column("sample")
    for ev in rec.evidence:
        table.add_row(f"{ev.score:.3f}", Text(" ".join(ev.span.split())), Text(" ".join(ev.sample.split())[:160]))
    stdout.print(table)


@catalog_app.command("show")
def show(
    task: str | None = TASK,
    catalog: Path | None = CATALOG,
    guideline: Path | None = GUIDELINE,
    feature: int | None = typer.Option(None, "--feature", "-f", help="Show one feature's evidence in full."),
    query: str | None = typer.Option(None, "--query", "-q", help="Relevant features nearest in meaning to this text."),
    top: int = typer.Option(30, "--top", "-n", help="Rows to show."),
    show_all: bool = typer.Option(False, "--all", help="Include features that are not task-relevant."),
    as_json: bool = typer.Option(False, "--json", help="Write the whole catalog as JSON on stdout."),
    chroma_dir: Path | None = CHROMA_DIR,
    chroma_host: str | None = CHROMA_HOST,
    chroma_port: int = CHROMA_PORT,
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    max_tokens: int = opt.MAX_TOKENS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Show a task's catalog: its task-relevant features, their rates, statistics and evidence."""
    setup_logging(verbose)
    space_options = _lookup_space(model, sae, layer, mode, max_tokens)
    found = _resolve(task, catalog, guideline, lambda: _store(chroma_dir, chroma_host, chroma_port), space_options)
    if as_json:
        sys.stdout.write(found.model_dump_json(indent=1) + "\n")
    elif feature is not None:
        _print_feature(found, feature)
    elif query is not None:
        _print_query(found, query, top)
    else:
        _print_table(found, top=top, show_all=show_all)


def _print_query(catalog: Catalog, query: str, top: int) -> None:
    """Rank the catalog's relevant features by embedding distance (local embedder) between their document and query."""
    from fac.tools.catalog.store import feature_document
    from fac.tools.text.embeddings import default_embedder

    relevant = [r for r in catalog.records if r.relevant]
    if not relevant:
        raise InputError(f"the catalog of {catalog.task!r} has no task-relevant features to search")
    vectors = default_embedder().embed([feature_document(r) for r in relevant] + [query])  # (n + 1, dim)
    distances = 1.0 - vectors[:-1] @ vectors[-1]
    table = Table(title=f"nearest to {query!r}", title_justify="left")
    for name in ("feature", "distance", "rate", "explanation or top span"):
        table.add_column(name)
    for at in distances.argsort()[:top]:
        rec = relevant[int(at)]
        what = rec.explanation or (rec.evidence[0].span if rec.evidence else rec.reason)
        table.add_row(str(rec.feature), f"{distances[at]:.3f}", f"{rec.activation_rate:.1%}",
                      Text(" ".join(what.split())[:100]))
    stdout.print(table)


@catalog_app.command("export")
def export(
    task: str | None = TASK,
    catalog: Path | None = CATALOG,
    guideline: Path | None = GUIDELINE,
    out: Path | None = typer.Option(None, "--out", "-o", help="Write JSON here."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Write parquet here (one row per feature)."),
    chroma_dir: Path | None = CHROMA_DIR,
    chroma_host: str | None = CHROMA_HOST,
    chroma_port: int = CHROMA_PORT,
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    max_tokens: int = opt.MAX_TOKENS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Export a task's catalog (stored, shipped or a file) as JSON and/or parquet."""
    setup_logging(verbose)
    if out is None and parquet is None:
        raise InputError("nothing to write: give --out FILE.json and/or --parquet FILE.parquet")
    space_options = _lookup_space(model, sae, layer, mode, max_tokens)
    found = _resolve(task, catalog, guideline, lambda: _store(chroma_dir, chroma_host, chroma_port), space_options)
    if out is not None:
        found.save_json(out)
    if parquet is not None:
        found.save_parquet(parquet)
    console.print(f"exported the catalog of {found.task} ({len(found.records)} features, "
                  f"{len(found.task_features())} task-relevant) to {', '.join(str(p) for p in (out, parquet) if p)}",
                  highlight=False)


@catalog_app.command("import")
def import_tsv(
    tsv: Path = typer.Argument(..., help="The FAC-Synthesis authors' TSV (FeatureID, Task, Verify, Summary, Words) "
                               "written by their annotate_<task>.py."),
    task: str = typer.Option(..., "--task", "-t", help="The task the file's relevance decisions are for."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the catalog as JSON here."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Also write the catalog as parquet here."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the catalog in chroma."),
    chroma_dir: Path | None = CHROMA_DIR,
    chroma_host: str | None = CHROMA_HOST,
    chroma_port: int = CHROMA_PORT,
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    threshold: float = opt.THRESHOLD,
    device: str | None = opt.DEVICE,
    dtype: str = opt.DTYPE,
    max_tokens: int = opt.MAX_TOKENS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Import the authors' feature explanations and relevance decisions as a judge catalog of the space given by
    --model/--sae/--layer (the space the file's SAE belongs to)."""
    from fac.tools.catalog.paper_tsv import read_paper_tsv

    setup_logging(verbose)
    read_paper_tsv(tsv, task, {})  # every row checked before the model loads (the feature range after)
    store = None if no_store else _store(chroma_dir, chroma_host, chroma_port)
    space = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, True).load()
    imported = read_paper_tsv(tsv, task, space.describe())
    where = []
    if store is not None:
        where.append(f"chroma collection {store.save(imported, space.key)}")
    for path, save in ((out, imported.save_json), (parquet, imported.save_parquet)):
        if path is not None:
            save(path)
            where.append(str(path))
    console.print(f"catalog of {imported.task}: {len(imported.task_features())} task-relevant features of "
                  f"{len(imported.records)} imported from {tsv.name} (judge); saved to {', '.join(where) or 'nowhere'}",
                  highlight=False)


@catalog_app.command("merge")
def merge(
    catalogs: list[Path] = typer.Argument(..., help="Two or more catalog files (JSON or parquet) of one space."),
    out: Path = typer.Option(..., "--out", "-o", help="Write the merged catalog as JSON here."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Also write it as parquet here."),
    task: str | None = typer.Option(None, "--task", "-t", help="Task name of the result (default: the first's)."),
    verbose: int = opt.VERBOSE,
) -> None:
    """Union of catalogs built on different anchors or contrasts: relevant iff some input says so."""
    from fac.tools.catalog.build import load_catalog_file
    from fac.tools.catalog.merge import merge_catalogs

    setup_logging(verbose)
    for path in catalogs:
        _need_file(path, "CATALOGS")
    merged = merge_catalogs([load_catalog_file(p) for p in catalogs], task=task)
    merged.save_json(out)
    if parquet is not None:
        merged.save_parquet(parquet)
    console.print(f"merged {len(catalogs)} catalogs of {merged.task}: {len(merged.task_features())} task-relevant "
                  f"features of {len(merged.records)}; written to {', '.join(str(p) for p in (out, parquet) if p)}",
                  highlight=False)


@catalog_app.command("membership")
def membership(
    task: str = typer.Option(..., "--task", "-t", help="Task whose anchor (positives) and background (negatives) "
                             "the classifier is fitted on."),
    guideline: Path | None = GUIDELINE,
    anchor: Path | None = typer.Option(None, "--anchor", help="Task-positive corpus (default: shipped)."),
    background: Path | None = typer.Option(None, "--background", help="Negative corpus (default: shipped)."),
    label_field: str | None = typer.Option(None, "--label-field", help="Label field splitting a labelled --anchor."),
    positive_labels: str | None = typer.Option(None, "--positive-labels", help="Comma-separated task-positive labels."),
    text_field: str | None = typer.Option(None, "--text-field", help="Field holding the text (default: detected)."),
    keep: float = typer.Option(0.95, "--keep", help="Share of held-back anchor samples the threshold keeps."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train / held-back split."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the model here (default: the store under the "
                                    "cache directory, where `fac run` finds it)."),
    model: str = opt.MODEL,
    sae: str = opt.SAE,
    layer: int | None = opt.LAYER,
    mode: str = opt.MODE,
    threshold: float = opt.THRESHOLD,
    device: str | None = opt.DEVICE,
    dtype: str = opt.DTYPE,
    max_tokens: int = opt.MAX_TOKENS,
    no_cache: bool = opt.NO_CACHE,
    verbose: int = opt.VERBOSE,
) -> None:
    """Fit the task-membership classifier of the verifier's membership gate (SAE features, anchor vs background)."""
    from fac.tools.catalog.membership import fit_task_membership, stored_path
    from fac.tools.catalog.tasks import get_task

    setup_logging(verbose)
    if not 0.5 <= keep < 1.0:
        raise ConfigError(f"--keep {keep}: expected a share in [0.5, 1)")
    for path, flag in ((anchor, "--anchor"), (background, "--background"), (guideline, "--guideline")):
        _need_file(path, flag)
    labels = tuple(p.strip() for p in positive_labels.split(",") if p.strip()) if positive_labels else None
    spec = get_task(task, guideline).with_corpora(anchor=anchor, background=background, label_field=label_field,
                                                 positive_labels=labels, text_field=text_field)
    space = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, no_cache).load()
    with _progress() as stage:
        fitted = fit_task_membership(space, spec, keep=keep, seed=seed, progress=stage)
    path = out or stored_path(spec.name, space)
    fitted.save(path)
    c = fitted.calibration
    console.print(f"membership model of {spec.name}: threshold {fitted.threshold:.3f} keeps "
                  f"{c.heldout_pos_accept:.1%} of {c.n_heldout_pos} held-back anchor samples and accepts "
                  f"{c.heldout_neg_accept:.1%} of {c.n_heldout_neg} held-back background samples (AUPRC "
                  f"{c.heldout_auprc:.3f}, L2 {c.l2:g}); saved to {path}", highlight=False)
