"""Embedding rasters written by `geolink embed`: opened and checked against the model and the raster, queried
at points and inside polygons, sampled, and mapped strip by strip to rasters at the image's resolution.

`similar` and `cluster` read features from such a raster: given with --embeddings, or written first by one
pass of `geolink embed` (the streaming engine: windows encoded, blended, with OSM when given).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, ModelError
from ..progress import Progress
from .vectors import linear_matrix, source_span, upsample

# scores(vectors [N, C] float32, all finite) -> [N, K]
Scores = Callable[[np.ndarray], np.ndarray]
# sink(first output row, values [K, rows, width] float32, valid [rows, width] bool): the engine's Sink
Sink = Callable[[int, np.ndarray, np.ndarray], None]


def model_input_source(options, card):
    """The raster as the model (its ModelCard) sees it: extent, ground sample distance, as inference.job.prepare
    opens it."""
    from ..raster.source import Source, parse_extent

    gsd = None if options.native else (options.gsd or card.gsd)
    return Source(options.raster, parse_extent(options.extent), gsd)


@dataclass
class Embeddings:
    """An open `geolink embed` output: one float32 band per feature, one pixel per patch, NaN = nodata."""

    path: str
    ds: object
    patch: int
    meta: dict

    @classmethod
    def open(cls, path: str) -> Embeddings:
        from osgeo import gdal

        gdal.UseExceptions()
        if not Path(path).exists():
            raise InputError(f"Embeddings not found: {path}")
        try:
            ds = gdal.Open(str(path))
        except RuntimeError as exc:
            raise InputError(f"Cannot read the embeddings {Path(path).name}: {str(exc).splitlines()[0]}") from None
        meta = ds.GetMetadata() or {}
        if meta.get("GEOLINK_TASK") != "embed" or not meta.get("GEOLINK_PATCH_SIZE"):
            raise InputError(f"{Path(path).name} was not written by 'geolink embed' (it has no GeoLink "
                             "embedding metadata).",
                             hint="Give the .tif that 'geolink embed --out' wrote, not its PCA preview.")
        return cls(str(path), ds, int(meta["GEOLINK_PATCH_SIZE"]), meta)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def width(self) -> int:
        return self.ds.RasterXSize

    @property
    def height(self) -> int:
        return self.ds.RasterYSize

    @property
    def channels(self) -> int:
        return self.ds.RasterCount

    def check_model(self, model_path: Path) -> None:
        """Refuse embeddings another model (or another version of its file) made."""
        from ..model_store import sha256_of

        if self.meta.get("GEOLINK_MODEL_SHA256") != sha256_of(model_path):
            made_by, chosen = self.meta.get("GEOLINK_MODEL", "?"), Path(model_path).stem
            who = (f"another version of the model {chosen!r} (its file has changed since)" if made_by == chosen
                   else f"the model {made_by!r}, not by {chosen!r} (the model files differ)")
            raise ModelError(f"The embeddings {self.name} were made by {who}.",
                             hint="Choose the model that made them, or leave out --embeddings to compute new ones.")

    def check_osm(self, osm: Sequence[str]) -> None:
        """Embeddings made without OSM cannot stand in for fused ones, and the other way round."""
        had = self.meta.get("GEOLINK_OSM", "").startswith("none")
        if bool(osm) == had:
            made = "from the image alone" if had else f"with OSM ({self.meta.get('GEOLINK_OSM')})"
            raise InputError(f"The embeddings {self.name} were made {made}, but --osm "
                             f"{'was' if osm else 'was not'} given.",
                             hint="Give the same OSM files as to 'geolink embed', or leave out --embeddings.")

    def check_grid(self, source) -> None:
        """The embeddings must lie on `source`'s grid, `patch` times coarser."""
        gt, sgt = self.ds.GetGeoTransform(), source.geotransform
        px = sgt[1] * self.patch
        same = (math.isclose(gt[0], sgt[0], abs_tol=abs(sgt[1]) * 0.01)
                and math.isclose(gt[3], sgt[3], abs_tol=abs(sgt[5]) * 0.01)
                and math.isclose(gt[1], px, rel_tol=1e-4)
                and (self.width, self.height) == (math.ceil(source.width / self.patch),
                                                  math.ceil(source.height / self.patch)))
        if not same:
            raise InputError(f"The embeddings {self.name} do not cover {Path(source.path).name} on the grid "
                             f"this model processes it at ({source.width} x {source.height} px of "
                             f"{sgt[1]:g}).",
                             hint="Use the same raster, --extent and --gsd as for 'geolink embed'.")

    # ------------------------------------------------------------ reading vectors

    def read(self, row: int, rows: int) -> np.ndarray:
        """[C, rows, width] features of embedding rows [row, row + rows)."""
        return self.ds.ReadAsArray(0, row, self.width, rows).reshape(self.channels, rows, self.width)

    def vectors_at(self, points: Sequence[Tuple[float, float]]) -> np.ndarray:
        """[N, C] features of the cells holding points in the raster's CRS (the caller checks that the points are
        on valid pixels of the raster: their cells then have features)."""
        gt = self.ds.GetGeoTransform()
        out = []
        for x, y in points:
            col = min(max(math.floor((x - gt[0]) / gt[1]), 0), self.width - 1)
            row = min(max(math.floor((y - gt[3]) / gt[5]), 0), self.height - 1)
            out.append(self.ds.ReadAsArray(col, row, 1, 1).reshape(-1))
        return np.stack(out).astype(np.float32)

    def class_means(self, zones: np.ndarray, n: int, rows: int = 64) -> Tuple[np.ndarray, np.ndarray]:
        """([n, C] mean feature, [n] count) of the cells where `zones` [height, width] is 1..n (0: none)."""
        sums = np.zeros((n, self.channels))
        counts = np.zeros(n, dtype=np.int64)
        for r0 in range(0, self.height, rows):
            z = zones[r0:r0 + rows]
            if not z.any():
                continue
            block = self.read(r0, len(z)).reshape(self.channels, -1).T
            zf = z.reshape(-1)
            ok = (zf > 0) & np.isfinite(block).all(1)
            for k in np.unique(zf[ok]):
                members = block[ok & (zf == k)]
                sums[k - 1] += members.sum(0)
                counts[k - 1] += len(members)
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), counts

    def sample(self, n: int, seed: int, block: int = 16) -> np.ndarray:
        """Up to n feature vectors [m, C] (nodata left out) from blocks of block x block cells (windows of
        block * patch pixels) drawn at random without replacement: the k-means fit reads a sample, not the raster."""
        rng = np.random.default_rng(seed)
        cells = [(r, c) for r in range(0, self.height, block) for c in range(0, self.width, block)]
        order = rng.permutation(len(cells))
        picked, total = [], 0
        for i in order:
            r, c = cells[i]
            h, w = min(block, self.height - r), min(block, self.width - c)
            v = self.ds.ReadAsArray(c, r, w, h).reshape(self.channels, -1).T
            v = v[np.isfinite(v).all(1)]
            picked.append(v)
            total += len(v)
            if total >= n:
                break
        vectors = np.concatenate(picked) if picked else np.zeros((0, self.channels), np.float32)
        if len(vectors) > n:
            vectors = vectors[np.sort(rng.choice(len(vectors), n, replace=False))]
        return vectors.astype(np.float32)

    # ------------------------------------------------------------ mapping to the image's resolution

    def map_to_pixels(self, source, bands: Sequence[int], scores: Scores, channels: int, sink: Sink,
                      progress: Progress, message: str, strip: int = 256) -> None:
        """Score every cell, upsample the scores bilinearly to `source`'s pixels and hand them to `sink` strip by
        strip, invalid where the raster is nodata (memory flat in the raster's size)."""
        f, width, height = self.patch, source.width, source.height
        cols = linear_matrix(0, width, self.width, f, 0, self.width)
        starts = range(0, height, strip)
        for r0 in progress.steps(starts, len(starts), message):
            r1 = min(r0 + strip, height)
            lo, hi = source_span(r0, r1, self.height, f)
            feats = self.read(lo, hi - lo).reshape(self.channels, -1).T
            ok = np.isfinite(feats).all(1)
            cell = np.zeros((len(feats), channels), dtype=np.float32)
            if ok.any():
                cell[ok] = scores(feats[ok])
            cell = cell.T.reshape(channels, hi - lo, self.width)
            values, valid = upsample(cell, ok.reshape(hi - lo, self.width),
                                     linear_matrix(r0, r1, self.height, f, lo, hi), cols)
            if bands:
                valid &= source.read(bands, 0, r0, width, r1 - r0)[1]
            sink(r0, values, valid)


