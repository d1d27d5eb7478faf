"""CLI options shared by the commands that load a feature space."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import typer


def check_threshold(value: float) -> float:
    """δ must be a finite number >= 0 (NaN would pass every comparison and print NaN into --json)."""
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


def check_device(value: str | None) -> str | None:
    """The device must exist on this machine: checked while the flags are parsed, before any model loads."""
    if value is None:
        return None
    from fac.tools.errors import ConfigError
    from fac.tools.space.models import pick_device

    try:
        return pick_device(value)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None

MODEL = typer.Option("default", "--model", help="'default' (embedded SmolLM2-135M-Instruct), hub id, dir or .gguf.")
SAE = typer.Option("default", "--sae", help="'default' (shipped SAE), an sae-lens directory, a FAC-Synthesis "
                   ".pt/.pth file, or RELEASE:SAE_ID.")
def parse_layer(value: str | int) -> int:
    """--layer in either numbering: N is hidden_states[N] (HF), `blocks.N` (the SAE's hook, TransformerLens) is
    the output of block N, i.e. hidden_states[N + 1]."""
    text = str(value).strip()
    block = text.removeprefix("blocks.").removesuffix(".hook_resid_post")
    try:
        number = int(block)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected a hidden_states index (15) or a block (blocks.14)") from None
    if number < 0:
        raise typer.BadParameter(f"{value!r}: expected a number >= 0")
    return number + 1 if text.startswith("blocks.") else number


LAYER_HELP = ("hidden_states index N (HF numbering: 0 = embeddings), or blocks.N for the SAE's block numbering "
              "(blocks.14 = hidden_states 15); default: the SAE's hook layer.")
LAYER = typer.Option(None, "--layer", parser=parse_layer, metavar="N|blocks.N", help=LAYER_HELP)
MODE = typer.Option("sae", "--mode", help="'sae' (the SAE's own encode) or 'paper' (dense ReLU, δ = 0).")
THRESHOLD = typer.Option(0.0, "--threshold", callback=check_threshold,
                         help="δ: a sample activates a feature iff its score > δ.")
DEVICE = typer.Option(None, "--device", callback=check_device, help="cuda or cpu (default: cuda when available).")
DTYPE = typer.Option("auto", "--dtype", help="auto (bf16 weights on a GPU and on a CPU with bf16 units, else "
                     "fp32), float32 (exact), bfloat16, float16, bf16-autocast (fp32 weights, bf16 matmuls).")
MAX_TOKENS = typer.Option(512, "--max-tokens", min=1,
                          help="Token cap per sample; longer ones are truncated and reported.")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the score cache.")
VERBOSE = typer.Option(0, "-v", count=True, help="-v for INFO logs, -vv for DEBUG.")

# --ray takes an optional value: `fac.cli.main` inserts RAY_LOCAL after a bare --ray (click cannot do it in typer).
RAY_LOCAL = "local"
RAY = typer.Option(None, "--ray", metavar="[ADDRESS]", help="Score on a Ray actor pool (pip install 'fac[ray]'): "
                   "bare --ray starts a local Ray (or joins $RAY_ADDRESS); 'auto' or ray://HOST:10001 joins a cluster.")
RAY_ACTORS = typer.Option(2, "--ray-actors", min=1, help="With --ray: actors, each loading the model once.")
RAY_GPUS = typer.Option(0.0, "--ray-gpus-per-actor", min=0.0, help="With --ray: GPUs each actor holds (0: CPU).")
RAY_CPUS = typer.Option(1.0, "--ray-cpus-per-actor", min=0.01, help="With --ray: CPUs each actor holds (its "
                        "torch threads).")


def bare_flag_value(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with `value` after each `flag` that has none (last, or followed by another option)."""
    out: list[str] = []
    for at, arg in enumerate(argv):
        out.append(arg)
        if arg == flag and (at + 1 == len(argv) or argv[at + 1].startswith("-")):
            out.append(value)
    return out


def ray_options(address: str | None, actors: int, gpus_per_actor: float, cpus_per_actor: float) -> Any:
    """The RayOptions --ray and its companions ask for (None without --ray); checks that Ray is installed."""
    if address is None:
        return None
    from fac.tools.space.ray_pool import RayOptions, require_ray

    options = RayOptions(None if address == RAY_LOCAL else address, actors, gpus_per_actor, cpus_per_actor)
    require_ray()
    return options

# One spelling per endpoint role, in every command: --ROLE-model, --ROLE-base-url, --ROLE-key-env. The old
# spellings stay as hidden deprecated aliases (catalog build --base-url/--key-env, coverage --judge-url, run
# --base-url/--api-key-env), resolved by `alias`.
KEY_ENV_DEFAULT = "OPENAI_API_KEY"

JUDGE_MODEL = typer.Option(None, "--judge-model", help="The judge: 'local' (the embedded model, weak, slow) or the "
                           "model name served at --judge-base-url (OpenAI-compatible).")
JUDGE_BASE_URL = typer.Option(None, "--judge-base-url", help="OpenAI-compatible base URL of the judge, e.g. "
                              "http://localhost:8000/v1 (default: OpenAI).")
JUDGE_KEY_ENV = typer.Option(KEY_ENV_DEFAULT, "--judge-key-env", help="Variable holding the judge's API key "
                             "(local servers need none).")


def deprecated_option(flag: str) -> Any:
    """An old spelling, hidden from --help; `alias` maps it to the new flag."""
    return typer.Option(None, flag, hidden=True)


def alias(new: str | None, old: str | None, new_flag: str, old_flag: str, default: str | None = None) -> str | None:
    """The value of `new_flag`, or of its deprecated spelling `old_flag` (with a warning); both is an error."""
    import logging

    from fac.tools.errors import ConfigError

    if old is None:
        return new
    if new is not None and new != default:
        raise ConfigError(f"{new_flag} {new!r} and its old spelling {old_flag} {old!r}: give {new_flag} only")
    logging.getLogger(__name__).warning("%s is deprecated; use %s", old_flag, new_flag)
    return old


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
        mode: Literal["sae", "paper"] = "sae" if self.mode == "sae" else "paper"
        return FeatureSpace.load(
            self.model, self.sae, layer=self.layer, mode=mode, threshold=self.threshold,
            device=self.device, dtype=self.dtype, max_tokens=self.max_tokens, use_cache=not self.no_cache,
        )

    def load_on(self, ray: Any) -> Any:
        """The space (loaded here: tokenizer, cache, identity); with `ray` (RayOptions), scoring its chunks on a
        Ray actor pool in which each actor loads the same space."""
        space = self.load()
        if ray is None:
            return space
        from fac.api import SpaceSpec
        from fac.tools.space.ray_scoring import with_ray

        spec = SpaceSpec(self.model, self.sae, self.layer, self.mode, self.threshold, self.device, self.dtype,
                         self.max_tokens)
        return with_ray(space, spec, ray)


def shared_default_model(space: Any, model: str) -> Any:
    """The space's loaded LM as a LoadedModel when it is the embedded default (--model default), else None,
    so a local judge reuses it instead of loading a second copy."""
    if model != "default":
        return None
    from fac.tools.space.models import LoadedModel

    return LoadedModel(space.reader.model, space.reader.tokenizer, space.model_id)
