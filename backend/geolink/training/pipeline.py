"""The fine-tuning job: labels -> windows -> cached encoder features -> head -> model package + report."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, ModelError, opt
from ..osm.tagmap import load_tag_map
from ..progress import Progress
from ..raster.source import Normaliser
from . import osm_labels
from .dataset import LabelWindows, label_windows, read_windows
from .labels import LabelSet, parse_colors, read_labels
from .losses import IGNORE
from .metrics import scores
from .rasterize import overlap_conflicts
from .report import write_report
from .sampling import apply_d4, augmentations, d4_graph
from .split import TEST, TRAIN, VAL, check_classes, split_polygons
from .trainer import Checkpoint, Samples, TrainSettings, evaluate, fit


def state_path(out: Path) -> Path:
    """The resumable training state, beside the output package."""
    return out.with_name(out.stem + ".finetune-state.safetensors")


def _fingerprint(config, model_path: Path) -> str:
    """Identifies a training run: the inputs (paths, sizes, dates) and every option that changes the result."""
    parts = {k: v for k, v in vars(config).items() if k not in ("epochs", "device", "out", "patience")}
    label_files = [config.labels] if config.labels else config.osm_labels
    for name, path in [("raster", config.raster), ("model", model_path),
                       *[(f"labels{i}", p) for i, p in enumerate(label_files)],
                       *[(f"osm{i}", p) for i, p in enumerate(config.osm or [])]]:
        st = os.stat(path)
        parts[f"{name}_stat"] = [str(Path(path).resolve()), st.st_size, int(st.st_mtime)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_base(path: Path):
    """The base model: a GeoLink encoder, or a segmenter whose encoder is reused; anything else is refused."""
    from ..models import GeoLinkModel, GeoLinkSegmenter, load_model

    try:
        model = load_model(path)
    except ModelError as exc:
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune: {exc.message}",
                         hint=f"Choose a GeoLink encoder package, e.g. {opt('model', 'default')}.") from None
    if not isinstance(model, (GeoLinkModel, GeoLinkSegmenter)):
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune.",
                         hint=f"Choose a GeoLink encoder package, e.g. {opt('model', 'default')}.")
    return model


def check_options(config) -> None:
    if bool(config.labels) == bool(config.osm_labels):
        raise InputError("Give either --labels (polygons you drew) or --osm-labels (OpenStreetMap), one of them.")
    if config.labels and not config.class_field:
        raise InputError("--labels needs --class-field, the field holding each polygon's class.")
    if config.osm_labels and config.split_field:
        raise InputError("--split-field applies to --labels; with --osm-labels the held-out pieces are chosen "
                         "spatially (--val-fraction).")
    if Path(config.out).suffix != ".safetensors":
        raise InputError(f"The output must be a .safetensors file, got {Path(config.out).name}.")
    if not 1 <= config.augment <= 8:
        raise InputError(f"{opt('augment')} must be between 1 and 8.")
    if config.unfreeze < 0:
        raise InputError(f"{opt('unfreeze')} must be 0 or more.")
    if not 0 <= config.val_fraction < 1:
        raise InputError(f"{opt('val_fraction')} must be at least 0 and below 1.")


@dataclass
class TrainingData:
    """What training needs, read once: the windows' pixels, graphs and polygons, and the samples
    (window, symmetry) with their targets."""

    labels: LabelSet
    part: np.ndarray  # TRAIN, VAL or TEST per polygon
    split_how: str
    windows: LabelWindows
    images: np.ndarray
    graphs: Optional[list]
    sample_win: np.ndarray
    sample_t: np.ndarray
    samples: Samples
    normalise: Normaliser
    raster_dtype: str
    gsd: float  # the training pixel size in ground metres: the package's card records it
    osm_report: Optional[dict] = None  # from --osm-labels: label area per class, what was dropped

    def scoring_targets(self, polygons: np.ndarray) -> np.ndarray:
        return scoring_targets(self.windows, self.labels.class_ids, polygons, self.sample_win, self.sample_t)

    def batch_images(self, idx, device):
        import torch

        return torch.stack([apply_d4(torch.from_numpy(self.images[self.sample_win[i]]), int(self.sample_t[i]))
                            for i in idx]).to(device)

    def batch_graphs(self, idx):
        if self.graphs is None:
            return None
        return [d4_graph(self.graphs[self.sample_win[i]], int(self.sample_t[i])) for i in idx]


def trained_stretch(card, normalise: Normaliser, dtype: str) -> dict:
    """The card's normalisation with the stretch the head was trained with made explicit (low/high per band),
    for rasters of the training raster's data type.

    Without it a package would stretch each raster it classifies from that raster's own percentiles, so a
    crop of the training scene, or a mostly-sea extent, would be stretched differently from the training data.
    """
    return {**card.normalisation, "low": [float(v) for v in normalise.low],
            "high": [float(v) for v in normalise.high], "low_high_dtype": dtype}


def prepare_data(config, base, progress: Progress) -> TrainingData:
    """Labels on the model's grid (as classify and zones read the raster), split, windows read, samples listed."""
    from ..raster.source import Source, gsd_warning

    spec = base.card
    grid = Source(config.raster, gsd=config.gsd or spec.gsd)
    progress.log(f"Training on {Path(config.raster).name} at {grid.describe_resolution()}.")
    warning = gsd_warning(spec.gsd, grid.pixel_metres, "the ground sample distance asked for")
    if warning:
        progress.warn(warning)
    bands = grid.choose_bands(spec.bands, None)
    normalise = grid.normaliser(spec.normalisation, bands)
    size = int(config.tile_size or spec.input_size)
    osm_report = None
    if config.osm_labels:
        margin = osm_labels.edge_margin(config.edge_margin, grid.pixel_metres)
        labels, osm_report = osm_labels.read_osm_labels(config.osm_labels, load_tag_map(config.tag_map), grid.wkt,
                                                        grid.bounds, margin, parse_colors(config.colors),
                                                        progress.sub(0, 10), cell=size * grid.pixel_size)
    else:
        labels = read_labels(config.labels, config.class_field, grid.wkt, grid.bounds, parse_colors(config.colors),
                             progress.sub(0, 10), split_field=config.split_field)
    conflicts = overlap_conflicts(labels)
    if conflicts:
        progress.warn(f"{conflicts} pair(s) of overlapping polygons have different classes: "
                      "the smaller polygon's class is used where they overlap.")
    if size % spec.patch_size:
        raise InputError(f"{opt('tile_size')} {size} is not a multiple of the model's patch size {spec.patch_size}.")
    if config.head != "linear" and size % 32:
        raise InputError(f"The {config.head} head needs windows that are a multiple of 32 px; got {size}.",
                         hint=f"Set {opt('tile_size')} (e.g. 128 or 224) or use {opt('head', 'linear')}.")
    windows = label_windows(labels, grid, size, int(config.overlap), progress.sub(10, 25))
    images, valid = read_windows(grid, windows.positions, size, bands, normalise, progress.sub(25, 60))
    windows.drop_invalid(valid)
    pixels = windows.polygon_pixels(len(labels.geometries)).astype(np.float64)
    part, split_how = split_polygons(config, labels, pixels, size * grid.pixel_size)
    check_classes(labels, pixels, part, progress)
    train_t = windows.targets(labels.class_ids, part == TRAIN, scoring=False)
    if osm_report is not None:
        train_t, before, after = osm_labels.balance_targets(train_t, len(labels.classes), config.seed)
        osm_report["balance"] = {n: [b, a] for n, b, a in zip(labels.class_names, before, after)}
    graphs = _window_graphs(config, grid, windows.positions, size, base, progress.sub(60, 100))
    # every symmetry of the windows with training pixels; only the identity of those that are scored alone
    has_train = (train_t.reshape(len(train_t), -1) >= 0).any(1)
    variants = [v if has_train[i] else [0] if windows.on_val_grid[i] else []
                for i, v in enumerate(augmentations(len(windows.positions), config.augment, config.seed))]
    sample_win = np.array([i for i, v in enumerate(variants) for _ in v], dtype=np.int64)
    sample_t = np.array([t for v in variants for t in v], dtype=np.int64)
    samples = Samples(train_labels=np.stack([apply_d4(train_t[w], t) for w, t in zip(sample_win, sample_t)]),
                      val_labels=scoring_targets(windows, labels.class_ids, part == VAL, sample_win, sample_t),
                      n_classes=len(labels.classes))
    return TrainingData(labels, part, split_how, windows, images, graphs, sample_win, sample_t, samples, normalise,
                        grid.dtype_name(bands), round(grid.pixel_metres, 4), osm_report)


