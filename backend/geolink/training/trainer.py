"""Training a head on cached features (or a partly unfrozen model on images): class-balanced loss,
validation on held-out polygons, early stopping on their mean IoU, a checkpoint after every epoch
and resuming from it.

The trainer sees samples only through `forward(indices) -> logits`, so the same loop serves the
cached-feature head and the model with unfrozen encoder blocks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..progress import Progress
from .losses import balanced_cross_entropy
from .metrics import confusion, scores
from .patch_mix import PatchMix, draw_mix


@dataclass
class TrainSettings:
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without a better validation mean IoU before stopping
    seed: int = 0
    patch_mix: float = 0.0  # share of batches mixed (patch_mix.py)
    patch: int = 16  # pixels of a target per cell of the feature maps: the grid that mixing follows


@dataclass
class Samples:
    """Per-pixel targets of every sample (IGNORE where unlabelled)."""

    train_labels: np.ndarray  # [N, H, W] int16, pixels of training polygons only
    val_labels: np.ndarray  # [N, H, W] int16, pixels of validation polygons only (identity samples)
    n_classes: int

    def __post_init__(self):
        flat_t = self.train_labels.reshape(len(self.train_labels), -1)
        flat_v = self.val_labels.reshape(len(self.val_labels), -1)
        self.train_index = np.flatnonzero((flat_t >= 0).any(1))
        self.val_index = np.flatnonzero((flat_v >= 0).any(1))
        self.train_pixels = np.bincount(flat_t[flat_t >= 0], minlength=self.n_classes)


@dataclass
class FitResult:
    best_state: Dict
    best_epoch: int
    history: List[dict] = field(default_factory=list)
    validation: Optional[dict] = None
    resumed_from: int = 0


class Checkpoint:
    """The training state in one safetensors file beside the output; used only when its key matches."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key

    def save(self, module, optimizer, best_state: Dict, meta: dict) -> None:
        from safetensors.torch import save_file

        from ..atomic import atomic_output

        tensors = {f"model.{k}": v.cpu().clone() for k, v in trainable_state(module).items()}
        tensors.update({f"best.{k}": v.cpu().clone() for k, v in best_state.items()})
        opt = optimizer.state_dict()
        for pid, st in opt["state"].items():
            for name, value in st.items():
                tensors[f"opt.{pid}.{name}"] = value.detach().cpu().reshape(value.shape).contiguous()
        meta = {**meta, "key": self.key, "param_groups": opt["param_groups"]}
        with atomic_output(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={"geolink_finetune_state": json.dumps(meta)})

    def load(self) -> Optional[dict]:
        """{"meta", "model", "best", "optimizer"} when the file exists and was written for the same key."""
        if not self.path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads(f.metadata()["geolink_finetune_state"])
                if meta.get("key") != self.key:
                    return None
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError):
            return None
        state: Dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        return {"meta": meta, "model": _strip(tensors, "model."), "best": _strip(tensors, "best."),
                "optimizer": {"state": state, "param_groups": meta["param_groups"]}}

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def trainable_state(module) -> Dict:
    """Copies of the parameters being trained and of all buffers (e.g. batch-norm statistics): what
    changes during training, so checkpoints and the best weights leave a frozen encoder out."""
    names = {n for n, p in module.named_parameters() if p.requires_grad} | {n for n, _ in module.named_buffers()}
    return {k: v.detach().clone() for k, v in module.state_dict().items() if k in names}


def _strip(tensors: Dict, prefix: str) -> Dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# (sorted sample indices, PatchMix or None) -> logits [B, K, h, w] (a tuple: per member)
Forward = Callable[[np.ndarray, Optional[PatchMix]], object]


def _logits(forward: Forward, idx: np.ndarray, size, mix: Optional[PatchMix] = None) -> tuple:
    """The logits of each of the head's members (one, or several trained side by side) at `size`."""
    import torch.nn.functional as F

    out = forward(idx, mix)
    return tuple(x if tuple(x.shape[-2:]) == tuple(size) else
                 F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
                 for x in (out if isinstance(out, tuple) else (out,)))


