"""Map-ready GeoTIFFs: tiled, compressed, with nodata, a colour table and class names, and provenance."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import numpy as np

from .. import __version__
from ..model_store import sha256_of
from .styles import hex_to_rgb


@contextlib.contextmanager
def geotiff(path: Path, width: int, height: int, bands: int, dtype: str, geotransform: Sequence[float],
            wkt: str, nodata: Optional[float] = None, metadata: Optional[Dict[str, str]] = None,
            block_rows: int = 256, level: int = 6) -> Iterator:
    """An empty tiled, DEFLATE-compressed GeoTIFF to fill strip by strip (`dtype`: a numpy name).

    Yields a handle whose `.ds` is the only reference to the dataset: keep none elsewhere, so that
    leaving the block closes the file (also on error or cancel) before the atomic writer around it
    renames or deletes it and its .aux.xml. Many-band outputs take short blocks (`block_rows`) so the
    partly written row of blocks that GDAL keeps in its cache stays small. `level`: the DEFLATE level (1 writes
    a float raster about 2.5 times faster than 6, 10 % larger)."""
    from osgeo import gdal, gdal_array

    gdal.UseExceptions()
    gdt = gdal_array.NumericTypeCodeToGDALTypeCode(np.dtype(dtype))
    predictor = "3" if np.dtype(dtype).kind == "f" else "2"
    options = ["TILED=YES", "BLOCKXSIZE=256", f"BLOCKYSIZE={block_rows}", "COMPRESS=DEFLATE", f"ZLEVEL={level}",
               f"PREDICTOR={predictor}", "BIGTIFF=IF_SAFER", f"INTERLEAVE={'BAND' if bands > 4 else 'PIXEL'}"]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), width, height, bands, gdt, options=options)
    ds.SetGeoTransform(list(geotransform))
    ds.SetProjection(wkt)
    if nodata is not None:
        for b in range(1, bands + 1):
            ds.GetRasterBand(b).SetNoDataValue(nodata)
    if metadata:
        ds.SetMetadata({k: str(v) for k, v in metadata.items()})
    handle = Handle(ds)
    del ds
    try:
        yield handle
    finally:
        handle.ds = None


class Handle:
    """Holds an open GDAL dataset; dropping `ds` closes it."""

    def __init__(self, ds):
        self.ds = ds


def set_classes(band, classes: Sequence[Dict[str, str]], nodata: Optional[int] = None) -> None:
    """Colour table (nodata transparent) and category names, so GIS software shows a named legend."""
    from osgeo import gdal

    table = gdal.ColorTable()
    for i, c in enumerate(classes):
        table.SetColorEntry(i, (*hex_to_rgb(c["color"]), 255))
    if nodata is not None:
        table.SetColorEntry(int(nodata), (0, 0, 0, 0))
    band.SetRasterColorTable(table)
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetRasterCategoryNames([c["name"] for c in classes])
    band.SetDescription("class")


def provenance(task: str, model_path: Path, card, raster: str, osm: Sequence[str] = (),
               extra: Optional[Dict[str, object]] = None, osm_max_nodes: int = 0) -> Dict[str, str]:
    """GEOLINK_* metadata items: what made the output (model and its hash, inputs, OSM files and dates, the
    cap on fused OSM entities when one was set)."""
    osm_items = []
    for p in osm:
        try:
            stamp = datetime.datetime.fromtimestamp(Path(p).stat().st_mtime, datetime.timezone.utc)
            osm_items.append(f"{Path(p).name} (file date {stamp:%Y-%m-%d})")
        except OSError:
            osm_items.append(Path(p).name)
    meta = {"GEOLINK_TASK": task,
            "GEOLINK_MODEL": Path(model_path).stem,
            "GEOLINK_MODEL_SHA256": sha256_of(model_path),
            "GEOLINK_MODEL_ARCHITECTURE": str(card.architecture or ""),
            "GEOLINK_INPUT": Path(raster).name,
            "GEOLINK_OSM": "; ".join(osm_items) or "none (image only)",
            "GEOLINK_VERSION": __version__,
            "GEOLINK_CREATED": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "TIFFTAG_SOFTWARE": f"GeoLink {__version__}"}
    if osm and osm_max_nodes:
        meta["GEOLINK_OSM_MAX_NODES"] = str(osm_max_nodes)
    for k, v in (extra or {}).items():
        meta[f"GEOLINK_{k.upper()}"] = str(v)
    return meta