def scoring_targets(windows: LabelWindows, class_ids: np.ndarray, polygons: np.ndarray, sample_win: np.ndarray,
                    sample_t: np.ndarray) -> np.ndarray:
    """Per sample, the targets of `polygons` on the identity samples of the validation grid; IGNORE elsewhere."""
    targets = windows.targets(class_ids, polygons, scoring=True)[sample_win]
    return np.where((sample_t == 0)[:, None, None], targets, IGNORE).astype(np.int16)


def trainable(config, segmenter, data: TrainingData, device, progress: Progress):
    """(module whose parameters train, forward(sample indices) -> logits, feature cache or None).

    Frozen encoder: its features are cached once and only the head trains (the detail head's guided upsampling
    reads the window's bands as well, which are in memory anyway). --unfreeze K: the last K
    blocks train too, so every step runs the encoder on the (transformed) window pixels."""
    from .. import models

    if config.unfreeze:
        models.unfreeze_last_blocks(segmenter, config.unfreeze)
        return segmenter, lambda idx: segmenter(data.batch_images(idx, device), data.batch_graphs(idx)), None
    from .cache import build_cache

    segmenter.encoder.eval()
    for p in segmenter.encoder.parameters():
        p.requires_grad_(False)
    cache = build_cache(lambda idx: segmenter.encode(data.batch_images(idx, device), data.batch_graphs(idx)),
                        len(data.sample_win), config.batch_size, progress)
    head = segmenter.head
    if head.needs_images:  # the detail head follows the window's bands, read beside the cached features
        return head, lambda idx: head(cache.get(idx, device), data.batch_images(idx, device)), cache
    return head, lambda idx: head(cache.get(idx, device)), cache


