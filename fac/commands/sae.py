"""`fac sae train`: train an SAE for a model + layer on a local corpus, offline, with progress."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import typer

from fac.commands import options as opt
from fac.console import console, progress, setup_logging
from fac.tools.cache_dir import default_cache_dir
from fac.tools.errors import ConfigError, InputError
from fac.tools.text.datasets import read_samples

sae_app = typer.Typer(help="Train and inspect sparse autoencoders.", no_args_is_help=True)

TEXT_FIELD = typer.Option(None, help="Field holding the text (default: detected).")
HELDOUT_FRACTION = typer.Option(0.03, help="Share of texts held out for the quality report.")
MAX_TEXTS = typer.Option(None, help="Use only the first N texts of the corpus.")
MAX_TOKENS = typer.Option(512, min=1, help="Token cap per text (longer texts are truncated and counted).")
FP16 = typer.Option(True, help="Store weights as float16 (half the size).")
SEED = typer.Option(0)


# The shipped SAE was trained and refitted on fp32 activations: float32 keeps its recorded commands reproducing it.
ACTIVATION_DTYPE = typer.Option("float32", "--dtype", help="Precision of the model while collecting activations: "
                                "float32 (as the shipped SAE) or auto/bfloat16 (faster; see bench/RESULTS.md).")


@dataclass(frozen=True)
class _Activations:
    """A corpus split into train / held-out texts and their cached residual activations."""

    train: torch.Tensor
    held: torch.Tensor
    n_texts: int
    n_train: int
    n_held: int
    truncated: int
    model_id: str


def _corpus_activations(corpus: Path, text_field: str | None, model: str, layer: int, max_texts: int | None,
                        max_tokens: int, heldout_fraction: float, seed: int, device: str | None,
                        min_train_tokens: int = 0, dtype: str = "float32", ray: Any = None) -> _Activations:
    """The corpus's residual activations; fewer than `min_train_tokens` training tokens is refused before the
    (slow) collection starts. With `ray` (RayOptions) the forward batches run on a Ray actor pool."""
    from fac.tools.space.ray_scoring import RayActivations, ReaderSpec
    from fac.tools.space.sae_training import cached_activations, split_heldout

    if not 0 < heldout_fraction < 0.5:
        raise ConfigError(f"--heldout-fraction {heldout_fraction} must lie in (0, 0.5)")
    samples = read_samples(corpus, text_field)[: max_texts or None]
    texts = [s for s in samples if isinstance(s, str)]
    if len(texts) != len(samples):
        raise InputError(f"{corpus}: SAE training takes plain texts; {len(samples) - len(texts)} rows are chats")
    reader_spec = ReaderSpec(model, layer, max_tokens, device, dtype)
    reader, model_id = reader_spec.load()
    remote = RayActivations(reader_spec, ray) if ray is not None else None
    train_texts, held_texts = split_heldout(texts, heldout_fraction, seed)
    tokenized = {t: reader.tokenize(t) for t in texts}
    truncated = sum(tokenized[t].truncated for t in texts)
    n_train_tokens = sum(len(tokenized[t].content_positions) for t in train_texts)
    if n_train_tokens < min_train_tokens:
        raise InputError(f"{corpus}: {len(train_texts)} training texts hold {n_train_tokens} tokens, fewer than one "
                         f"batch (--batch-tokens {min_train_tokens}); use a larger corpus or a smaller batch")
    if truncated:
        console.print(f"[yellow]{truncated} texts exceed {max_tokens} tokens and were truncated[/yellow]")
    cache_dir = default_cache_dir() / "activations"
    with progress() as bar:
        task = bar.add_task("activations (train)", total=len(train_texts))
        acts = cached_activations(reader, model_id, train_texts, cache_dir, lambda n: bar.advance(task, n), remote)
        task = bar.add_task("activations (held-out)", total=len(held_texts))
        held = cached_activations(reader, model_id, held_texts, cache_dir, lambda n: bar.advance(task, n), remote)
    console.print(f"{acts.shape[0]:,} training and {held.shape[0]:,} held-out token activations ({acts.shape[1]}-d)")
    return _Activations(acts, held, len(texts), len(train_texts), len(held_texts), truncated, model_id)


def _corpus_record(corpus: Path, data: _Activations) -> dict[str, object]:
    digest = hashlib.sha256(corpus.read_bytes()).hexdigest() if corpus.is_file() else None
    return {"path": corpus.as_posix(), "sha256": digest, "texts": data.n_texts, "train_texts": data.n_train,
            "heldout_texts": data.n_held, "truncated": data.truncated}


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new --out directory")


@sae_app.command("train")
def train(
    corpus: Path = typer.Option(..., help="Corpus file (jsonl/csv/parquet/txt, optionally .gz) or HF dataset dir."),
    out: Path = typer.Option(..., help="Directory to write the SAE (sae-lens disk format) and quality.json."),
    model: str = typer.Option("default", help="'default' (embedded SmolLM2-135M-Instruct), hub id, dir or .gguf."),
    layer: int = typer.Option(15, "--layer", parser=opt.parse_layer, metavar="N|blocks.N", help="hidden_states index "
                              "N, the output of block N-1 (or blocks.N-1, the SAE's numbering: blocks.14 = 15)."),
    text_field: str | None = TEXT_FIELD,
    d_sae: int = typer.Option(4096, help="Number of SAE latents."),
    k: int = typer.Option(48, help="TopK: active latents per token (the L0)."),
    epochs: float = typer.Option(4.0, help="Passes over the corpus activations."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (cosine decay to a tenth)."),
    batch_tokens: int = typer.Option(4096, help="Activations per training step."),
    dead_window: int = typer.Option(50, help="Steps without firing before a latent counts as dead (aux loss)."),
    autocast: bool = typer.Option(False, "--autocast/--no-autocast", help="bf16 autocast in each training step "
                                  "(about 2x faster on CPUs with bf16 units; weights and optimiser stay float32)."),
    init: str = typer.Option("random", "--init", help="Decoder start: random directions, or 'data' (rows = random "
                             "centred training activations; keeps far more latents alive in a short run)."),
    resample_every: int = typer.Option(0, min=0, help="Every N steps (first 70 %% of the run) re-point latents "
                                       "dead for --dead-window steps at badly reconstructed inputs (0 = never)."),
    refit: bool = typer.Option(True, "--refit-decoder/--no-refit-decoder",
                               help="Least-squares refit of the decoder after training (encoder unchanged)."),
    heldout_fraction: float = HELDOUT_FRACTION,
    max_texts: int | None = MAX_TEXTS,
    max_tokens: int = MAX_TOKENS,
    fp16: bool = FP16,
    seed: int = SEED,
    device: str | None = opt.DEVICE,
    dtype: str = ACTIVATION_DTYPE,
    ray: str | None = opt.RAY,
    ray_actors: int = opt.RAY_ACTORS,
    ray_gpus_per_actor: float = opt.RAY_GPUS,
    ray_cpus_per_actor: float = opt.RAY_CPUS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Train a TopK SAE on the residual stream after block LAYER and report its held-out quality."""
    setup_logging(verbose)
    from fac.tools.space.sae_training import SAETrainingConfig, refit_decoder, train_sae

    _check_out(out)
    cfg = SAETrainingConfig(
        d_sae=d_sae, k=k, epochs=epochs, batch_tokens=batch_tokens, lr=lr, dead_feature_window=dead_window, seed=seed,
        autocast=autocast, init=init, resample_every=resample_every,
    )
    started = time.time()
    ray_options = opt.ray_options(ray, ray_actors, ray_gpus_per_actor, ray_cpus_per_actor)
    data = _corpus_activations(corpus, text_field, model, layer, max_texts, max_tokens, heldout_fraction, seed, device,
                               min_train_tokens=cfg.batch_tokens, dtype=dtype, ray=ray_options)
    collected = time.time()
    hook_name = f"blocks.{layer - 1}.hook_resid_post"
    with progress() as bar:
        task = bar.add_task("training steps", total=None)
        sae = train_sae(
            data.train, cfg, hook_name=hook_name, model_name=data.model_id,
            on_step=lambda step, total: bar.update(task, completed=step, total=total),
        )
    if refit:
        sae = refit_decoder(sae, data.train)
    trained = time.time()
    _save(sae, out, fp16)
    _report(out, data, {
        "command": "fac " + shlex.join(sys.argv[1:]),
        "corpus": _corpus_record(corpus, data),
        "model": data.model_id,
        "layer": layer,
        "hook_name": hook_name,
        "training": {**asdict(cfg), "refit_decoder": refit},
        "train_tokens": int(data.train.shape[0]),
        "seconds": {"activations": round(collected - started, 1), "training": round(trained - collected, 1)},
    })


