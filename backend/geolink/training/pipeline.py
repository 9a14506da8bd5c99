"""The fine-tuning job: labels -> windows -> cached encoder features -> head -> model package + report."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, ModelError
from ..progress import Progress
from .dataset import label_windows, read_windows
from .labels import LabelSet, read_labels
from .losses import IGNORE
from .metrics import scores
from .rasterize import overlap_conflicts
from .report import write_report
from .sampling import apply_d4, augmentations, classes_without, d4_graph, spatial_split
from .trainer import Checkpoint, Samples, TrainSettings, evaluate, fit

MIN_CLASS_PIXELS = 200  # fewer training pixels than this for a class: warn
HELD_OUT_VALUES = {"val", "valid", "validation", "test", "holdout", "held-out"}


def state_path(out: Path) -> Path:
    """The resumable training state, beside the output package."""
    return out.with_name(out.stem + ".finetune-state.safetensors")


def _fingerprint(config, model_path: Path) -> str:
    """Identifies a training run: the inputs (paths, sizes, dates) and every option that changes the result."""
    parts = {k: v for k, v in vars(config).items() if k not in ("epochs", "device", "out", "patience")}
    for name, path in [("raster", config.raster), ("labels", config.labels), ("model", model_path),
                       *[(f"osm{i}", p) for i, p in enumerate(config.osm or [])]]:
        st = os.stat(path)
        parts[f"{name}_stat"] = [str(Path(path).resolve()), st.st_size, int(st.st_mtime)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def held_out_polygons(config, labels: LabelSet, pixels: np.ndarray, block: float) -> np.ndarray:
    """Polygons marked in the split field, else a spatial split by blocks of `block` map units."""
    if labels.split_values is not None:
        return np.array([v.strip().lower() in HELD_OUT_VALUES for v in labels.split_values], dtype=bool)
    return spatial_split(labels.class_ids, labels.centroids, pixels, config.val_fraction, block, config.seed)


def check_classes(labels: LabelSet, pixels: np.ndarray, held: np.ndarray, progress: Progress) -> None:
    """Refuse classes with nothing to train on; warn about small ones and about those never validated."""
    names = labels.class_names
    empty = [i for i in range(len(pixels)) if pixels[i] == 0]
    if empty:
        progress.warn(f"{len(empty)} polygon(s) cover no pixel centre (thinner than a pixel) and are left out.")
    train_px = np.bincount(labels.class_ids[~held], weights=pixels[~held], minlength=len(names))
    missing = [n for i, n in enumerate(names) if train_px[i] == 0]
    if missing:
        raise InputError("No training pixels for class(es): " + ", ".join(missing) + ".",
                         hint="Draw more or larger polygons of these classes, or hold fewer out.")
    small = [f"{n} ({int(train_px[i])})" for i, n in enumerate(names) if train_px[i] < MIN_CLASS_PIXELS]
    if small:
        progress.warn("Few training pixels for: " + ", ".join(small) + f"; aim for at least {MIN_CLASS_PIXELS} "
                      "per class, spread over several polygons.")
    unvalidated = classes_without(held, labels.class_ids, names)
    if held.any() and unvalidated:
        progress.warn("No held-out polygon for: " + ", ".join(unvalidated) +
                      " (a class needs two polygons or more to be validated).")


def finetune(config, progress: Progress) -> dict:
    import torch

    from .. import models
    from ..devices import select_device
    from ..model_store import read_card, resolve_model

    t0 = time.monotonic()
    device = select_device(config.device)
    out = Path(config.out)
    if out.suffix != ".safetensors":
        raise InputError(f"The output must be a .safetensors file, got {out.name}.")
    model_path = resolve_model(config.model)
    card = read_card(model_path)
    if not card.get("architecture") or card.get("encoder") is False:
        raise ModelError(f"{model_path.name} has no image encoder to fine-tune on.",
                         hint="Choose a GeoLink encoder package, e.g. --model default.")
    if not 1 <= config.augment <= 8:
        raise InputError("--augment must be between 1 and 8.")
    if config.unfreeze < 0:
        raise InputError("--unfreeze must be 0 or more.")
    if not 0 <= config.val_fraction < 1:
        raise InputError("--val-fraction must be at least 0 and below 1.")

    from ..raster.source import ModelInput, Source

    spec = ModelInput.from_card(card)
    grid = Source(config.raster, gsd=config.gsd or None)
    bands = grid.choose_bands(spec.bands, None)
    normalise = grid.normaliser(spec, bands)
    labels = read_labels(config.labels, config.class_field, grid.wkt, grid.bounds, _colors(config.colors),
                         progress.sub(0, 2), split_field=config.split_field)
    conflicts = overlap_conflicts(labels)
    if conflicts:
        progress.warn(f"{conflicts} pair(s) of overlapping polygons have different classes: "
                      "the smaller polygon's class is used where they overlap.")
    size = int(config.tile_size or spec.input_size)
    if size % spec.patch_size:
        raise InputError(f"--tile-size {size} is not a multiple of the model's patch size {spec.patch_size}.")
    overlap = int(config.overlap)
    windows = label_windows(labels, grid, size, overlap, progress.sub(2, 5))
    images, valid = read_windows(grid, windows.positions, size, bands, normalise, progress.sub(5, 10))
    windows.drop_invalid(valid)
    pixels = windows.polygon_pixels(len(labels.geometries)).astype(np.float64)
    held = held_out_polygons(config, labels, pixels, size * grid.pixel_size)
    check_classes(labels, pixels, held, progress)
    train_t, val_t = windows.targets(labels.class_ids, held)

    graphs = _window_graphs(config, grid, windows.positions, size, card, progress.sub(10, 15))
    variants = augmentations(len(windows.positions), config.augment, config.seed)
    sample_win = np.array([i for i, v in enumerate(variants) for _ in v])
    sample_t = np.array([t for v in variants for t in v])
    samples = Samples(train_labels=np.stack([apply_d4(train_t[w], t) for w, t in zip(sample_win, sample_t)]),
                      val_labels=np.where((sample_t == 0)[:, None, None], val_t[sample_win], IGNORE).astype(np.int16),
                      n_classes=len(labels.classes))

    torch.manual_seed(config.seed)
    base = models.load_model(model_path)
    segmenter = models.build_segmenter(base, config.head, len(labels.classes))
    segmenter.to(device)

    def batch_images(idx):
        return torch.stack([apply_d4(torch.from_numpy(images[sample_win[i]]), int(sample_t[i])) for i in idx]
                           ).to(device)

    def batch_graphs(idx):
        return None if graphs is None else [d4_graph(graphs[sample_win[i]], int(sample_t[i])) for i in idx]

    cache = None
    if config.unfreeze:
        models.unfreeze_last_blocks(segmenter, config.unfreeze)
        module = segmenter

        def forward(idx):
            return segmenter(batch_images(idx), batch_graphs(idx))
    else:
        from .cache import build_cache

        segmenter.encoder.eval()
        for p in segmenter.encoder.parameters():
            p.requires_grad_(False)
        cache = build_cache(lambda idx: segmenter.encode(batch_images(idx), batch_graphs(idx)),
                            len(sample_win), config.batch_size, progress.sub(15, 40))
        module = segmenter.head

        def forward(idx):
            return segmenter.head(cache.get(idx, device))

    settings = TrainSettings(epochs=config.epochs, batch_size=config.batch_size, patience=config.patience,
                             seed=config.seed)
    checkpoint = Checkpoint(state_path(out), _fingerprint(config, model_path))
    t_fit = time.monotonic()
    result = fit(module, forward, samples, settings, device, progress.sub(40 if cache else 15, 97),
                 checkpoint, labels.class_names)
    validation = result.validation
    if validation is None:
        progress.warn("No polygon was held out: the report scores the training pixels, which overstates accuracy.")
        ident = np.flatnonzero(sample_t == 0)
        validation = scores(evaluate(module, forward, samples.n_classes, ident, samples.train_labels,
                                     config.batch_size), labels.class_names)
    if cache is not None:
        cache.close()

    progress.update(98, "Writing the model package")
    elapsed = time.monotonic() - t0
    summary = {"base model": str(model_path), "raster": str(config.raster), "labels": str(config.labels),
               "class field": config.class_field, "head": config.head, "unfrozen blocks": config.unfreeze,
               "polygons": f"{int((~held).sum())} training, {int(held.sum())} held out",
               "windows": len(windows.positions), "samples": len(sample_win), "best epoch": result.best_epoch,
               "epochs run": len(result.history), "device": str(device), "seconds": round(elapsed, 1),
               "seconds training the head": round(time.monotonic() - t_fit, 1)}
    provenance = {"task": "finetune", "base_model": model_path.name, "base_card": card.get("provenance"),
                  "labels": Path(config.labels).name, "class_field": config.class_field,
                  "raster": Path(config.raster).name, "window": size, "epochs": result.best_epoch,
                  "validation": {k: validation[k] for k in ("overall_accuracy", "balanced_accuracy", "mean_iou")},
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    models.save_package(segmenter, out, provenance=provenance, classes=labels.classes)
    report = {"classes": labels.classes, "validation": validation, "history": result.history, "summary": summary,
              "held_out_by": config.split_field or f"spatial blocks, {config.val_fraction:.0%} of pixels"}
    outputs = {"model": str(out), **write_report(report, out)}
    checkpoint.remove()
    figures = {"overall_accuracy": validation["overall_accuracy"],
               "balanced_accuracy": validation["balanced_accuracy"], "mean_iou": validation["mean_iou"],
               "best_epoch": result.best_epoch, "seconds": round(elapsed, 1),
               "classes": labels.class_names, "per_class": validation["classes"]}
    progress.update(100, "Done")
    return {"outputs": outputs, "figures": figures,
            "report": f"Validation: overall accuracy {validation['overall_accuracy']}, balanced accuracy "
                      f"{validation['balanced_accuracy']}, mean IoU {validation['mean_iou']} "
                      f"({validation['pixels']} pixels); {elapsed:.0f} s."}


def _window_graphs(config, grid, positions: Sequence[Tuple[int, int]], size: int, card: dict,
                   progress: Progress) -> Optional[list]:
    """The OSM graph of each window (None where a window has no OSM feature), or None without --osm."""
    if not config.osm:
        return None
    from ..osm import OsmIndex, build_graph, get_text_encoder

    index = OsmIndex.from_files(config.osm, grid.wkt, progress.sub(0, 40))
    if not len(index):
        progress.warn("The OSM files hold no feature over the raster; training on the image alone.")
        return None
    encoder = get_text_encoder(card.get("text_encoder") or "minilm")
    bounds = [grid.window_bounds(x, y, size, size) for x, y in positions]
    return [build_graph(index.query(b), b, encoder)
            for b in progress.sub(40, 100).steps(bounds, len(bounds), "Building OSM graphs")]


def _colors(value) -> Optional[Dict[str, str]]:
    """--colors as a dict (the worker) or JSON text (the command line)."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InputError('--colors must be a JSON object such as {"water": "#1f78b4"}.')
    return {str(k): str(v) for k, v in parsed.items()}