def evaluate(module, forward: Forward, n_classes: int, index: np.ndarray, labels: np.ndarray,
             batch_size: int) -> np.ndarray:
    """Confusion matrix of the model on the samples `index` against `labels`."""
    import torch

    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    module.eval()
    with torch.no_grad():
        for i in range(0, len(index), batch_size):
            idx = index[i:i + batch_size]
            target = labels[idx]
            cm += confusion(target, _logits(forward, idx, target.shape[-2:])[0].argmax(1).cpu().numpy(), n_classes)
    return cm


def fit(module, forward: Forward, samples: Samples, settings: TrainSettings, device, progress: Progress,
        checkpoint: Optional[Checkpoint] = None, class_names: Optional[List[str]] = None) -> FitResult:
    """Train the trainable parameters of `module` (reached through `forward`) on the training pixels;
    keep the weights of the best validation epoch (the last epoch when nothing is held out)."""
    import torch

    names = class_names or [str(i) for i in range(samples.n_classes)]
    torch.manual_seed(settings.seed)
    module.to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = balanced_cross_entropy(samples.train_pixels, device)
    has_val = len(samples.val_index) > 0
    start, best_score, best_epoch, history = 0, -1.0, 0, []
    best_state = trainable_state(module)
    saved = checkpoint.load() if checkpoint else None
    if saved:
        module.load_state_dict(saved["model"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        best_state = saved["best"]
        meta = saved["meta"]
        start, best_score, best_epoch, history = meta["epoch"], meta["best_score"], meta["best_epoch"], meta["history"]
        progress.log(f"Resuming fine-tuning after epoch {start} (checkpoint {checkpoint.path.name}).")
    resumed_from = start
    for epoch in range(start + 1, settings.epochs + 1):
        if has_val and epoch - best_epoch > settings.patience and best_epoch > 0:
            break
        progress.update(100.0 * (epoch - 1) / settings.epochs, f"Epoch {epoch}/{settings.epochs}")
        module.train()
        torch.manual_seed(settings.seed * 100003 + epoch)
        order = np.random.default_rng([settings.seed, epoch]).permutation(samples.train_index)
        mixing = np.random.default_rng([settings.seed, epoch, 1])
        total, count = 0.0, 0
        for i in range(0, len(order), settings.batch_size):
            progress.check_cancelled()
            idx = np.sort(order[i:i + settings.batch_size])
            target = torch.from_numpy(samples.train_labels[idx].astype(np.int64)).to(device)
            grid = (target.shape[-2] // settings.patch, target.shape[-1] // settings.patch)
            mix = draw_mix(mixing, len(idx), grid, settings.patch_mix)
            if mix is not None:
                target = mix(target)
            members = _logits(forward, idx, target.shape[-2:], mix)
            loss = sum(loss_fn(logits, target) for logits in members) / len(members)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        record = {"epoch": epoch, "loss": round(total / max(count, 1), 5)}
        if has_val:
            m = scores(evaluate(module, forward, samples.n_classes, samples.val_index, samples.val_labels,
                                settings.batch_size), names)
            record.update(val_mean_iou=m["mean_iou"], val_balanced_accuracy=m["balanced_accuracy"],
                          val_overall_accuracy=m["overall_accuracy"])
            score = m["mean_iou"] or 0.0
        else:
            score = float(epoch)  # nothing held out: the last epoch is the one kept
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = trainable_state(module)
        history.append(record)
        progress.log("epoch {epoch}: loss {loss:.4f}".format(**record) + (
            f", validation mean IoU {record['val_mean_iou']:.3f}" if has_val else ""))
        if checkpoint:
            checkpoint.save(module, optimizer, best_state, {"epoch": epoch, "best_score": best_score,
                                                             "best_epoch": best_epoch, "history": history,
                                                             "settings": asdict(settings)})
    module.load_state_dict(best_state, strict=False)
    validation = None
    if has_val:
        validation = scores(evaluate(module, forward, samples.n_classes, samples.val_index, samples.val_labels,
                                     settings.batch_size), names)
    progress.update(100, f"Best epoch {best_epoch}")
    return FitResult(best_state=best_state, best_epoch=best_epoch, history=history, validation=validation,
                     resumed_from=resumed_from)