@sae_app.command("refit")
def refit_command(
    sae: Path = typer.Option(..., "--sae", help="A trained SAE directory (sae-lens disk format)."),
    corpus: Path = typer.Option(..., help="The corpus to refit the decoder on (the training corpus)."),
    out: Path = typer.Option(..., help="Directory to write the refitted SAE and its quality.json."),
    model: str = typer.Option("default", help="The model the SAE reads."),
    text_field: str | None = TEXT_FIELD,
    ridge: float = typer.Option(1e-3, help="Ridge strength towards the current decoder (relative)."),
    heldout_fraction: float = HELDOUT_FRACTION,
    max_texts: int | None = MAX_TEXTS,
    max_tokens: int = MAX_TOKENS,
    fp16: bool = FP16,
    seed: int = SEED,
    device: str | None = opt.DEVICE,
    dtype: str = ACTIVATION_DTYPE,
    ray: str | None = opt.RAY,
    ray_actors: int = opt.RAY_ACTORS,
    ray_gpus_per_actor: float = opt.RAY_GPUS,
    ray_cpus_per_actor: float = opt.RAY_CPUS,
    verbose: int = opt.VERBOSE,
) -> None:
    """Refit an SAE's decoder by least squares on a corpus; the encoder, and so every feature, is unchanged."""
    setup_logging(verbose)
    from fac.tools.space.sae_training import QUALITY_FILE, evaluate_sae, refit_decoder
    from fac.tools.space.saes import load_sae, sae_hook_layer

    _check_out(out)
    loaded, _ = load_sae(str(sae))
    layer = sae_hook_layer(loaded)
    if layer is None:
        raise ConfigError(f"{sae}: the SAE does not name its hook layer; cannot refit it")
    started = time.time()
    ray_options = opt.ray_options(ray, ray_actors, ray_gpus_per_actor, ray_cpus_per_actor)
    data = _corpus_activations(corpus, text_field, model, layer, max_texts, max_tokens, heldout_fraction, seed, device,
                               dtype=dtype, ray=ray_options)
    before = evaluate_sae(loaded, data.held, n_texts=data.n_held)
    refit_decoder(loaded, data.train, ridge=ridge)
    _save(loaded, out, fp16)
    source = sae / QUALITY_FILE
    provenance = json.loads(source.read_text()) if source.is_file() else {}
    provenance.pop("quality", None)
    _report(out, data, {
        **provenance,
        "refit": {"command": "fac " + shlex.join(sys.argv[1:]), "ridge": ridge, "corpus": _corpus_record(corpus, data),
                  "quality_before": asdict(before), "seconds": round(time.time() - started, 1)},
    })


