"""The fine-tuning job: labels -> windows -> cached encoder features -> head -> model package + report."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

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
TRAIN, VAL, TEST = 0, 1, 2  # what a polygon is for
VAL_VALUES = {"val", "valid", "validation", "holdout", "held-out"}  # split field: early stopping
TEST_VALUES = {"test"}  # split field: scored only, never used for any choice


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


def split_polygons(config, labels: LabelSet, pixels: np.ndarray, block: float) -> Tuple[np.ndarray, str]:
    """(TRAIN, VAL or TEST per polygon, how the validation polygons were chosen): from the split field
    when given; when it marks no validation polygon, the training ones are split spatially (blocks of
    `block` map units) by --val-fraction."""
    part = np.full(len(labels.class_ids), TRAIN)
    if labels.split_values is not None:
        values = [v.strip().lower() for v in labels.split_values]
        part[[v in TEST_VALUES for v in values]] = TEST
        part[[v in VAL_VALUES for v in values]] = VAL
        if (part == VAL).any():
            return part, f"marked in {config.split_field!r}"
    rest = np.flatnonzero(part == TRAIN)
    held = spatial_split(labels.class_ids[rest], labels.centroids[rest], pixels[rest], config.val_fraction, block,
                         config.seed)
    part[rest[held]] = VAL
    return part, f"spatial blocks, {config.val_fraction:.0%} of the training pixels"


def check_classes(labels: LabelSet, pixels: np.ndarray, part: np.ndarray, progress: Progress) -> None:
    """Refuse classes with nothing to train on; warn about small ones and about those never validated."""
    names = labels.class_names
    empty = int((pixels == 0).sum())
    if empty:
        progress.warn(f"{empty} polygon(s) cover no pixel centre (thinner than a pixel) and are left out.")
    train = part == TRAIN
    train_px = np.bincount(labels.class_ids[train], weights=pixels[train], minlength=len(names))
    missing = [n for i, n in enumerate(names) if train_px[i] == 0]
    if missing:
        raise InputError("No training pixels for class(es): " + ", ".join(missing) + ".",
                         hint="Draw more or larger polygons of these classes, or hold fewer out.")
    small = [f"{n} ({int(train_px[i])})" for i, n in enumerate(names) if train_px[i] < MIN_CLASS_PIXELS]
    if small:
        progress.warn("Few training pixels for: " + ", ".join(small) + f"; aim for at least {MIN_CLASS_PIXELS} "
                      "per class, spread over several polygons.")
    unvalidated = classes_without(part == VAL, labels.class_ids, names)
    if (part == VAL).any() and unvalidated:
        progress.warn("No validation polygon for: " + ", ".join(unvalidated) +
                      " (a class needs two polygons or more to be validated).")


def load_base(path: Path):
    """The base model: a GeoLink encoder, or a segmenter whose encoder is reused; anything else is refused."""
    from ..models import GeoLinkModel, GeoLinkSegmenter, load_model

    try:
        model = load_model(path)
    except ModelError as exc:
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune: {exc.message}",
                         hint="Choose a GeoLink encoder package, e.g. --model default.") from None
    if not isinstance(model, (GeoLinkModel, GeoLinkSegmenter)):
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune.",
                         hint="Choose a GeoLink encoder package, e.g. --model default.")
    return model


def finetune(config, progress: Progress) -> dict:
    import torch

    from .. import models
    from ..devices import select_device
    from ..model_store import resolve_model

    t0 = time.monotonic()
    device = select_device(config.device)
    out = Path(config.out)
    if out.suffix != ".safetensors":
        raise InputError(f"The output must be a .safetensors file, got {out.name}.")
    if not 1 <= config.augment <= 8:
        raise InputError("--augment must be between 1 and 8.")
    if config.unfreeze < 0:
        raise InputError("--unfreeze must be 0 or more.")
    if not 0 <= config.val_fraction < 1:
        raise InputError("--val-fraction must be at least 0 and below 1.")
    model_path = resolve_model(config.model)
    base = load_base(model_path)
    card = base.card

    from ..raster.source import ModelInput, Source

    spec = ModelInput.from_card(card)
    grid = Source(config.raster, gsd=config.gsd or spec.gsd)  # the model's grid, as classify and zones use
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
    part, split_how = split_polygons(config, labels, pixels, size * grid.pixel_size)
    check_classes(labels, pixels, part, progress)
    train_t = windows.targets(labels.class_ids, part == TRAIN, scoring=False)

    graphs = _window_graphs(config, grid, windows.positions, size, base, progress.sub(10, 15))
    variants = augmentations(len(windows.positions), config.augment, config.seed)
    sample_win = np.array([i for i, v in enumerate(variants) for _ in v])
    sample_t = np.array([t for v in variants for t in v])
    identity = (sample_t == 0)[:, None, None]

    def scoring_targets(polygons: np.ndarray) -> np.ndarray:
        """Targets of `polygons` on the identity samples of the validation grid; IGNORE elsewhere."""
        return np.where(identity, windows.targets(labels.class_ids, polygons, scoring=True)[sample_win],
                        IGNORE).astype(np.int16)

    samples = Samples(train_labels=np.stack([apply_d4(train_t[w], t) for w, t in zip(sample_win, sample_t)]),
                      val_labels=scoring_targets(part == VAL), n_classes=len(labels.classes))

    torch.manual_seed(config.seed)
    segmenter = models.build_segmenter(base, config.head, len(labels.classes), classes=labels.classes)
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
        validation = _score(module, forward, samples, scoring_targets(part == TRAIN), config.batch_size,
                            labels.class_names)
    test = None
    if (part == TEST).any():
        test = _score(module, forward, samples, scoring_targets(part == TEST), config.batch_size, labels.class_names)
    if cache is not None:
        cache.close()

    progress.update(98, "Writing the model package")
    elapsed = time.monotonic() - t0
    summary = {"base model": str(model_path), "raster": str(config.raster), "labels": str(config.labels),
               "class field": config.class_field, "head": config.head, "unfrozen blocks": config.unfreeze,
               "polygons": f"{int((part == TRAIN).sum())} training, {int((part == VAL).sum())} validation, "
                           f"{int((part == TEST).sum())} test",
               "windows": len(windows.positions), "samples": len(sample_win), "best epoch": result.best_epoch,
               "epochs run": len(result.history), "device": str(device), "seconds": round(elapsed, 1),
               "seconds training the head": round(time.monotonic() - t_fit, 1)}
    final = test or validation  # the figures users see: test polygons when there are any
    provenance = {"task": "finetune", "base_model": model_path.name, "base_card": card.get("provenance"),
                  "labels": Path(config.labels).name, "class_field": config.class_field,
                  "raster": Path(config.raster).name, "window": size, "epochs": result.best_epoch,
                  "test" if test else "validation": {k: final[k] for k in ("overall_accuracy", "balanced_accuracy",
                                                                            "mean_iou")},
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    segmenter.cpu()
    models.save_package(segmenter, out, provenance=provenance, classes=labels.classes, encoder_only=True)
    report = {"classes": labels.classes, "validation": validation, "test": test, "history": result.history,
              "summary": {**summary, "validation polygons": split_how}}
    outputs = {"model": str(out), **write_report(report, out)}
    checkpoint.remove()
    figures = {"scored_on": "test" if test else "validation", "overall_accuracy": final["overall_accuracy"],
               "balanced_accuracy": final["balanced_accuracy"], "mean_iou": final["mean_iou"],
               "validation_mean_iou": validation["mean_iou"], "best_epoch": result.best_epoch,
               "seconds": round(elapsed, 1), "classes": labels.class_names, "per_class": final["classes"]}
    progress.update(100, "Done")
    return {"outputs": outputs, "figures": figures,
            "report": f"{'Test' if test else 'Validation'}: overall accuracy {final['overall_accuracy']}, balanced "
                      f"accuracy {final['balanced_accuracy']}, mean IoU {final['mean_iou']} ({final['pixels']} "
                      f"pixels); best epoch {result.best_epoch}; {elapsed:.0f} s."}


def _window_graphs(config, grid, positions: Sequence[Tuple[int, int]], size: int, base,
                   progress: Progress) -> Optional[list]:
    """The OSM graph of each window (None where a window has no OSM feature), or None without --osm."""
    if not config.osm:
        return None
    encoder = getattr(base, "encoder", base)
    if not encoder.has_osm:
        progress.warn("The base model is image-only: the OSM files are not used.")
        return None
    from ..osm import OsmIndex, build_graph, get_text_encoder

    index = OsmIndex.from_files(config.osm, grid.wkt, progress.sub(0, 40))
    if not len(index):
        progress.warn("The OSM files hold no feature over the raster; training on the image alone.")
        return None
    text = get_text_encoder((encoder.card.get("text_encoder") or {}).get("name") or "minilm")
    bounds = [grid.window_bounds(x, y, size, size) for x, y in positions]
    return [build_graph(index.query(b), b, text)
            for b in progress.sub(40, 100).steps(bounds, len(bounds), "Building OSM graphs")]


def _score(module, forward, samples: Samples, targets: np.ndarray, batch_size: int, names: List[str]) -> dict:
    index = np.flatnonzero((targets.reshape(len(targets), -1) >= 0).any(1))
    return scores(evaluate(module, forward, samples.n_classes, index, targets, batch_size), names)


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
