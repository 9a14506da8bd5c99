"""The GeoLink pretraining loop: one process, or one per GPU/CPU under torchrun (DistributedDataParallel).

Objective as in the paper: masked-image reconstruction + image/graph contrastive + masked OSM-node
reconstruction, weighted 1 / 0.01 / 0.01. AdamW (0.9, 0.95), weight decay 0.05 (not on biases,
norms and tokens), linear warm-up then cosine decay, bf16 autocast on CUDA. A checkpoint holds
model, optimiser, schedule and step; batches and masks are functions of (seed, step, rank), so a
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..errors import Cancelled, opt
from ..progress import Progress, format_seconds
from .dataset import PairsDataset, step_indices

LOSS_NAMES = ("mae", "contrastive", "osm")
CSV_COLUMNS = ("step", "lr", "loss", *LOSS_NAMES, "images_per_s", "elapsed_s")


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_size: int = 32
    lr: Optional[float] = None  # None: 1.5e-4 * global batch / 256 (the MAE rule)
    min_lr: float = 0.0
    warmup: Optional[int] = None  # None: 5% of the steps
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    osm_mask_ratio: float = 0.2
    loss_weights: Tuple[float, float, float] = (1.0, 0.01, 0.01)
    checkpoint_every: int = 100
    seed: int = 0


class DistributedContext:
    """Rank, world size and device; process group set up under torchrun (gloo on CPU, nccl on CUDA)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", "0"))
                torch.cuda.set_device(local)
                self.device = torch.device("cuda", local)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def mean(self, values: list) -> list:
        """Python floats of scalar tensors, averaged over the processes (for logging)."""
        stacked = torch.stack([v.float() for v in values])
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(stacked)
            stacked /= self.world
        return stacked.cpu().tolist()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


class _LossModule(torch.nn.Module):
    """Routes DDP's forward to the model's pretraining losses so gradients are synchronised."""

    def __init__(self, model: torch.nn.Module, mask_ratio: float, osm_mask_ratio: float):
        super().__init__()
        self.model = model
        self.mask_ratio, self.osm_mask_ratio = mask_ratio, osm_mask_ratio

    def forward(self, images, graphs):
        return self.model.pretrain_losses(images, graphs, mask_ratio=self.mask_ratio,
                                          osm_mask_ratio=self.osm_mask_ratio)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("token", "pos_embed")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, settings: TrainSettings, peak: float) -> float:
    warmup = settings.warmup if settings.warmup is not None else max(1, settings.steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, settings.steps - warmup)
    return settings.min_lr + (peak - settings.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def save_checkpoint(path: Path, model, optimizer, step: int, settings: TrainSettings, extra: dict) -> None:
    from ..atomic import atomic_output

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "settings": json.dumps(asdict(settings)), "extra": json.dumps(extra)}
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    from ..errors import InputError
    from ..safe_load import load_tensors

    state = load_tensors(path, "the pretraining checkpoint", error=InputError, option="out",
                         hint="It is not one GeoLink wrote, so it was not trusted: delete it (or move it away) to "
                              f"start afresh, or choose another {opt('out')} folder.")
    if not isinstance(state, dict) or not {"model", "optimizer", "step", "settings", "extra"} <= set(state):
        raise InputError(f"The pretraining checkpoint {path} is not one GeoLink wrote (its keys differ).",
                         hint=f"Delete it (or move it away) to start afresh, or choose another {opt('out')} folder.",
                         option="out")
    state["settings"] = json.loads(state["settings"])
    state["extra"] = json.loads(state["extra"])
    return state


