"""Train a TopK SAE on a model's residual stream with sae-lens's trainer, tuned for short CPU runs.

Choices for short CPU runs (sae-lens's defaults suit long GPU runs):
- activations come from fac's own early-exit reader (the exact tokens `FeatureSpace` scores: chat
  template applied, template prefix and padding dropped), held in memory and reshuffled every epoch;
- `normalize_activations="expected_average_only_in"`: one scale factor that brings the mean norm to
  sqrt(d_in), estimated on a few batches (default 1000 batches) and folded into the saved weights;
- TopK's auxiliary loss on, with a dead-feature window of 50 steps instead of 1000 (a run is only a
  few hundred steps, so the default would never call a feature dead);
- cosine decay to a tenth of the learning rate, with a short warm-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors.torch import load_file, save_file

from fac.tools.errors import ConfigError
from fac.tools.space.residual import LayerReader
from fac.tools.space.sae_init import init_from_data, resample_dead

if TYPE_CHECKING:
    from sae_lens import SAE

logger = logging.getLogger(__name__)

QUALITY_FILE = "quality.json"


@dataclass(frozen=True)
class SAETrainingConfig:
    """Hyper-parameters of one SAE training run; all are recorded beside the weights."""

    d_sae: int = 4096
    k: int = 48
    epochs: float = 4.0
    batch_tokens: int = 4096
    lr: float = 5e-4
    warmup_steps: int = 20
    dead_feature_window: int = 50
    aux_loss_coefficient: float = 1.0 / 32
    norm_estimate_batches: int = 25
    seed: int = 0
    autocast: bool = False  # bf16 autocast in the training step (about 2x on CPUs with bf16 matmul units)
    init: str = "random"  # "data": decoder rows start at training activations (tools/space/sae_init.py)
    resample_every: int = 0  # > 0: re-point latents dead for the window every N steps, in the first 70 %

    def __post_init__(self) -> None:
        """Named as `fac sae train`'s flags, which mirror these fields."""
        if self.d_sae < 1 or not 1 <= self.k <= self.d_sae:
            raise ConfigError(f"--k {self.k} and --d-sae {self.d_sae}: expected 1 <= k <= d_sae (k latents of "
                              "d_sae fire per token)")
        if self.batch_tokens < 1 or self.dead_feature_window < 1:
            raise ConfigError(f"--batch-tokens {self.batch_tokens} and --dead-window {self.dead_feature_window} "
                              "must be >= 1")
        if not (math.isfinite(self.epochs) and self.epochs > 0 and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--epochs {self.epochs} and --lr {self.lr} must be finite numbers > 0")
        if self.init not in ("random", "data") or self.resample_every < 0:
            raise ConfigError(f"--init {self.init!r} and --resample-every {self.resample_every}: expected init "
                              "'random' or 'data' and resample-every >= 0 (0 = never)")


@dataclass(frozen=True)
class SAEQuality:
    """Reconstruction and sparsity on held-out text, in the raw residual space the SAE reads."""

    explained_variance: float
    l0: float
    dead_fraction: float
    n_tokens: int
    n_texts: int


class RemoteActivations(Protocol):
    """Runs planned forward batches elsewhere (tools/space/ray_scoring.py: a Ray actor pool), in order."""

    def activations(self, reader: LayerReader, batches: Iterable[list[str]]) -> Iterator[torch.Tensor]: ...


def collect_activations(
    reader: LayerReader,
    texts: Sequence[str],
    on_batch: Callable[[int], None] | None = None,
    remote: RemoteActivations | None = None,
) -> torch.Tensor:  # (n_content_tokens, d_model)
    """Residual activations at every scored token of `texts`, in float32 on the CPU; with `remote`, each of
    the same forward batches runs there."""
    samples = [reader.tokenize(t) for t in texts]
    batches = list(reader.batches(samples))
    parts: Iterable[torch.Tensor]
    if remote is None:
        parts = (reader.content_activations([samples[i] for i in batch]).float().cpu() for batch in batches)
    else:
        parts = remote.activations(reader, ([texts[i] for i in batch] for batch in batches))
    chunks: list[torch.Tensor] = []
    for batch, part in zip(batches, parts, strict=True):
        chunks.append(part)
        if on_batch:
            on_batch(len(batch))
    return torch.cat(chunks) if chunks else torch.zeros((0, reader.d_model))


def _epochs(acts: torch.Tensor, batch: int, seed: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(acts.shape[0], generator=generator)
        for start in range(0, acts.shape[0] - batch + 1, batch):
            yield acts[order[start : start + batch]]


def train_sae(
    acts: torch.Tensor,
    cfg: SAETrainingConfig,
    *,
    hook_name: str,
    model_name: str,
    on_step: Callable[[int, int], None] | None = None,
) -> SAE[Any]:
    """Train on `acts` (n, d_in) and return the inference SAE with normalisation folded in."""
    from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(cfg.seed)
    d_in = acts.shape[1]
    if acts.shape[0] < cfg.batch_tokens:
        raise ConfigError(f"{acts.shape[0]} activations are fewer than one batch of {cfg.batch_tokens} "
                          "(--batch-tokens): use a larger corpus or a smaller batch")
    total = int(acts.shape[0] * cfg.epochs) // cfg.batch_tokens * cfg.batch_tokens
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=cfg.d_sae,
        k=cfg.k,
        aux_loss_coefficient=cfg.aux_loss_coefficient,
        normalize_activations="expected_average_only_in",
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=hook_name, model_name=model_name, context_size=None),
    )
    sae = TopKTrainingSAE(sae_cfg)
    steps = total // cfg.batch_tokens
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=cfg.batch_tokens,
        lr=cfg.lr,
        lr_end=cfg.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(cfg.warmup_steps, steps // 10),
        lr_decay_steps=steps - min(cfg.warmup_steps, steps // 10),
        device="cpu",
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=max(cfg.dead_feature_window, 2),
        n_batches_for_norm_estimate=cfg.norm_estimate_batches,
        autocast=cfg.autocast,
    )
    provider = _epochs(acts, cfg.batch_tokens, cfg.seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=provider)
    # Scale to mean norm sqrt(d_in) and start the decoder bias at the data mean: with a few hundred
    # steps, learning the mean from zero costs much of the run.
    scale = math.sqrt(d_in) / float(acts.norm(dim=1).mean())
    trainer.activation_scaler.scaling_factor = scale
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0) * scale)
    if cfg.init == "data":
        init_from_data(sae, acts, cfg.seed, scale)
    step_fn = trainer.step
    last_resample = int(steps * 0.7)

    def stepped(batch: torch.Tensor) -> Any:
        out = step_fn(batch)
        done = trainer.n_training_steps + 1
        if cfg.resample_every and done % cfg.resample_every == 0 and done <= last_resample:
            dead = trainer.dead_neurons
            n = resample_dead(sae, trainer.optimizer, dead, trainer.activation_scaler(batch), cfg.seed + done)
            trainer.n_forward_passes_since_fired[dead] = 0  # a full window to learn
            logger.info("step %d/%d: resampled %d dead latents", done, steps, n)
        elif done % 25 == 0:
            logger.info("step %d/%d: %d latents without a firing for %d steps", done, steps,
                        int(trainer.dead_neurons.sum()), cfg.dead_feature_window)
        if on_step is not None:
            on_step(done, steps)
        return out

    trainer.step = stepped
    trained = trainer.fit()
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device="cpu", dtype="float32")