def all_valid(source, bands: Sequence[int]) -> bool:
    """Whether every pixel of these bands is valid by declaration (no nodata value or mask; integers)."""
    from osgeo import gdal

    return all(source.ds.GetRasterBand(b).GetMaskFlags() == gdal.GMF_ALL_VALID
               and source.ds.GetRasterBand(b).DataType not in (gdal.GDT_Float32, gdal.GDT_Float64) for b in bands)


@contextlib.contextmanager
def embeddings_for(options, embeddings: Optional[str], progress: Progress) -> Iterator[tuple]:
    """(Embeddings, Source, bands, model path, ModelCard) for a task's raster options: the given --embeddings,
    checked against the model, OSM and grid, or ones computed by one pass of `geolink embed` into a temporary folder
    (removed on leaving)."""
    import tempfile

    from ..inference.options import RasterOptions
    from ..model_store import resolve_model
    from ..models.card import ModelCard, read_card
    from ..raster.source import parse_band_list
    from ..tasks import embed

    model_path = resolve_model(options.model or "default")
    card = read_card(model_path) if model_path.suffix == ".safetensors" else ModelCard()
    source = model_input_source(options, card)
    bands = source.choose_bands(card.bands, parse_band_list(options.bands))
    with tempfile.TemporaryDirectory(prefix="geolink-embeddings-") as tmp:
        if embeddings:
            emb = Embeddings.open(embeddings)
            emb.check_model(model_path)
            emb.check_osm(options.osm)
        else:
            fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(RasterOptions)}
            out = Path(tmp) / "embeddings.tif"
            embed.run(embed.Config(**fields, out=str(out), preview=str(Path(tmp) / "preview.tif")),
                      progress.sub(0, 80))
            emb = Embeddings.open(str(out))
        emb.check_grid(source)
        yield emb, source, bands, model_path, card
        emb.ds = None

