"""Where to train: windows of the grid around the labels, dihedral augmentation, the spatial split."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

# The 8 symmetries of the square: t % 4 quarter turns, then a left-right flip when t >= 4.
D4 = tuple(range(8))


def grid_windows(boxes: np.ndarray, width: int, height: int, size: int, stride: int) -> List[Tuple[int, int]]:
    """Top-left (col, row) of the grid windows (origin 0, step `stride`) that touch any box, sorted.

    boxes: [N, 4] (col0, row0, col1, row1) pixel boxes, end-exclusive. Windows start inside the raster;
    they may run past its right or bottom edge (the reader pads there).
    """
    found = set()
    last_x, last_y = (max(width - 1, 0)) // stride, (max(height - 1, 0)) // stride
    for c0, r0, c1, r1 in np.asarray(boxes).reshape(-1, 4):
        kx0, kx1 = max(0, -((size - 1 - c0) // stride)), min(last_x, (c1 - 1) // stride)
        ky0, ky1 = max(0, -((size - 1 - r0) // stride)), min(last_y, (r1 - 1) // stride)
        for ky in range(ky0, ky1 + 1):
            for kx in range(kx0, kx1 + 1):
                found.add((kx * stride, ky * stride))
    return sorted(found, key=lambda p: (p[1], p[0]))


def apply_d4(array, t: int):
    """Transform the last two axes of a numpy array or torch tensor by symmetry t of D4."""
    if isinstance(array, np.ndarray):
        out = np.rot90(array, t % 4, axes=(-2, -1))
        return np.ascontiguousarray(out[..., ::-1] if t >= 4 else out)
    import torch

    out = torch.rot90(array, t % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if t >= 4 else out


def d4_points(xy, t: int):
    """Positions in tile units (x from the west, y from the north, 0..1) moved as apply_d4 moves pixels."""
    import torch

    x, y = xy[..., 0], xy[..., 1]
    for _ in range(t % 4):
        x, y = y, 1 - x
    if t >= 4:
        x = 1 - x
    return torch.stack([x, y], -1)


def d4_graph(graph, t: int):
    """A copy of a window's OSM graph with its node positions moved by symmetry t (None stays None)."""
    if graph is None or t == 0:
        return graph
    from ..osm.graph_edit import positions, set_positions

    out = graph.clone()
    for node_type in out.node_types:
        if "x" in out[node_type] and out[node_type].x.shape[0]:
            set_positions(out, node_type, d4_points(positions(out, node_type), t))
    return out


def augmentations(n_windows: int, per_window: int, seed: int) -> List[List[int]]:
    """For each window: the identity, then `per_window - 1` distinct other symmetries drawn at random."""
    rng = np.random.default_rng(seed)
    extra = max(0, min(per_window, len(D4)) - 1)
    return [[0] + sorted(rng.choice(np.arange(1, 8), size=extra, replace=False).tolist())
            for _ in range(n_windows)]


def spatial_split(class_ids: np.ndarray, centroids: np.ndarray, pixels: np.ndarray, val_fraction: float,
                  block: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the polygons held out for validation: by polygon, never by pixel, stratified by
    class and kept apart in space.

    Polygons are grouped into square blocks of side `block` (map units). For each class (rarest first),
    the class's polygons of one block at a time go to validation: first the block whose pixels come
    nearest `val_fraction` of the class's, then others in a seeded random order while the share is
    not reached and stays under 1.5 times it; the class always keeps at least one training polygon.
    So every class with two polygons or more is validated, and a validation polygon never shares a
    block with a training polygon of its class (unless all of them share one block).
    """
    n = len(class_ids)
    val = np.zeros(n, dtype=bool)
    if val_fraction <= 0 or n == 0:
        return val
    keys = np.floor(np.asarray(centroids) / block).astype(np.int64)
    block_ids = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(block_ids.max() + 1)
    counts = np.bincount(class_ids)
    for c in np.argsort(counts, kind="stable"):
        mine = np.flatnonzero(class_ids == c)
        if len(mine) < 2:
            continue
        target, held = val_fraction * pixels[mine].sum(), 0.0
        groups = [g for g in (mine[block_ids[mine] == b] for b in order) if len(g)]
        if len(groups) == 1:  # all in one block: hold out single polygons instead
            groups = [np.array([i]) for i in rng.permutation(mine)]
        sizes = np.array([pixels[g].sum() for g in groups])
        first = int(np.argmin(np.abs(sizes - target)))  # the group nearest the target, so a class is validated
        for k in [first] + [k for k in range(len(groups)) if k != first]:
            g = groups[k]
            if held >= target or len(mine) - val[mine].sum() - len(g) < 1:
                continue
            if held == 0 or held + sizes[k] <= 1.5 * target:
                val[g] = True
                held += sizes[k]
    return val


def classes_without(mask: np.ndarray, class_ids: np.ndarray, names: Sequence[str]) -> List[str]:
    """Names of the classes with no polygon where `mask` is true."""
    present = set(class_ids[mask].tolist())
    return [n for i, n in enumerate(names) if i not in present]