@sae_app.command("calibrate")
def calibrate_command(
    sae: Path = typer.Option(..., "--sae", help="An SAE directory (sae-lens disk format); floors are written into it."),
    corpus: Path = typer.Option(..., help="Calibration corpus (the training corpus; its held-out split is not used)."),
    relative: float = typer.Option(0.5, "--relative", help="ρ: a text activates latent j only when its score exceeds "
                                   "ρ times j's typical strength (0 keeps every firing)."),
    model: str = typer.Option("default", help="The model the SAE reads."),
    text_field: str | None = TEXT_FIELD,
    heldout_fraction: float = HELDOUT_FRACTION,
    max_texts: int = typer.Option(4000, min=1, help="Calibrate on at most N training texts (seeded sample)."),
    max_tokens: int = MAX_TOKENS,
    seed: int = SEED,
    device: str | None = opt.DEVICE,
    dtype: str = opt.DTYPE,
    verbose: int = opt.VERBOSE,
) -> None:
    """Calibrate per-latent activation floors: each latent's median per-text score over the texts it fires in."""
    setup_logging(verbose)
    import random

    import numpy as np

    from fac.tools.space.features import FeatureSpace
    from fac.tools.space.floors import FeatureFloors, save_floors, typical_strengths
    from fac.tools.space.sae_training import QUALITY_FILE, split_heldout

    if not sae.is_dir():
        raise ConfigError(f"--sae {sae}: expected an SAE directory (the floors are written beside its weights)")
    if not 0 <= relative < 1:
        raise ConfigError(f"--relative {relative}: expected a number in [0, 1)")
    samples = read_samples(corpus, text_field)
    texts = [s for s in samples if isinstance(s, str)]
    if len(texts) != len(samples):
        raise InputError(f"{corpus}: calibration takes plain texts; {len(samples) - len(texts)} rows are chats")
    train_texts, held_texts = split_heldout(texts, heldout_fraction, seed)
    chosen = random.Random(seed).sample(train_texts, min(max_texts, len(train_texts)))
    space = FeatureSpace.load(model, str(sae), device=device, dtype=dtype, max_tokens=max_tokens, use_floors=False)
    started = time.time()
    with progress() as bar:
        task = bar.add_task("scoring calibration texts", total=len(chosen))
        scored = space.score(chosen, on_batch=lambda n: bar.advance(task, n))
        task = bar.add_task("scoring held-out texts", total=len(held_texts))
        held = space.score(held_texts, on_batch=lambda n: bar.advance(task, n))
    strengths, fired = typical_strengths(scored, space.d_sae)
    digest = hashlib.sha256(corpus.read_bytes()).hexdigest() if corpus.is_file() else None
    meta = {"command": "fac " + shlex.join(sys.argv[1:]), "corpus": {"path": corpus.as_posix(), "sha256": digest},
            "texts": len(chosen), "precision": space.precision, "never_fired": int((fired == 0).sum())}
    floors = FeatureFloors(strengths, relative, meta)
    values = floors.values

    def sparsity(rows: list[Any], floor: np.ndarray | None) -> float:
        shares = [len((r if floor is None else r.above(floor)).feature_ids) / space.d_sae for r in rows]
        return float(np.median(shares)) if shares else 0.0

    summary = {"identity": floors.identity, "relative": relative, **meta, "seconds": round(time.time() - started, 1),
               "heldout_texts": len(held), "median_text_sparsity_raw": round(sparsity(held, None), 5),
               "median_text_sparsity_floored": round(sparsity(held, values), 5)}
    save_floors(sae, floors, fired)
    quality = sae / QUALITY_FILE
    if quality.is_file():
        record = json.loads(quality.read_text())
        record["floors"] = summary
        quality.write_text(json.dumps(record, indent=2) + "\n")
    console.print_json(json.dumps(summary))


def _save(sae: Any, out: Path, fp16: bool) -> None:
    """Write the SAE into `out` (created if missing) in sae-lens disk format."""
    from fac.tools.space.sae_training import save_sae

    out.mkdir(parents=True, exist_ok=True)
    save_sae(sae, out, fp16=fp16)


def _report(out: Path, data: _Activations, provenance: dict[str, object]) -> None:
    """Evaluate the weights as stored (fp16 included) on held-out text and write quality.json."""
    from fac.tools.space.sae_training import evaluate_sae, write_quality
    from fac.tools.space.saes import load_sae

    shipped, _ = load_sae(str(out))
    quality = evaluate_sae(shipped, data.held, n_texts=data.n_held)
    write_quality(out, quality, provenance)
    console.print_json(json.dumps({"out": str(out), "quality": asdict(quality)}))
