"""Which polygons train, which validate (early stopping) and which only score: the split policy, and the
checks that every class has something to train on."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .labels import LabelSet
from .sampling import classes_without, spatial_split

MIN_CLASS_PIXELS = 200  # fewer training pixels than this for a class: warn
TRAIN, VAL, TEST = 0, 1, 2  # what a polygon is for
VAL_VALUES = {"val", "valid", "validation", "holdout", "held-out"}  # split field: early stopping
TEST_VALUES = {"test"}  # split field: scored only, never used for any choice


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