def finetune(config, progress: Progress) -> dict:
    import torch

    from .. import models
    from ..devices import select_device
    from ..model_store import resolve_model

    t0 = time.monotonic()
    check_options(config)
    device = select_device(config.device)
    out = Path(config.out)
    model_path = resolve_model(config.model)
    base = load_base(model_path)
    data = prepare_data(config, base, progress.sub(0, 15))
    labels, part = data.labels, data.part
    torch.manual_seed(config.seed)
    segmenter = models.build_segmenter(base, config.head, len(labels.classes), classes=labels.classes).to(device)
    module, forward, cache = trainable(config, segmenter, data, device, progress.sub(15, 40))
    settings = TrainSettings(epochs=config.epochs, batch_size=config.batch_size, patience=config.patience,
                             seed=config.seed)
    checkpoint = Checkpoint(state_path(out), _fingerprint(config, model_path))
    t_fit = time.monotonic()
    result = fit(module, forward, data.samples, settings, device, progress.sub(40 if cache else 15, 97),
                 checkpoint, labels.class_names)
    fit_seconds = time.monotonic() - t_fit
    validation = result.validation
    if validation is None:
        progress.warn("No polygon was held out: the report scores the training pixels, which overstates accuracy.")
        validation = _score(module, forward, data, part == TRAIN, config.batch_size)
    test = _score(module, forward, data, part == TEST, config.batch_size) if (part == TEST).any() else None
    if cache is not None:
        cache.close()

    progress.update(98, "Writing the model package")
    final = test or validation  # the figures users see: the test polygons when there are any
    scored_on = "test" if test else "validation"
    elapsed = time.monotonic() - t0
    summary = {"base model": str(model_path), "raster": str(config.raster),
               "labels": str(config.labels or ", ".join(config.osm_labels)),
               "class field": config.class_field or "(OSM tags)", "head": config.head,
               "unfrozen blocks": config.unfreeze,
               "polygons": f"{int((part == TRAIN).sum())} training, {int((part == VAL).sum())} validation, "
                           f"{int((part == TEST).sum())} test",
               "validation polygons": data.split_how, "windows": len(data.windows.positions),
               "samples": len(data.sample_win), "best epoch": result.best_epoch,
               "epochs run": len(result.history), "device": str(device), "seconds": round(elapsed, 1),
               "seconds training": round(fit_seconds, 1),
               **(osm_labels.summary_lines(data.osm_report) if data.osm_report else {})}
    card = package_card(config, out, model_path, base.card, segmenter.card, data, final, scored_on, result.best_epoch)
    models.save_package(segmenter.cpu(), out, card, classes=labels.classes, encoder_only=True)
    report = {"classes": labels.classes, "validation": validation, "test": test, "history": result.history,
              "summary": summary, "osm_labels": data.osm_report}
    outputs = {"model": str(out), **write_report(report, out)}
    checkpoint.remove()
    figures = {"scored_on": scored_on, "overall_accuracy": final["overall_accuracy"],
               "balanced_accuracy": final["balanced_accuracy"], "mean_iou": final["mean_iou"],
               "validation_mean_iou": validation["mean_iou"], "best_epoch": result.best_epoch,
               "seconds": round(elapsed, 1), "classes": labels.class_names, "per_class": final["classes"],
               **({"osm_labels": data.osm_report} if data.osm_report else {})}
    progress.update(100, "Done")
    return {"outputs": outputs, "figures": figures,
            "report": f"{scored_on.capitalize()}: overall accuracy {final['overall_accuracy']}, balanced accuracy "
                      f"{final['balanced_accuracy']}, mean IoU {final['mean_iou']} ({final['pixels']} pixels); "
                      f"best epoch {result.best_epoch}; {elapsed:.0f} s."}