@torch.no_grad()
def evaluate_sae(sae: SAE[Any], acts: torch.Tensor, n_texts: int, batch: int = 4096) -> SAEQuality:
    """Explained variance (1 - SSE/SST around the per-dimension mean), mean L0, and never-firing share."""
    mean = acts.mean(0)
    sse = sst = l0_sum = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for start in range(0, acts.shape[0], batch):
        x = acts[start : start + batch].to(sae.dtype)
        z = sae.encode(x)  # (b, d_sae)
        x_hat = sae.decode(z)
        sse += float(((x - x_hat) ** 2).sum())
        sst += float(((x - mean) ** 2).sum())
        active = z > 0
        l0_sum += float(active.sum())
        fired |= active.any(0)
    n = acts.shape[0]
    return SAEQuality(
        explained_variance=round(1 - sse / sst, 4),
        l0=round(l0_sum / n, 2),
        dead_fraction=round(1 - float(fired.float().mean()), 4),
        n_tokens=n,
        n_texts=n_texts,
    )


def save_sae(sae: SAE[Any], out_dir: Path, *, fp16: bool = True) -> None:
    """sae-lens's disk format (cfg.json + sae_weights.safetensors); fp16 weights halve the size."""
    sae.save_model(out_dir)
    if fp16:
        weights = out_dir / "sae_weights.safetensors"
        tensors = {name: t.to(torch.float16).contiguous() for name, t in load_file(weights).items()}
        save_file(tensors, weights)
        cfg_path = out_dir / "cfg.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["dtype"] = "float16"
        cfg_path.write_text(json.dumps(cfg, indent=2))


def write_quality(out_dir: Path, quality: SAEQuality, provenance: dict[str, Any]) -> None:
    """quality.json: the held-out numbers, the training config and how the run was invoked."""
    record = {"quality": asdict(quality), **provenance}
    (out_dir / QUALITY_FILE).write_text(json.dumps(record, indent=2) + "\n")


