"""`fac features`: the top SAE features of each text, with scores and evidence spans."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fac.commands import options as opt
from fac.console import console, setup_logging, stdout
from fac.tools.errors import InputError
from fac.tools.text.datasets import read_samples


def features(
    text: list[str] | None = typer.Argument(None, help="Texts to score (or use --file)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Dataset file: jsonl/csv/parquet/txt or HF dir."),
    text_field: str | None = typer.Option(None, help="Field holding the text in --file (default: detected)."),
    top: int = typer.Option(10, "--top", "-n", min=0, help="Features to show per text."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per text on stdout."),
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
    """Show each text's strongest SAE features, their scores and the span that fired them."""
    setup_logging(verbose)
    if bool(text) == bool(file):
        raise InputError("give texts as arguments or one --file, not both or neither")
    samples = read_samples(file, text_field) if file else list(text or [])
    for number, sample in enumerate(samples, 1):
        if isinstance(sample, str) and not sample.strip():
            raise InputError(f"text {number}: empty text; expected something to score")
    space = opt.SpaceOptions(model, sae, layer, mode, threshold, device, dtype, max_tokens, no_cache).load()
    scored = space.score(samples)
    truncated = [i + 1 for i, s in enumerate(scored) if s.truncated]
    if truncated:
        console.print(f"[yellow]truncated to {max_tokens} tokens: text(s) {', '.join(map(str, truncated[:20]))}"
                      f"{' …' if len(truncated) > 20 else ''}[/yellow]")
    described = space.describe()
    for number, scores in enumerate(scored, 1):
        hits = [h for h in scores.top(top) if h.score > threshold]
        if as_json:
            record = {
                "index": number, "text": scores.text, "n_tokens": scores.n_tokens, "truncated": scores.truncated,
                "n_active": int((scores.scores > threshold).sum()), **described,
                "features": [{"id": h.feature, "score": round(h.score, 4), "span": h.span,
                              "span_chars": [h.span_start, h.span_end]} for h in hits],
            }
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            continue
        table = Table(title=f"text {number}: {scores.n_tokens} tokens, {int((scores.scores > threshold).sum())} active"
                      f"{' (truncated)' if scores.truncated else ''}", title_justify="left")
        table.add_column("feature", justify="right")
        table.add_column("score", justify="right")
        table.add_column("evidence span")
        for hit in hits:
            table.add_row(str(hit.feature), f"{hit.score:.3f}", Text(hit.span.replace("\n", " ⏎ ")))
        stdout.print(table)
    if not as_json:
        console.print(f"model {described['model']} · layer {described['layer']} · SAE {described['sae']} · "
                      f"mode {described['mode']} · δ={described['threshold']}", highlight=False)
