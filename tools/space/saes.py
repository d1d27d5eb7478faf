"""Load an SAE with sae-lens: the shipped default, a directory on disk, or a registry release + id."""

from __future__ import annotations

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
    """Content hash of the weights and config (not quality.json), recorded once per file version."""
    from fac.tools.space.identity import directory_files, files_digest

    files = directory_files(directory, frozenset({".safetensors", ".json"}), skip=frozenset({"quality.json"}))
    return files_digest(files)[:16]


def load_sae(spec: str = DEFAULT_SAE, *, device: str = "cpu", dtype: str = "float32") -> tuple[SAE[Any], str]:
    """Load `spec`: "default", a directory saved by sae-lens, or "release:sae_id" from its registry.

    Returns the SAE and a stable id (weights digest or registry name) for cache keys and reports.
    """
    from sae_lens import SAE

    directory = shipped_sae_dir() if spec == DEFAULT_SAE else Path(spec)
    if directory.is_dir():
        if not (directory / "cfg.json").is_file():
            raise ConfigError(f"SAE directory {directory} has no cfg.json: expected sae-lens's disk format")
        sae = SAE.load_from_disk(directory, device=device, dtype=dtype)
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
