"""Resuming an interrupted fine-tuning: its state lies beside the output package and is taken up only by a
run with the same inputs and options."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .trainer import Checkpoint


def state_path(out: Path) -> Path:
    """The resumable training state, beside the output package."""
    return out.with_name(out.stem + ".finetune-state.safetensors")


def run_key(config, model_path: Path) -> str:
    """Identifies a training run: the inputs (paths, sizes, dates) and every option that changes the result."""
    parts = {k: v for k, v in vars(config).items() if k not in ("epochs", "device", "out", "patience")}
    label_files = [config.labels] if config.labels else config.osm_labels
    for name, path in [("raster", config.raster), ("model", model_path),
                       *[(f"labels{i}", p) for i, p in enumerate(label_files)],
                       *[(f"osm{i}", p) for i, p in enumerate(config.osm or [])]]:
        st = os.stat(path)
        parts[f"{name}_stat"] = [str(Path(path).resolve()), st.st_size, int(st.st_mtime)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_checkpoint(config, model_path: Path) -> Checkpoint:
    """The checkpoint of this run: resumed from when its key matches, replaced after every epoch."""
    return Checkpoint(state_path(Path(config.out)), run_key(config, model_path))
