"""`fac run`: fill the seed's missing task features with verified synthetic samples (the LangGraph loop)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fac.commands.dry_run import dry_run_report
from fac.commands.options import LAYER_HELP, alias, check_device, deprecated_option, parse_layer
from fac.console import console, setup_logging, stdout
from fac.tools.errors import ConfigError

EXIT_INTERRUPTED = 3  # an endpoint fault after the client's retries: rerunning resumes
EXIT_SIGNALLED = 130  # SIGTERM or SIGINT: the run stopped cleanly and resumes


def _status_line(node: str, s: Any) -> str:
    return (f"FAC {s.fac_now:.3f}/{s.goal_fac:g} · covered {s.covered}/{s.n_task} · missing {s.missing} · "
            f"exhausted {s.exhausted} · accepted {s.accepted} · tokens {s.tokens_used:,}/{s.budget_tokens:,} · "
            f"round {s.round} [{node}]")


class _Live:
    """One progress bar: task features covered towards the goal, with the coverage line as its description."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: Any = None

    def __call__(self, node: str, s: Any) -> None:
        need = max(math.ceil(s.goal_fac * s.n_task - 1e-9), 1)
        if self.task is None:
            self.task = self.bar.add_task("", total=need)
        self.bar.update(self.task, completed=min(s.covered, need), description=_status_line(node, s))