def package_card(config, out: Path, model_path: Path, base_card, card, data: TrainingData, final: dict,
                 scored_on: str, best_epoch: int):
    """The fine-tuned package's own card: its name, its base (named, not copied), its training data (raster,
    label layer, classes with their training pixels), its held-out scores, the resolution and stretch it was
    trained with and the date. The base's summary and scores describe another model and are left out."""
    labels, part = data.labels, data.part
    pixels = data.windows.polygon_pixels(len(labels.geometries))
    train = part == TRAIN
    class_pixels = np.bincount(labels.class_ids[train], weights=pixels[train], minlength=len(labels.classes))
    base_name = base_card.name or model_path.stem
    scores_ = {k: final[k] for k in ("overall_accuracy", "balanced_accuracy", "mean_iou", "pixels")}
    held = int((part == (TEST if scored_on == "test" else VAL)).sum())
    label_source = Path(config.labels).name if config.labels else \
        "OSM " + ", ".join(Path(p).name for p in config.osm_labels) + f" (tag map {config.tag_map})"
    provenance = {
        "task": "finetune",
        "summary": (f"{len(labels.classes)}-class {config.head} head fine-tuned from '{base_name}' on "
                    f"{int(train.sum())} polygons of {label_source} over {Path(config.raster).name} "
                    f"({data.gsd:g} m); {scored_on} scores on {held} held-out polygons: balanced accuracy "
                    f"{final['balanced_accuracy']}, mean IoU {final['mean_iou']}."),
        "base_model": {"name": base_name, "file": model_path.name, "architecture": base_card.architecture},
        "training_data": {"raster": Path(config.raster).name, "labels": label_source,
                          "class_field": config.class_field, "gsd_m": data.gsd,
                          "classes": {n: int(v) for n, v in zip(labels.class_names, class_pixels)},
                          "polygons": {"train": int(train.sum()), "validation": int((part == VAL).sum()),
                                       "test": int((part == TEST).sum())},
                          "validation_polygons": data.split_how, "window": data.windows.size},
        "head": config.head, "unfrozen_blocks": config.unfreeze, "epochs": best_epoch,
        scored_on: scores_,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if data.osm_report:  # zones --compare-osm reads the tag map back from here
        provenance["tag_map"] = {"source": data.osm_report["tag_map"], "classes": data.osm_report["tag_map_classes"]}
    stretch = trained_stretch(card, data.normalise, data.raster_dtype)
    return card.replace(name=out.stem, normalisation=stretch, gsd=data.gsd, provenance=provenance)


def _window_graphs(config, grid, positions: Sequence[Tuple[int, int]], size: int, base,
                   progress: Progress) -> Optional[list]:
    """The OSM graph of each window (None where a window has no OSM feature), or None without --osm."""
    if not config.osm:
        return None
    encoder = getattr(base, "encoder", base)
    if not encoder.has_osm:
        progress.warn("The base model is image-only: the OSM files are not used.")
        return None
    text_encoder = encoder.card.text_encoder_name
    if text_encoder is None:
        progress.warn("The base model's card names no tag text encoder: the OSM files are not used.")
        return None
    from ..osm.window_graphs import WindowGraphs

    graphs = WindowGraphs.from_files(config.osm, grid.wkt, grid.bounds, text_encoder, progress=progress.sub(0, 40))
    if graphs.encoder is None:
        progress.warn("The OSM files hold no feature over the raster; training on the image alone.")
        return None
    bounds = [grid.window_bounds(x, y, size, size) for x, y in positions]
    return [graphs(b) for b in progress.sub(40, 100).steps(bounds, len(bounds), "Building OSM graphs")]


def _score(module, forward, data: TrainingData, polygons: np.ndarray, batch_size: int) -> dict:
    """Scores of the trained model on the pixels of `polygons`."""
    targets = data.scoring_targets(polygons)
    index = np.flatnonzero((targets.reshape(len(targets), -1) >= 0).any(1))
    return scores(evaluate(module, forward, data.samples.n_classes, index, targets, batch_size),
                  data.labels.class_names)