def pretrain(model: torch.nn.Module, dataset: PairsDataset, settings: TrainSettings, out_dir: Path,
             ctx: DistributedContext, progress: Progress, resume: bool = True) -> dict:
    """Train `model` in place; returns figures (final/first losses, steps, seconds, images/s).

    Writes out_dir/checkpoint.pt (every `checkpoint_every` steps, on cancel and at the end) and
    out_dir/losses.csv (one row per step, rank 0 only).
    """
    device = ctx.device
    model.to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, csv_path = out_dir / "checkpoint.pt", out_dir / "losses.csv"
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=0.0, betas=(0.9, 0.95))
    start = 0
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        progress.log(f"Resuming from step {start} ({ckpt_path})")
    elif ctx.main and csv_path.exists():
        csv_path.unlink()
    if start >= settings.steps:
        return {"steps": start, "resumed_from": start, **(loss_summary(csv_path) if ctx.main else {})}
    step_fn = _LossModule(model, settings.mask_ratio, settings.osm_mask_ratio)
    if ctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_fn = DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    peak = settings.lr if settings.lr is not None else 1.5e-4 * settings.batch_size * ctx.world / 256
    weights = torch.tensor(settings.loss_weights, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    model.train()
    t0 = time.monotonic()
    csv_file = open(csv_path, "a", newline="") if ctx.main else None
    writer = csv.writer(csv_file) if csv_file else None
    if writer and start == 0:
        writer.writerow(CSV_COLUMNS)
    done = start
    try:
        for step in range(start, settings.steps):
            progress.check_cancelled()
            lr = lr_at(step, settings, peak)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = step_indices(len(dataset), step, settings.batch_size, ctx.rank, ctx.world, settings.seed)
            images, graphs = dataset.batch(idx, draw=step * ctx.world + ctx.rank)
            images = images.to(device, non_blocking=True)
            torch.manual_seed(settings.seed * 1_000_003 + step * 131 + ctx.rank)
            with autocast:
                losses = torch.stack([torch.as_tensor(v, device=device).float() for v in step_fn(images, graphs)])
            loss = (losses * weights).sum()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step}: {losses.tolist()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = step + 1
            values = ctx.mean([loss.detach(), *losses.detach()])
            elapsed = time.monotonic() - t0
            rate = (done - start) * settings.batch_size * ctx.world / max(elapsed, 1e-9)
            if writer:
                writer.writerow([done, f"{lr:.3e}", *(f"{v:.5f}" for v in values), f"{rate:.2f}", f"{elapsed:.1f}"])
                csv_file.flush()
            if done % settings.checkpoint_every == 0 and done < settings.steps and ctx.main:
                save_checkpoint(ckpt_path, model, optimizer, done, settings, {})
            eta = elapsed / (done - start) * (settings.steps - done)
            progress.update(100.0 * done / settings.steps,
                            f"step {done}/{settings.steps} loss {values[0]:.4f} (mae {values[1]:.3f} "
                            f"con {values[2]:.3f} osm {values[3]:.4f}) ETA {format_seconds(eta)}")
    except (Cancelled, KeyboardInterrupt):
        if ctx.main:
            save_checkpoint(ckpt_path, model, optimizer, done, settings, {})
            progress.log(f"Stopped after step {done}; checkpoint saved: run again with the same --out to resume.")
        raise
    finally:
        if csv_file:
            csv_file.close()
    if ctx.main:
        save_checkpoint(ckpt_path, model, optimizer, done, settings, {})
    ctx.barrier()
    seconds = time.monotonic() - t0
    figures = {"steps": done, "resumed_from": start, "seconds": round(seconds, 1), "world_size": ctx.world,
               "images_per_s": round((done - start) * settings.batch_size * ctx.world / max(seconds, 1e-9), 2),
               "lr_peak": peak}
    if ctx.main:
        figures.update(loss_summary(csv_path))
    return figures


def loss_summary(csv_path: Path, window: int = 20) -> dict:
    """Mean losses over the first and the last `window` logged steps of a run (all its resumes included)."""
    if not Path(csv_path).exists():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    window = max(1, min(window, len(rows) // 5))
    seconds, previous = 0.0, 0.0
    for r in rows:  # elapsed_s restarts from 0 in each resumed segment
        t = float(r["elapsed_s"])
        seconds += t - previous if t >= previous else t
        previous = t
    out = {"logged_steps": len(rows), "train_seconds": round(seconds, 1)}
    for prefix, part in (("first", rows[:window]), ("final", rows[-window:])):
        for k in ("loss", *LOSS_NAMES):
            out[f"{prefix}_{k}"] = round(sum(float(r[k]) for r in part) / len(part), 5)
    return out
