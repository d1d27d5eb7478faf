"""`fac sae train`: train an SAE for a model + layer on a local corpus, offline, with progress."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import typer

from fac.console import console, progress, setup_logging
from fac.tools.datasets import read_samples
from fac.tools.errors import ConfigError, InputError

sae_app = typer.Typer(help="Train and inspect sparse autoencoders.", no_args_is_help=True)


def _cache_root() -> Path:
    return Path(os.environ.get("FAC_CACHE_DIR", Path.home() / ".cache" / "fac"))


@sae_app.command("train")
def train(
    corpus: Path = typer.Option(..., help="Corpus file (jsonl/csv/parquet/txt, optionally .gz) or HF dataset dir."),
    out: Path = typer.Option(..., help="Directory to write the SAE (sae-lens disk format) and quality.json."),
    model: str = typer.Option("default", help="'default' (embedded SmolLM2-135M-Instruct), hub id, dir or .gguf."),
    layer: int = typer.Option(15, help="hidden_states index: the output of decoder block LAYER."),
    text_field: str | None = typer.Option(None, help="Field holding the text (default: detected)."),
    d_sae: int = typer.Option(4096, help="Number of SAE latents."),
    k: int = typer.Option(48, help="TopK: active latents per token (the L0)."),
    epochs: float = typer.Option(4.0, help="Passes over the corpus activations."),
    lr: float = typer.Option(5e-4, help="Peak learning rate (cosine decay to a tenth)."),
    batch_tokens: int = typer.Option(4096, help="Activations per training step."),
    dead_window: int = typer.Option(50, help="Steps without firing before a latent counts as dead (aux loss)."),
    heldout_fraction: float = typer.Option(0.03, help="Share of texts held out for the quality report."),
    max_texts: int | None = typer.Option(None, help="Use only the first N texts of the corpus."),
    max_tokens: int = typer.Option(512, help="Token cap per text (longer texts are truncated and counted)."),
    fp16: bool = typer.Option(True, help="Store weights as float16 (half the size)."),
    seed: int = typer.Option(0),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)."),
    verbose: int = typer.Option(0, "-v", count=True, help="-v for INFO logs, -vv for DEBUG."),
) -> None:
    """Train a TopK SAE on the residual stream after block LAYER and report its held-out quality."""
    setup_logging(verbose)
    from fac.tools.models import load_model
    from fac.tools.residual import LayerReader
    from fac.tools.sae_training import (
        SAETrainingConfig,
        cached_activations,
        evaluate_sae,
        save_sae,
        split_heldout,
        train_sae,
        write_quality,
    )

    if not 0 < heldout_fraction < 0.5:
        raise ConfigError(f"--heldout-fraction {heldout_fraction} must lie in (0, 0.5)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new --out directory")
    samples = read_samples(corpus, text_field)[: max_texts or None]
    texts = [s for s in samples if isinstance(s, str)]
    if len(texts) != len(samples):
        raise InputError(f"{corpus}: SAE training takes plain texts; {len(samples) - len(texts)} rows are conversations")
    cfg = SAETrainingConfig(
        d_sae=d_sae, k=k, epochs=epochs, batch_tokens=batch_tokens, lr=lr, dead_feature_window=dead_window, seed=seed
    )
    started = time.time()
    loaded = load_model(model, device=device)
    reader = LayerReader(loaded.model, loaded.tokenizer, layer, max_tokens=max_tokens)
    train_texts, held_texts = split_heldout(texts, heldout_fraction, seed)
    truncated = sum(reader.tokenize(t).truncated for t in texts)
    if truncated:
        console.print(f"[yellow]{truncated} texts exceed {max_tokens} tokens and were truncated[/yellow]")
    cache_dir = _cache_root() / "activations"
    with progress() as bar:
        task = bar.add_task("activations (train)", total=len(train_texts))
        acts = cached_activations(reader, loaded.model_id, train_texts, cache_dir, lambda n: bar.advance(task, n))
        task = bar.add_task("activations (held-out)", total=len(held_texts))
        held = cached_activations(reader, loaded.model_id, held_texts, cache_dir, lambda n: bar.advance(task, n))
    collected = time.time()
    console.print(f"{acts.shape[0]:,} training and {held.shape[0]:,} held-out token activations ({acts.shape[1]}-d)")
    hook_name = f"blocks.{layer - 1}.hook_resid_post"
    with progress() as bar:
        task = bar.add_task("training steps", total=None)
        sae = train_sae(
            acts, cfg, hook_name=hook_name, model_name=loaded.model_id,
            on_step=lambda step, total: bar.update(task, completed=step, total=total),
        )
    trained = time.time()
    out.mkdir(parents=True, exist_ok=True)
    save_sae(sae, out, fp16=fp16)
    from fac.tools.saes import load_sae

    shipped, _ = load_sae(str(out))  # report the numbers of the weights as stored (fp16 included)
    quality = evaluate_sae(shipped, held, n_texts=len(held_texts))
    corpus_digest = hashlib.sha256(Path(corpus).read_bytes()).hexdigest() if Path(corpus).is_file() else None
    write_quality(
        out,
        quality,
        {
            "command": "fac " + shlex.join(sys.argv[1:]),
            "corpus": {"path": Path(corpus).as_posix(), "sha256": corpus_digest, "texts": len(texts),
                       "train_texts": len(train_texts), "heldout_texts": len(held_texts), "truncated": truncated},
            "model": loaded.model_id,
            "layer": layer,
            "hook_name": hook_name,
            "training": asdict(cfg),
            "train_tokens": int(acts.shape[0]),
            "seconds": {"activations": round(collected - started, 1), "training": round(trained - collected, 1)},
        },
    )
    console.print_json(json.dumps({"out": str(out), "quality": asdict(quality)}))
