"""Load an SAE with sae-lens: the shipped default, a directory on disk, or a registry release + id."""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fac.tools.errors import ConfigError

if TYPE_CHECKING:
    from sae_lens import SAE

DEFAULT_SAE = "default"
DEFAULT_SAE_NAME = "smollm2-135m-it-l15-topk4096"
SAE_WEIGHTS = "sae_weights.safetensors"  # sae-lens's weights file beside cfg.json
_HOOK_PATTERNS = (
    re.compile(r"blocks\.(\d+)\.hook_resid_post$"),  # TransformerLens: output of block i -> hidden_states[i+1]
    re.compile(r"(?:^|\.)layers\.(\d+)$"),  # HF module name: output of layers[i] -> hidden_states[i+1]
)


def shipped_sae_dir() -> Path:
    """The SAE fac ships for the embedded SmolLM2-135M-Instruct (trained by `fac sae train`)."""
    return Path(str(resources.files("fac") / "assets" / "sae" / DEFAULT_SAE_NAME))


def sae_hook_layer(sae: SAE[Any]) -> int | None:
    """The hidden_states index the SAE was trained on, from its hook name, when it says."""
    hook = getattr(sae.cfg.metadata, "hook_name", None) or ""
    for pattern in _HOOK_PATTERNS:
        if match := pattern.search(hook):
            return int(match.group(1)) + 1
    return None


def _weights_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(p.name for p in directory.iterdir() if p.suffix in {".safetensors", ".json"}):
        if name == "quality.json":
            continue
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def _check_sae_dir(directory: Path) -> None:
    """cfg.json parses, the weights file exists, and its encoder has the shape cfg.json gives (d_in x d_sae)."""
    from safetensors import SafetensorError, safe_open

    cfg_file, weights = directory / "cfg.json", directory / SAE_WEIGHTS
    if not cfg_file.is_file():
        raise ConfigError(f"SAE directory {directory} has no cfg.json: expected sae-lens's disk format")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{cfg_file}: not valid JSON ({_first_line(err)})") from None
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), int) for k in ("d_in", "d_sae")):
        raise ConfigError(f"{cfg_file}: expected an object with integer d_in and d_sae")
    if not weights.is_file():
        raise ConfigError(f"SAE directory {directory} has no {SAE_WEIGHTS}: expected sae-lens's disk format "
                          f"(cfg.json + {SAE_WEIGHTS})")
    try:
        with safe_open(str(weights), "pt") as tensors:
            shape = tuple(tensors.get_slice("W_enc").get_shape()) if "W_enc" in tensors.keys() else None  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"{weights}: not a readable safetensors file ({_first_line(err)})") from None
    if shape is not None and shape != (cfg["d_in"], cfg["d_sae"]):
        raise ConfigError(f"{weights}: W_enc is {shape[0]} x {shape[1]} but cfg.json says d_in={cfg['d_in']}, "
                          f"d_sae={cfg['d_sae']}: the weights and cfg.json are from different SAEs")


def load_sae(spec: str = DEFAULT_SAE, *, device: str = "cpu", dtype: str = "float32") -> tuple[SAE[Any], str]:
    """Load `spec`: "default", a directory saved by sae-lens, or "release:sae_id" from its registry.

    Returns the SAE and a stable id (weights digest or registry name) for cache keys and reports.
    """
    from sae_lens import SAE

    directory = shipped_sae_dir() if spec == DEFAULT_SAE else Path(spec)
    if directory.is_dir():
        _check_sae_dir(directory)
        try:
            sae = SAE.load_from_disk(directory, device=device, dtype=dtype)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:  # a cfg.json sae-lens cannot use
            raise ConfigError(f"SAE directory {directory}: sae-lens cannot load it ({_first_line(err)})") from None
        name = DEFAULT_SAE_NAME if spec == DEFAULT_SAE else directory.resolve().name
        return sae, f"{name}@{_weights_digest(directory)}"
    if spec == DEFAULT_SAE:
        raise ConfigError(f"the shipped SAE is missing from {directory}; reinstall fac")
    if ":" not in spec or spec.startswith((".", "/", "~")):
        raise ConfigError(f"SAE path {spec} does not exist (a registry SAE is given as RELEASE:SAE_ID)")
    release, sae_id = spec.split(":", 1)
    try:
        sae = SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    except (OSError, ValueError, KeyError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
        why = "the hub is unreachable (HF_HUB_OFFLINE is set)" if offline else str(err).split("\n")[0]
        raise ConfigError(
            f"cannot load SAE {release}:{sae_id}: {why}; download it where you have access and pass the "
            "directory (sae-lens disk format: cfg.json + sae_weights.safetensors) with --sae"
        ) from None
    return sae, f"{release}:{sae_id}"
