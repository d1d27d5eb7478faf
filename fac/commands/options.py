"""CLI options shared by the commands that load a feature space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer

MODEL = typer.Option("default", "--model", help="'default' (embedded SmolLM2-135M-Instruct), hub id, dir or .gguf.")
SAE = typer.Option("default", "--sae", help="'default' (shipped SAE), an sae-lens directory, or RELEASE:SAE_ID.")
LAYER = typer.Option(None, "--layer", help="hidden_states index (default: the SAE's hook layer).")
MODE = typer.Option("sae", "--mode", help="'sae' (the SAE's own encode) or 'paper' (dense ReLU, δ = 0).")
THRESHOLD = typer.Option(0.0, "--threshold", help="δ: a sample activates a feature iff its score > δ.")
DEVICE = typer.Option(None, "--device", help="cuda or cpu (default: cuda when available).")
DTYPE = typer.Option("auto", "--dtype", help="auto (CPU: fp32 weights, bf16 autocast where the CPU has bf16 "
                     "units; GPU: bf16), float32 (exact), bfloat16, float16, bf16-autocast.")
MAX_TOKENS = typer.Option(512, "--max-tokens", help="Token cap per sample; longer ones are truncated and reported.")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the score cache.")
VERBOSE = typer.Option(0, "-v", count=True, help="-v for INFO logs, -vv for DEBUG.")


@dataclass(frozen=True)
class SpaceOptions:
    """What the user chose for the feature space, passed on to FeatureSpace.load."""

    model: str
    sae: str
    layer: int | None
    mode: str
    threshold: float
    device: str | None
    dtype: str
    max_tokens: int
    no_cache: bool

    def load(self) -> Any:
        from fac.tools.errors import ConfigError
        from fac.tools.space.features import FeatureSpace

        if self.mode not in ("sae", "paper"):
            raise ConfigError(f"--mode {self.mode!r}: expected 'sae' or 'paper'")
        return FeatureSpace.load(
            self.model, self.sae, layer=self.layer, mode=self.mode, threshold=self.threshold,
            device=self.device, dtype=self.dtype, max_tokens=self.max_tokens, use_cache=not self.no_cache,
        )


def shared_default_model(space: Any, model: str) -> Any:
    """The space's loaded LM as a LoadedModel when it is the embedded default (--model default), else None,
    so a local judge reuses it instead of loading a second copy."""
    if model != "default":
        return None
    from fac.tools.space.models import LoadedModel

    return LoadedModel(space.reader.model, space.reader.tokenizer, space.model_id)
