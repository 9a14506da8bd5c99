"""The training data, read once: the labels on the model's grid (as classify and zones read the raster),
the polygons' split, the windows' pixels and OSM graphs, and the samples (window, symmetry) with their targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..errors import InputError, opt
from ..osm.tagmap import load_tag_map
from ..progress import Progress
from ..raster.source import Normaliser, Source, gsd_warning
from . import osm_labels
from .dataset import LabelWindows, label_windows, read_windows
from .labels import LabelSet, parse_colors, read_labels
from .losses import IGNORE
from .osm_graphs import window_graphs
from .rasterize import overlap_conflicts
from .sampling import apply_d4, augmentations, d4_graph
from .split import TRAIN, VAL, check_classes, split_polygons
from .trainer import Samples


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


def prepare_data(config, base, progress: Progress) -> TrainingData:
    """Labels on the model's grid, split, windows read, samples listed."""
    spec = base.card
    grid, bands, normalise = _grid(config, spec, progress)
    size = int(config.tile_size or spec.input_size)
    labels, osm_report = _labels(config, grid, size, progress.sub(0, 10))
    _check_window(size, spec.patch_size, config.head)
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
    graphs = window_graphs(config, grid, windows.positions, size, base, progress.sub(60, 100))
    sample_win, sample_t = _samples(windows, train_t, config.augment, config.seed)
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


def _grid(config, spec, progress: Progress) -> Tuple[Source, List[int], Normaliser]:
    """(the raster at the model's ground sample distance unless --gsd, the bands the model reads, their stretch)."""
    grid = Source(config.raster, gsd=config.gsd or spec.gsd)
    progress.log(f"Training on {Path(config.raster).name} at {grid.describe_resolution()}.")
    warning = gsd_warning(spec.gsd, grid.pixel_metres, "the ground sample distance asked for")
    if warning:
        progress.warn(warning)
    bands = grid.choose_bands(spec.bands, None)
    return grid, bands, grid.normaliser(spec.normalisation, bands)


def _labels(config, grid, size: int, progress: Progress) -> Tuple[LabelSet, Optional[dict]]:
    """The polygons drawn (--labels) or OpenStreetMap's (--osm-labels, with its report), in the grid's CRS."""
    osm_report = None
    if config.osm_labels:
        margin = osm_labels.edge_margin(config.edge_margin, grid.pixel_metres)
        labels, osm_report = osm_labels.read_osm_labels(config.osm_labels, load_tag_map(config.tag_map), grid.wkt,
                                                        grid.bounds, margin, parse_colors(config.colors),
                                                        progress, cell=size * grid.pixel_size)
    else:
        labels = read_labels(config.labels, config.class_field, grid.wkt, grid.bounds, parse_colors(config.colors),
                             progress, split_field=config.split_field)
    conflicts = overlap_conflicts(labels)
    if conflicts:
        progress.warn(f"{conflicts} pair(s) of overlapping polygons have different classes: "
                      "the smaller polygon's class is used where they overlap.")
    return labels, osm_report


def _check_window(size: int, patch_size: int, head: str) -> None:
    if size % patch_size:
        raise InputError(f"{opt('tile_size')} {size} is not a multiple of the model's patch size {patch_size}.")
    if head != "linear" and size % 32:
        raise InputError(f"The {head} head needs windows that are a multiple of 32 px; got {size}.",
                         hint=f"Set {opt('tile_size')} (e.g. 128 or 224) or use {opt('head', 'linear')}.")


def _samples(windows: LabelWindows, train_t: np.ndarray, augment: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(window, symmetry) of each sample: every symmetry of the windows with training pixels, only the identity
    of those that are scored alone."""
    has_train = (train_t.reshape(len(train_t), -1) >= 0).any(1)
    variants = [v if has_train[i] else [0] if windows.on_val_grid[i] else []
                for i, v in enumerate(augmentations(len(windows.positions), augment, seed))]
    sample_win = np.array([i for i, v in enumerate(variants) for _ in v], dtype=np.int64)
    sample_t = np.array([t for v in variants for t in v], dtype=np.int64)
    return sample_win, sample_t