def split_heldout(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split; held-out texts never reach training."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=generator).tolist()
    n_held = max(1, math.ceil(len(texts) * fraction))
    held = set(order[:n_held])
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def activation_cache_path(cache_dir: Path, model_id: str, reader: LayerReader, texts: Sequence[str]) -> Path:
    """Activations depend on the model, layer, rendering, token cap, precision and texts; key the file by all
    (fp32, the precision of files written before it was keyed, adds nothing, so they stay valid)."""
    digest = hashlib.sha256()
    precision = () if reader.precision.name == "float32" else (f"precision={reader.precision.name}",)
    for part in (model_id, str(reader.layer), reader.renderer.mode, str(reader.max_tokens), *precision, *texts):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return cache_dir / f"acts-{digest.hexdigest()[:20]}.pt"


def cached_activations(
    reader: LayerReader,
    model_id: str,
    texts: Sequence[str],
    cache_dir: Path | None,
    on_batch: Callable[[int], None] | None = None,
    remote: RemoteActivations | None = None,
) -> torch.Tensor:
    """collect_activations, reusing a previous run's tensor for the very same inputs."""
    path = activation_cache_path(cache_dir, model_id, reader, texts) if cache_dir else None
    if path is not None and path.is_file():
        logger.info("reusing activations from %s", path)
        if on_batch:
            on_batch(len(texts))
        cached: torch.Tensor = torch.load(path)
        return cached
    acts = collect_activations(reader, texts, on_batch, remote)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(acts, tmp)
        tmp.replace(path)
    return acts


@torch.no_grad()
def refit_decoder(sae: SAE[Any], acts: torch.Tensor, *, ridge: float = 1e-3, chunk: int = 4096) -> SAE[Any]:
    """Least-squares refit of the decoder (W_dec, b_dec) for the codes the frozen encoder gives on `acts`.

    A short CPU run leaves the decoder behind the encoder; with the codes Z fixed, the best decoder
    is a ridge regression of X on [Z, 1], solved exactly from sparse sufficient statistics. The ridge
    pulls towards the current decoder, so latents that never fire keep their direction. The encoder
    is unchanged (b_enc absorbs the new b_dec, since the SAE subtracts b_dec before encoding), so
    every feature keeps its identity and fires on the same tokens as before.
    """
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        sae.fold_W_dec_norm()  # makes the encoder's top-k selection independent of decoder norms
        sae.cfg.rescale_acts_by_decoder_norm = False
    d_sae, d_in = sae.W_dec.shape
    gram = torch.zeros((d_sae + 1) * (d_sae + 1), dtype=torch.float64)  # [Z 1]^T [Z 1], flattened
    cross = torch.zeros(d_sae + 1, d_in, dtype=torch.float64)  # [Z 1]^T X
    for start in range(0, acts.shape[0], chunk):
        x = acts[start : start + chunk].to(sae.dtype)
        z = sae.encode(x).double()  # (b, d_sae), k non-zeros per row
        rows, cols = z.nonzero(as_tuple=True)
        values = z[rows, cols]
        n_rows = x.shape[0]
        rows = torch.cat([rows, torch.arange(n_rows)])
        cols = torch.cat([cols, torch.full((n_rows,), d_sae)])
        values = torch.cat([values, torch.ones(n_rows, dtype=torch.float64)])
        per_row = torch.bincount(rows, minlength=n_rows)
        order = torch.argsort(rows, stable=True)
        rows, cols, values = rows[order], cols[order], values[order]
        width = int(per_row.max())
        padded_cols = torch.full((n_rows, width), d_sae, dtype=torch.long)
        padded_vals = torch.zeros((n_rows, width), dtype=torch.float64)
        slot = torch.arange(rows.numel()) - torch.repeat_interleave(torch.cumsum(per_row, 0) - per_row, per_row)
        padded_cols[rows, slot], padded_vals[rows, slot] = cols, values
        pair_index = (padded_cols.unsqueeze(2) * (d_sae + 1) + padded_cols.unsqueeze(1)).flatten()
        pair_value = (padded_vals.unsqueeze(2) * padded_vals.unsqueeze(1)).flatten()
        gram.index_add_(0, pair_index, pair_value)
        codes = torch.sparse_coo_tensor(torch.stack([cols, rows]), values, (d_sae + 1, n_rows),
                                        check_invariants=False)  # [Z 1]^T
        cross += torch.sparse.mm(codes, x.double())
    gram_m = gram.view(d_sae + 1, d_sae + 1)
    scale = float(gram_m.diagonal()[:d_sae].mean()) * ridge
    current = torch.cat([sae.W_dec.double(), sae.b_dec.double().unsqueeze(0)])  # (d_sae + 1, d_in)
    gram_m.diagonal().add_(scale)  # in place: at 16k latents one (d_sae + 1)^2 float64 matrix is 2 GB
    del gram
    factor, info = torch.linalg.cholesky_ex(gram_m)  # symmetric positive definite thanks to the ridge
    if int(info) != 0:
        raise ConfigError(f"decoder refit: the ridge-regularised Gram matrix is not positive definite (minor "
                          f"{int(info)}); raise the ridge")
    del gram_m
    solution = torch.cholesky_solve(cross + scale * current, factor)
    new_b_dec = solution[d_sae].to(sae.dtype)
    sae.b_enc.add_((new_b_dec - sae.b_dec) @ sae.W_enc)
    sae.W_dec.copy_(solution[:d_sae].to(sae.dtype))
    sae.b_dec.copy_(new_b_dec)
    return sae
