"""Turning pretraining sources into image/graph pairs, once: the prepared-dataset cache.

Sources:
- a pairs folder in the original GeoLink layout: NAME/NAME.jpg|png|tif, NAME_polygon|line|point.geojson
  (CRS84, `label` = "key:value;..."), NAME.pickle holding {'bbox': (west, south, east, north)};
- rasters in any CRS, tiled into square windows, with OSM files (any CRS) cut to each window.
Rasters without OSM give image-only samples (they train the masked-image objective only).

Building graphs (tag text encoding, spatial relations) is the slow part, so the prepared samples
are saved under a key made from the sources' paths, sizes and times and every option that changes
them; a second run with the same sources loads them in a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from ..errors import InputError, opt
from ..osm.graph_edit import to_plain
from ..progress import Progress
from .images import STRETCH, RasterImage, read_image
from .safe_pickle import read_bbox

CACHE_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
GEOMETRY_FILES = ("polygon", "line", "point")


@dataclass
class DataSpec:
    """Everything that decides the prepared samples (and so the cache key)."""

    pairs: Optional[str] = None
    rasters: List[str] = field(default_factory=list)
    osm: List[str] = field(default_factory=list)
    bands: List[int] = field(default_factory=lambda: [1, 2, 3])
    tile_size: int = 224
    tile_stride: Optional[int] = None
    text_encoder: str = "minilm"

    def key(self) -> str:
        files = [self.pairs] if self.pairs else []
        files += self.rasters + self.osm
        stamps = []
        for f in files:
            for p in sorted(Path(f).rglob("*")) if Path(f).is_dir() else [Path(f)]:
                if p.is_file():
                    st = p.stat()
                    stamps.append([str(p.resolve()), st.st_size, int(st.st_mtime)])
        blob = json.dumps({"spec": asdict(self), "files": stamps, "v": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def find_pairs(root: os.PathLike) -> List[dict]:
    """The samples of a pairs folder: {"name", "image", "bbox", "vectors": {geometry: path}}."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Pairs folder not found: {root}")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        images = [folder / f"{name}{s}" for s in IMAGE_SUFFIXES if (folder / f"{name}{s}").exists()]
        pickle_path = folder / f"{name}.pickle"
        if not images or not pickle_path.exists():
            continue
        vectors = {g: folder / f"{name}_{g}.geojson" for g in GEOMETRY_FILES
                   if (folder / f"{name}_{g}.geojson").exists()}
        found.append({"name": name, "image": images[0], "bbox": read_bbox(pickle_path), "vectors": vectors})
    if not found:
        raise InputError(f"No pairs found in {root}.",
                         hint="Expected NAME/NAME.jpg (or .png/.tif), NAME/NAME.pickle and NAME/NAME_polygon|line|point"
                              ".geojson, as in the GeoLink example data.")
    return found


def prepare_pairs(root: os.PathLike, encoder, progress: Progress) -> List[dict]:
    """Pairs as the original converter sees them: every feature of the GeoJSON files, unclipped."""
    from ..osm.graph import build_graph
    from ..osm.read import read_osm

    samples = []
    pairs = find_pairs(root)
    for pair in progress.steps(pairs, len(pairs), "Building pair graphs"):
        paths = [str(pair["vectors"][g]) for g in GEOMETRY_FILES if g in pair["vectors"]]
        graph = build_graph(read_osm(paths, "EPSG:4326"), pair["bbox"], encoder) if paths else None
        samples.append({"name": pair["name"], "image": read_image(pair["image"]),
                        "graph": to_plain(graph) if graph is not None else None})
    return samples


def prepare_rasters(rasters: Sequence[str], osm: Sequence[str], bands: Sequence[int], tile_size: int,
                    tile_stride: Optional[int], text_encoder: str, progress: Progress) -> List[dict]:
    """Square tiles of each raster; with OSM, each tile's clipped features as its graph (None when it has none)."""
    from ..osm.window_graphs import WindowGraphs
    from ..raster.windows import window_grid

    samples = []
    for n, path in enumerate(rasters):
        sub = progress.sub(100.0 * n / len(rasters), 100.0 * (n + 1) / len(rasters))
        raster = RasterImage(str(path), tuple(bands), georeferenced=bool(osm))  # OSM needs a north-up CRS grid
        source = raster.source
        width, height = raster.size
        size = min(tile_size, width, height)
        windows = window_grid(width, height, size, tile_stride or size)
        graphs = WindowGraphs.from_files(list(osm), source.wkt, source.bounds, text_encoder) if osm else None
        for col, row in sub.steps(windows, len(windows), f"Tiling {Path(path).name}"):
            sample = {"name": f"{Path(path).stem}_{col}_{row}", "image": raster.read(col, row, size, size),
                      "graph": None}
            if graphs is not None:
                graph = graphs(source.window_bounds(col, row, size, size))
                sample["graph"] = to_plain(graph) if graph is not None else None
            samples.append(sample)
    return samples


def prepare(spec: DataSpec, cache_dir: Optional[os.PathLike], progress: Progress) -> List[dict]:
    """The prepared samples of `spec`, from the cache when it has them."""
    if not spec.pairs and not spec.rasters:
        raise InputError("Nothing to pretrain on.", hint=f"Give {opt('pairs', 'DIR')}, or {opt('raster', 'FILE...')} "
                                                         f"(with {opt('osm', 'FILE...')}).")
    if spec.osm and not spec.rasters:
        raise InputError(f"{opt('osm')} needs {opt('raster')}: OSM features are cut to the raster's tiles.")
    cache = Path(cache_dir) / f"pairs-{spec.key()}.pt" if cache_dir else None
    if cache and cache.exists():
        progress.log(f"Prepared pairs from cache {cache}")
        from ..safe_load import load_tensors

        return load_tensors(cache, "the prepared-pairs cache", error=InputError, option="cache_dir",
                            hint="Delete it to prepare the pairs again.")["samples"]
    samples = []
    if spec.pairs:
        from ..osm.text import get_text_encoder

        samples += prepare_pairs(spec.pairs, get_text_encoder(spec.text_encoder),
                                 progress.sub(0, 50 if spec.rasters else 100))
    if spec.rasters:
        samples += prepare_rasters(spec.rasters, spec.osm, spec.bands, spec.tile_size, spec.tile_stride,
                                   spec.text_encoder, progress.sub(50 if spec.pairs else 0, 100))
    if cache:
        from ..atomic import atomic_output

        with atomic_output(cache) as tmp:
            torch.save({"samples": samples, "spec": json.dumps(asdict(spec)), "stretch": json.dumps(STRETCH)}, tmp)
    return samples