def run_command(
    seed: Path | None = typer.Argument(None, help="Seed dataset (jsonl/csv/parquet/txt or HF dir); not with --resume."),
    task: str | None = typer.Option(None, "--task", help="Task whose missing features are filled (e.g. toxicity)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory, e.g. runs/NAME."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory."),
    config: Path | None = typer.Option(None, "--config", help="Run config file (.toml/.yaml/.json, or a run's "
                                       "config.json) holding any field, seed, task and out included; flags override "
                                       "it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config, the feature space, F_task, "
                                 "the missing features and a generator-token estimate; load no generator, write "
                                 "nothing."),
    catalog: Path | None = typer.Option(None, "--catalog", help="Feature catalog JSON (default: the task's)."),
    text_field: str | None = typer.Option(None, "--text-field", help="Field holding the seed's text."),
    goal_fac: float | None = typer.Option(None, "--goal-fac", help="Stop when FAC reaches this [0.9]."),
    min_per_feature: int | None = typer.Option(None, "--min-per-feature", help="Samples per new feature [2]."),
    max_attempts_per_feature: int | None = typer.Option(None, "--max-attempts-per-feature",
                                                        help="Drafts per feature before it is exhausted [8]."),
    max_rounds: int | None = typer.Option(None, "--max-rounds", help="Planner rounds [30]."),
    budget_tokens: int | None = typer.Option(None, "--budget-tokens", help="Generator tokens to spend [300000]."),
    generator: str | None = typer.Option(None, "--generator", help="'local' (in-process, default) or 'openai' "
                                         "(any OpenAI-compatible endpoint: vLLM, llama.cpp server, OpenAI)."),
    generator_model: str | None = typer.Option(None, "--generator-model", help="'default' (embedded "
                                               "SmolLM2-135M-Instruct), a local model, or the endpoint's model name."),
    base_url: str | None = typer.Option(None, "--generator-base-url", help="The generator's OpenAI-compatible "
                                        "endpoint, e.g. http://localhost:8000/v1."),
    api_key_env: str | None = typer.Option(None, "--generator-key-env", help="Variable holding the generator's "
                                           "key [OPENAI_API_KEY]."),
    old_base_url: str | None = deprecated_option("--base-url"),
    old_api_key_env: str | None = deprecated_option("--api-key-env"),
    temperature: float | None = typer.Option(None, "--temperature", help="Generator temperature [0.8]."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Tokens per draft [96]."),
    output_format: str | None = typer.Option(None, "--format", help="text, query, pair, ab or instruction "
                                             "(default: the task's)."),
    features_per_round: int | None = typer.Option(None, "--features-per-round", help="Features per round [8]."),
    drafts_per_feature: int | None = typer.Option(None, "--drafts-per-feature", help="Drafts per feature and "
                                                  "round [2]."),
    fewshot_style: str | None = typer.Option(None, "--fewshot-style", help="Seed examples as a list in the "
                                             "prompt, or as earlier conversation turns: list, turns or auto "
                                             "(turns for pair, ab and instruction) [auto]."),
    accept_threshold: float | None = typer.Option(None, "--accept-threshold", help="δ_accept for the target [δ]."),
    dedup_distance: float | None = typer.Option(None, "--dedup-distance", help="Near-duplicate cosine distance "
                                                "[0.05]."),
    embedder: str | None = typer.Option(None, "--embedder", help="Duplicate-check embedder: minilm or hashing."),
    no_gate: list[str] | None = typer.Option(None, "--no-gate", help="Turn a quality gate off (repeatable): "
                                             "meta-text, regurgitation, membership, novelty."),
    max_copied_share: float | None = typer.Option(None, "--max-copied-share", help="Regurgitation: share of a "
                                                  "draft's words in copied 8-word runs that rejects it [0.5]."),
    novelty_distance: float | None = typer.Option(None, "--novelty-distance", help="Novelty: cosine distance to the "
                                                  "nearest seed or accepted sample a draft must reach [0.32]."),
    membership_model: Path | None = typer.Option(None, "--membership-model", help="Membership classifier file "
                                                 "(`fac catalog membership --out`; default: the task's)."),
    membership_threshold: float | None = typer.Option(None, "--membership-threshold", help="Membership probability "
                                                      "a draft needs [the model's calibrated threshold]."),
    membership_judge_model: str | None = typer.Option(None, "--membership-judge-model", help="Ask this model "
                                                      "('local' or an endpoint's name) instead of the classifier."),
    membership_judge_base_url: str | None = typer.Option(None, "--membership-judge-base-url", help="The membership "
                                                         "judge's OpenAI-compatible endpoint."),
    membership_judge_key_env: str | None = typer.Option(None, "--membership-judge-key-env", help="Variable holding "
                                                        "the membership judge's key [OPENAI_API_KEY]."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Parallel requests (endpoint) or batch "
                                           "size (local) [8]."),
    timeout_s: float | None = typer.Option(None, "--timeout", help="Seconds per generator request [120]."),
    max_retries: int | None = typer.Option(None, "--max-retries", help="Retries on 429/5xx/timeouts [4]."),
    model: str | None = typer.Option(None, "--model", help="Feature space LM: 'default' (embedded SmolLM2-135M), "
                                     "hub id, dir or .gguf."),
    sae: str | None = typer.Option(None, "--sae", help="Feature space SAE: 'default' (shipped), a directory "
                                   "or a FAC-Synthesis .pt/.pth file."),
    layer: int | None = typer.Option(None, "--layer", parser=parse_layer, metavar="N|blocks.N", help=LAYER_HELP),
    mode: str | None = typer.Option(None, "--mode", help="'sae' or 'paper'."),
    threshold: float | None = typer.Option(None, "--threshold", help="δ: activation threshold [0]."),
    device: str | None = typer.Option(None, "--device", callback=check_device, help="cuda or cpu."),
    dtype: str | None = typer.Option(None, "--dtype", help="auto, float32, bfloat16, float16."),
    otlp_endpoint: str | None = typer.Option(None, "--otlp-endpoint", envvar="FAC_OTLP_ENDPOINT",
                                             help="Also export the trace as OpenTelemetry spans to this OTLP/HTTP "
                                             "collector (Phoenix, Langfuse), e.g. http://localhost:6006/v1/traces."),
    verbose: int = typer.Option(0, "-v", count=True, help="-v for INFO logs, -vv for DEBUG."),
) -> None:
    """Synthesise samples that cover the seed's missing task features; each kept sample is verified."""
    from fac.graph.config import make_config, read_config_file
    from fac.graph.runner import attach_log_file, make_deps, open_run, preflight_endpoints, run

    setup_logging(verbose)
    base_url = alias(base_url, old_base_url, "--generator-base-url", "--base-url")
    api_key_env = alias(api_key_env, old_api_key_env, "--generator-key-env", "--api-key-env")
    if otlp_endpoint:  # fail before the models load
        from fac.traces.otel import check_endpoint

        check_endpoint(otlp_endpoint)
    flags = {
        "goal_fac": goal_fac, "min_per_feature": min_per_feature, "max_attempts_per_feature": max_attempts_per_feature,
        "max_rounds": max_rounds, "budget_tokens": budget_tokens, "concurrency": concurrency, "timeout_s": timeout_s,
        "max_retries": max_retries, "device": device, "dtype": dtype, "base_url": base_url,
        "api_key_env": api_key_env, "membership_judge_base_url": membership_judge_base_url,
        "membership_judge_key_env": membership_judge_key_env,
    }
    semantic = {
        "catalog": str(catalog) if catalog else None, "text_field": text_field, "generator": generator,
        "generator_model": generator_model, "temperature": temperature, "max_new_tokens": max_new_tokens,
        "output_format": output_format, "features_per_round": features_per_round,
        "drafts_per_feature": drafts_per_feature, "fewshot_style": fewshot_style, "accept_threshold": accept_threshold,
        "dedup_distance": dedup_distance, "embedder": embedder, "model": model, "sae": sae, "layer": layer,
        "mode": mode, "threshold": threshold, **gate_flags(no_gate or []), "max_copied_share": max_copied_share,
        "membership_model": str(membership_model) if membership_model else None,
        "membership_threshold": membership_threshold, "membership_judge_model": membership_judge_model,
    }
    if novelty_distance is not None:
        semantic["novelty_distance"] = novelty_distance
    if resume is not None:
        if seed is not None or task is not None or out is not None or config is not None:
            raise ConfigError("--resume takes the run directory only (plus limits): the seed, task and config "
                              "are in its config.json")
        if dry_run:
            raise ConfigError("--dry-run previews a new run; `fac status RUN` shows where a run stands")
        cfg, paths = open_run(resume, resume=True, overrides={**semantic, **flags})
        preflight_endpoints(cfg)
    else:
        values = read_config_file(config) if config else {}
        out = out or (Path(str(values["out"])) if values.get("out") else None)
        values.pop("out", None)
        given = {"seed": str(seed) if seed else None, "task": task, **semantic, **flags}
        values.update({k: v for k, v in given.items() if v is not None})
        if not values.get("seed") or not values.get("task") or out is None:
            raise ConfigError("a new run needs SEED, --task and --out, on the command line or in --config "
                              "(or --resume RUN_DIR)")
        cfg = make_config(values, str(config) if config else "run config")
        if dry_run:
            dry_run_report(cfg, out)
            return
        preflight_endpoints(cfg)  # a missing key, a server down or a wrong model name: before the run directory exists
        cfg, paths = open_run(out, cfg)
    handler = attach_log_file(paths)
    try:
        with console.status("loading the feature space, catalog and generator…"):
            deps = make_deps(cfg, paths)
        columns = (TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            result = run(deps, paths, on_status=_Live(bar), otlp_endpoint=otlp_endpoint)
    finally:
        handler.close()
    s = result.status
    stdout.print(f"FAC {s.fac_before:.3f} -> {s.fac_now:.3f} (goal {s.goal_fac:g}) · {s.accepted} accepted samples · "
                 f"{s.tokens_used:,} generator tokens · {s.round} rounds", highlight=False)
    if result.exhausted:
        shown = ", ".join(map(str, result.exhausted[:30])) + (" …" if len(result.exhausted) > 30 else "")
        stdout.print(f"exhausted ({len(result.exhausted)}): {shown}", highlight=False)
    if result.rejections:
        stdout.print("rejected drafts: " + ", ".join(f"{k} {v}" for k, v in sorted(result.rejections.items())),
                     highlight=False)
    if paths.samples.is_file():
        stdout.print(f"samples: {paths.samples}", highlight=False)
    else:
        stdout.print("samples: none accepted yet", highlight=False)
    if result.interrupted:
        console.print(f"[yellow]stopped:[/yellow] {result.interrupted}\ncontinue with: fac run --resume {paths.root}",
                      highlight=False)
        raise typer.Exit(EXIT_SIGNALLED if result.signalled else EXIT_INTERRUPTED)
    stdout.print(f"stop: {s.stop_reason} ({s.stop_detail})", highlight=False)


GATES = ("meta-text", "regurgitation", "membership", "novelty")


def gate_flags(off: list[str]) -> dict[str, Any]:
    """The config fields that `--no-gate NAME` sets."""
    unknown = sorted(set(off) - set(GATES))
    if unknown:
        raise ConfigError(f"--no-gate {unknown[0]}: expected one of {', '.join(GATES)}")
    fields: dict[str, Any] = {f"gate_{name.replace('-', '_')}": False for name in off if name != "novelty"}
    if "novelty" in off:
        fields["novelty_distance"] = 0.0
    return fields
