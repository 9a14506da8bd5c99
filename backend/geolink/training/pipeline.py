"""The fine-tuning job, step by step: the base model, the training data read once, the training (resumable),
the package and its report."""

from __future__ import annotations

import time

from ..progress import Progress
from .base import load_base
from .outputs import task_result, write_outputs
from .prepare import prepare_data
from .resume import run_checkpoint
from .train import train


def finetune(config, progress: Progress) -> dict:
    """Train a head on the labelled polygons over the raster into a model package (tasks/finetune.py)."""
    from ..devices import select_device
    from ..model_store import resolve_model

    t0 = time.monotonic()
    device = select_device(config.device)
    model_path = resolve_model(config.model)
    base = load_base(model_path)
    data = prepare_data(config, base, progress.sub(0, 15))
    checkpoint = run_checkpoint(config, model_path)
    trained = train(config, base, data, device, checkpoint, progress.sub(15, 97))
    progress.update(98, "Writing the model package")
    seconds = time.monotonic() - t0
    outputs = write_outputs(config, model_path, base.card, data, trained, device, seconds)
    checkpoint.remove()  # only once the package is whole: until then a rerun resumes
    progress.update(100, "Done")
    return task_result(data, trained, outputs, seconds)
