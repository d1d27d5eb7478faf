"""Load an SAE with sae-lens: the shipped default, a directory on disk, or a registry release + id."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fac.tools.errors import ConfigError
from fac.tools.hub import hub_offline
from fac.tools.space.floors import FLOORS_FILE

if TYPE_CHECKING:
    from sae_lens import SAE

DEFAULT_SAE = "default"
DEFAULT_SAE_NAME = "smollm2-135m-it-l15-topk16k"
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
    """Content hash of the weights and config (not quality.json), recorded once per file version."""
    from fac.tools.space.identity import directory_files, files_digest

    files = directory_files(directory, frozenset({".safetensors", ".json"}),
                            skip=frozenset({"quality.json", FLOORS_FILE}))  # floors never change a raw score
    return files_digest(files)[:16]


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


PAPER_SAE_SUFFIXES = (".pt", ".pth")
_PAPER_LAYER = re.compile(r"_l(\d+)(?:_|$)")  # TopK7_l16_h4096_epoch3.pth: mounted on decoder layer 16 of 1..N


def _paper_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The authors' file (`{"weight": state_dict, "config": {"d_inp", "d_hide"[, "topK"]}}`), checked."""
    import pickle

    import torch

    try:
        states = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise ConfigError(f"{path}: not a readable torch checkpoint ({_first_line(err)})") from None
    config = states.get("config") if isinstance(states, dict) else None
    weight = states.get("weight") if isinstance(states, dict) else None
    if not isinstance(config, dict) or not isinstance(weight, dict):
        raise ConfigError(f"{path}: expected the FAC-Synthesis SAE layout {{'weight': state_dict, 'config': "
                          "{'d_inp', 'd_hide'}}")
    d_inp, d_hide, top_k = config.get("d_inp"), config.get("d_hide"), config.get("topK")
    if not isinstance(d_inp, int) or not isinstance(d_hide, int) or not (top_k is None or isinstance(top_k, int)):
        raise ConfigError(f"{path}: config needs integer d_inp and d_hide (and topK, if any); found {config}")
    expected = {"W_enc": (d_inp, d_hide), "b_enc": (d_hide,), "b_dec": (d_inp,)}
    for key, shape in expected.items():
        found = tuple(weight[key].shape) if isinstance(weight.get(key), torch.Tensor) else None
        if found != shape:
            raise ConfigError(f"{path}: weight[{key!r}] is {found or 'missing'}, expected {shape} from config "
                              f"d_inp={d_inp}, d_hide={d_hide}")
    return config, weight


def paper_sae_loader(path: str | Path, device: str = "cpu",
                     cfg_overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """sae-lens disk converter (`SAE.load_from_disk(converter=...)`) for the FAC-Synthesis TopK SAE .pt files.

    Their encoder is relu(topk((x - b_dec) @ W_enc + b_enc)) with tied weights (W_dec = W_enc.T): sae-lens's
    `topk` architecture with `apply_b_dec_to_input`; a file without topK is their plain ReLU SAE (`standard`).
    The layer comes from the file name as their loader reads it (`_l16_` = decoder layer 16, hidden_states[16]).
    """
    from sae_lens import __version__ as sae_lens_version

    path = Path(path)
    config, weight = _paper_checkpoint(path)
    dtype = (cfg_overrides or {}).get("dtype") or "float32"
    layer = _PAPER_LAYER.search(path.stem)
    cfg: dict[str, Any] = {
        "d_in": config["d_inp"], "d_sae": config["d_hide"], "dtype": dtype, "device": device,
        "apply_b_dec_to_input": True, "normalize_activations": "none",
        "architecture": "standard" if config.get("topK") is None else "topk",
        "metadata": {"hook_name": f"blocks.{int(layer.group(1)) - 1}.hook_resid_post"
                     if layer and int(layer.group(1)) > 0 else None, "model_name": None,
                     "sae_lens_version": sae_lens_version},  # marks the dict as 6.x: no pre-6.0 renaming
    }
    if config.get("topK") is not None:
        cfg["k"] = config["topK"]
    w_enc = weight["W_enc"].to(device).float()
    state = {"W_enc": w_enc, "W_dec": w_enc.T.contiguous(), "b_enc": weight["b_enc"].to(device).float(),
             "b_dec": weight["b_dec"].to(device).float()}
    return cfg, state


def _load_paper_sae(path: Path, device: str, dtype: str) -> tuple[SAE[Any], str]:
    from sae_lens import SAE

    try:
        sae = SAE.load_from_disk(path, device=device, dtype=dtype, converter=paper_sae_loader)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: sae-lens cannot load it ({_first_line(err)})") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return sae, f"{path.stem}@{digest}"


def sae_directory(spec: str) -> Path | None:
    """The directory an SAE spec loads from ("default", a directory), or None (a file, a registry id)."""
    directory = shipped_sae_dir() if spec == DEFAULT_SAE else Path(spec)
    return directory if directory.is_dir() else None


def load_sae(spec: str = DEFAULT_SAE, *, device: str = "cpu", dtype: str = "float32") -> tuple[SAE[Any], str]:
    """Load `spec`: "default", a directory saved by sae-lens, a FAC-Synthesis .pt/.pth file, or
    "release:sae_id" from sae-lens's registry.

    Returns the SAE and a stable id (weights digest or registry name) for cache keys and reports.
    """
    from sae_lens import SAE

    if spec.endswith(PAPER_SAE_SUFFIXES):
        if not Path(spec).is_file():
            raise ConfigError(f"SAE file {spec} does not exist")
        return _load_paper_sae(Path(spec), device, dtype)
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
        why = "the hub is unreachable (HF_HUB_OFFLINE is set)" if hub_offline() else str(err).split("\n")[0]
        raise ConfigError(
            f"cannot load SAE {release}:{sae_id}: {why}; download it where you have access and pass the "
            "directory (sae-lens disk format: cfg.json + sae_weights.safetensors) with --sae"
        ) from None
    return sae, f"{release}:{sae_id}"
