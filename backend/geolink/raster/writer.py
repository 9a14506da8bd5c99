"""Map-ready GeoTIFFs: tiled, compressed, with nodata, a colour table and class names, and provenance."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..model_store import sha256_of
from .styles import hex_to_rgb


@contextlib.contextmanager
def gdal_problems() -> Iterator[List[str]]:
    """Collect GDAL's errors (and its "Unable to save" warnings) in a list instead of raising or printing
    them: a failed write is often reported only when a dataset is flushed or closed, where an exception
    would be lost ("Exception ignored in delete_Dataset")."""
    from osgeo import gdal

    problems: List[str] = []

    def handler(level, code, message):
        if level >= gdal.CE_Failure or str(message).startswith("Unable to save"):
            problems.append(str(message).strip())

    switched = _exceptions_off()
    gdal.PushErrorHandler(handler)
    try:
        yield problems
    finally:
        gdal.PopErrorHandler()
        for module in reversed(switched):
            module.UseExceptions()


def _exceptions_off() -> list:
    """Turn off the exceptions of gdal, ogr and osr, in the order their bindings require (the last turned on
    first); returns the modules switched, in that order."""
    from osgeo import gdal, ogr, osr

    on = [m for m in (gdal, ogr, osr) if m.GetUseExceptions()]
    switched = []
    for _ in range(len(on)):
        for module in on:
            if module not in switched:
                try:
                    module.DontUseExceptions()
                    switched.append(module)
                except RuntimeError:  # another module's exceptions were turned on after it
                    pass
    return switched


@contextlib.contextmanager
def geotiff(path: Path, width: int, height: int, bands: int, dtype: str, geotransform: Sequence[float],
            wkt: str, nodata: Optional[float] = None, metadata: Optional[Dict[str, str]] = None,
            block_rows: int = 256, level: int = 6) -> Iterator:
    """An empty tiled, DEFLATE-compressed GeoTIFF to fill strip by strip (`dtype`: a numpy name).

    Yields a handle whose `.ds` is the only reference to the dataset: keep none elsewhere. Leaving the
    block normally closes the file and checks it (write errors reported at flush or close, then the file
    reopened and its last blocks read), raising OutputError when it is not whole, before the atomic writer
    around it renames it; leaving on an error just closes it. Many-band outputs take short blocks
    (`block_rows`) so the partly written row of blocks that GDAL keeps in its cache stays small. `level`: the
    DEFLATE level (1 writes a float raster about 2.5 times faster than 6, 10 % larger)."""
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
    handle = Handle(ds, Path(path))
    del ds
    try:
        yield handle
    except BaseException:
        with gdal_problems():
            handle.ds = None
        raise
    handle.close()


class Handle:
    """Holds an open GDAL dataset; `close()` closes it and checks that the file is whole."""

    def __init__(self, ds, path: Optional[Path] = None):
        self.ds, self.path = ds, path

    def close(self) -> None:
        with gdal_problems() as problems:
            if self.ds is not None:
                self.ds.FlushCache()
            self.ds = None
        if not problems and self.path is not None:
            problems = unreadable(self.path)
        if problems:
            raise write_failure(self.path, problems)


def unreadable(path: Path) -> List[str]:
    """GDAL's complaints when reopening a written raster and reading the last block of every band."""
    from osgeo import gdal

    with gdal_problems() as problems:
        ds = gdal.Open(str(path))
        if ds is None:
            return problems or [f"GDAL cannot open {path.name}"]
        for b in range(1, ds.RasterCount + 1):
            band = ds.GetRasterBand(b)
            bx, by = band.GetBlockSize()
            x, y = (ds.RasterXSize - 1) // bx * bx, (ds.RasterYSize - 1) // by * by
            if band.ReadRaster(x, y, ds.RasterXSize - x, ds.RasterYSize - y) is None:
                problems.append(f"band {b} cannot be read")
                break
        ds = None
    return problems


def write_failure(path: Path, problems: Sequence[str]) -> Exception:
    """The OutputError for a file GDAL failed to write: disk full and read-only said plainly."""
    import errno

    from ..atomic import explain_write_error, final_name, free_bytes
    from ..errors import OutputError

    text = "; ".join(dict.fromkeys(problems))
    plain = explain_write_error(RuntimeError(text), path)
    if plain is None and (free_bytes(Path(path).parent) or 0) < 2**20:  # GDAL often says only "Unable to save"
        plain = explain_write_error(OSError(errno.ENOSPC, text), path)
    return plain or OutputError(f"Writing {final_name(path)} failed: {problems[0]}",
                                hint="Check the output folder (free space, permissions) and try again.")


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
