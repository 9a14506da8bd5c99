"""`geolink similar`: how alike every place of a raster is to clicked points or example polygons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..config import option
from ..inference.options import RasterOptions
from ..progress import Progress

HELP = """Map how similar every place of a raster is to a query: clicked points or example polygons.

The query is the mean GeoLink embedding at the --at points (X,Y in the raster's CRS, or in --at-crs),
or inside the --examples polygons; with --class-field, one query per class value. OUT.tif holds the
cosine similarity of each location's embedding to each query (one float band per query, -1 to 1,
NaN = nodata) at the raster's resolution: features at patch resolution, blended across windows,
interpolated bilinearly; a colour-ramp style OUT.qml is written beside it. --threshold T with
--polygons OUT.gpkg also writes the areas with similarity >= T as polygons. --embeddings E.tif
reuses the features 'geolink embed' wrote (same model, raster, OSM), so a new query costs no
encoding; without it the raster is encoded first."""


@dataclass
class Config(RasterOptions):
    out: str = option(flag="--out", required=True, metavar="SIM.tif", help="output similarity raster (GeoTIFF)")
    at: List[str] = option(default_factory=list, flag="--at", metavar="X,Y",
                           help="query point(s); several are averaged (e.g. --at 451200,4170950 --at 452000,4171100)")
    at_crs: Optional[str] = option(None, flag="--at-crs", metavar="CRS",
                                   help="CRS of the --at points, e.g. EPSG:4326 (default: the raster's)")
    examples: Optional[str] = option(None, flag="--examples", metavar="POLYGONS", role="input",
                                     help="vector file of example polygons (any CRS) instead of --at points")
    class_field: Optional[str] = option(None, flag="--class-field", metavar="FIELD",
                                        help="field of --examples naming each polygon's class: one band per class")
    threshold: Optional[float] = option(None, flag="--threshold", metavar="T",
                                        help="similarity from which a place matches (-1 to 1), with --polygons")
    polygons: Optional[str] = option(None, flag="--polygons", metavar="OUT.gpkg",
                                     help="write the matching areas (similarity >= --threshold) as polygons")
    embeddings: Optional[str] = option(None, flag="--embeddings", metavar="E.tif", role="input",
                                       help="features written by 'geolink embed' with the same model (skips encoding)")


def parse_points(texts: Sequence[str]) -> List[Tuple[float, float]]:
    from ..errors import InputError

    points = []
    for text in texts:
        parts = [p for p in str(text).replace(";", ",").split(",") if p.strip()]
        try:
            x, y = (float(p) for p in parts)
        except ValueError:
            raise InputError(f"--at takes a point as X,Y (two numbers), got {text!r}.") from None
        points.append((x, y))
    return points


def to_raster_crs(points: Sequence[Tuple[float, float]], crs: Optional[str], wkt: str) -> List[Tuple[float, float]]:
    """Points from `crs` (any GDAL-readable CRS; None: already the raster's) to the raster's CRS, x/y order."""
    from osgeo import osr

    from ..errors import InputError

    if not crs:
        return list(points)
    src, dst = osr.SpatialReference(), osr.SpatialReference(wkt=wkt)
    try:
        src.SetFromUserInput(crs)
    except RuntimeError:
        raise InputError(f"--at-crs: {crs!r} is not a CRS GDAL knows (try e.g. EPSG:4326).") from None
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    return [tuple(ct.TransformPoint(x, y)[:2]) for x, y in points]


def check_pixels(points, labels, source, bands) -> None:
    """A clear message for a point off the raster or on one of its nodata pixels."""
    import math

    from ..errors import InputError

    gt = source.geotransform
    for (x, y), label in zip(points, labels):
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(f"The point {label} cannot be placed in the raster's CRS (the transformation from "
                             "--at-crs gives no finite coordinates).", hint="Check --at-crs.")
        col, row = math.floor((x - gt[0]) / gt[1]), math.floor((y - gt[3]) / gt[5])
        if not (0 <= col < source.width and 0 <= row < source.height):
            b = source.bounds
            raise InputError(f"The point {label} is outside the raster (its extent: {b[0]:.2f}, {b[1]:.2f}, "
                             f"{b[2]:.2f}, {b[3]:.2f} in the raster's CRS).",
                             hint="Click on the raster, or give --at-crs when the point is in another CRS.")
        if not source.read(bands, col, row, 1, 1)[1][0, 0]:
            raise InputError(f"The point {label} is on nodata: the raster has no data there.",
                             hint="Choose a point where the image has data.")


def example_zones(path: str, class_field: Optional[str], emb, wkt: str) -> Tuple[list, object]:
    """(class names, [height, width] zone numbers 1..n on the embeddings' grid) from the example polygons:
    cells whose centre lies in a polygon; a class whose polygons hold no centre gets the cells they touch."""
    import numpy as np
    from osgeo import gdal, ogr, osr

    from ..errors import InputError

    gdal.UseExceptions()
    try:
        ds = ogr.Open(str(path))
    except RuntimeError:
        ds = None
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"Cannot read the example polygons {path}.", hint="Give a GeoPackage, GeoJSON or shapefile.")
    layer = ds.GetLayer(0)
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    if class_field and class_field not in names:
        raise InputError(f"The example polygons have no field {class_field!r}.",
                         hint=f"Fields: {', '.join(names) or 'none'}.")
    dst = osr.SpatialReference(wkt=wkt)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src = layer.GetSpatialRef()
    ct = None
    if src is not None:
        src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        ct = osr.CoordinateTransformation(src, dst)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("examples")
    out = mem.CreateLayer("examples", dst, ogr.wkbMultiPolygon)
    out.CreateField(ogr.FieldDefn("zone", ogr.OFTInteger))
    classes: list = []
    for feat in layer:
        geom = feat.GetGeometryRef()
        if geom is None or ogr.GT_Flatten(geom.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            continue
        name = str(feat.GetField(class_field)) if class_field else "examples"
        if name not in classes:
            classes.append(name)
        g = geom.Clone()
        if ct is not None:
            g.Transform(ct)
        f = ogr.Feature(out.GetLayerDefn())
        f.SetField(0, classes.index(name) + 1)
        f.SetGeometry(g)
        out.CreateFeature(f)
    if not classes:
        raise InputError(f"{path} holds no polygon.", hint="Draw example polygons around places like those to find.")
    order = sorted(classes) if class_field else classes

    def burn(all_touched: bool):
        grid = gdal.GetDriverByName("MEM").Create("", emb.width, emb.height, 1, gdal.GDT_UInt16)
        grid.SetGeoTransform(emb.ds.GetGeoTransform())
        grid.SetProjection(wkt)
        gdal.RasterizeLayer(grid, [1], out, options=["ATTRIBUTE=zone", f"ALL_TOUCHED={str(all_touched).upper()}"])
        z = grid.ReadAsArray().astype(np.int64)
        remap = np.zeros(len(classes) + 1, dtype=np.int64)
        remap[1:] = [order.index(c) + 1 for c in classes]
        return remap[z]

    zones = burn(False)
    missing = [i + 1 for i in range(len(order)) if not (zones == i + 1).any()]
    if missing:
        touched = burn(True)
        for k in missing:
            zones[(zones == 0) & (touched == k)] = k
    return order, zones


class SimilarityWriter:
    """Sink: similarity bands (NaN where invalid), a histogram for the style's range, and the threshold mask."""

    def __init__(self, out, mask=None, threshold: float = 0.0):
        import numpy as np

        self.out, self.mask, self.threshold = out, mask, threshold
        self.hist = np.zeros(400, dtype=np.int64)

    def __call__(self, row, values, valid):
        import numpy as np

        self.out.ds.WriteArray(np.where(valid[None], values, np.nan).astype(np.float32), 0, row)
        self.hist += np.histogram(values[0][valid], bins=len(self.hist), range=(-1, 1))[0]
        if self.mask is not None:
            self.mask.ds.WriteArray(((values >= self.threshold) & valid[None]).astype(np.uint8), 0, row)

    def percentile(self, q: float) -> float:
        import numpy as np

        total = self.hist.sum()
        if not total:
            return -1.0
        i = int(np.searchsorted(np.cumsum(self.hist), q / 100 * total))
        return -1 + 2 * i / len(self.hist)


def write_polygons(mask_path, target, names: Sequence[str], wkt: str, meta: dict) -> int:
    """The mask's areas (value 1 of band k: class names[k]) as polygons in a GeoPackage layer 'similar'."""
    import shapely
    from osgeo import gdal, ogr, osr

    from ..inference.zones import ground_area

    src = gdal.Open(str(mask_path))
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(target))
    srs = osr.SpatialReference(wkt=wkt)
    layer = ds.CreateLayer("similar", srs, ogr.wkbPolygon, options=["GEOMETRY_NAME=geom"])
    for name, kind in (("class", ogr.OFTString), ("area_m2", ogr.OFTReal)):
        layer.CreateField(ogr.FieldDefn(name, kind))
    written = 0
    for k, name in enumerate(names, start=1):
        band = src.GetRasterBand(k)
        mem = ogr.GetDriverByName("Memory").CreateDataSource("m")
        tmp = mem.CreateLayer("m", srs, ogr.wkbPolygon)
        tmp.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
        gdal.Polygonize(band, band, tmp, 0, [], callback=None)
        ds.StartTransaction()
        for f in tmp:
            g = f.GetGeometryRef()
            feat = ogr.Feature(layer.GetLayerDefn())
            feat.SetField("class", name)
            feat.SetField("area_m2", round(ground_area(shapely.from_wkb(bytes(g.ExportToWkb())), wkt), 2))
            feat.SetGeometry(g.Clone())
            layer.CreateFeature(feat)
            written += 1
        ds.CommitTransaction()
    ds.SetMetadata(meta)
    layer = ds = None
    return written


def run(config: Config, progress: Progress) -> dict:
    import contextlib
    import tempfile
    from pathlib import Path

    from ..atomic import OutputSet
    from ..config import paths_with_role
    from ..errors import InputError
    from ..explore.embeddings import embeddings_for
    from ..explore.vectors import cosine
    from ..raster.styles import SIMILARITY_RAMP, categorized_qml, palette, pseudocolor_qml, write_qml
    from ..raster.writer import geotiff, provenance

    if bool(config.at) == bool(config.examples):
        raise InputError("Give the query as --at X,Y (one or more points) or as --examples POLYGONS, not both.")
    if config.class_field and not config.examples:
        raise InputError("--class-field names a field of the --examples polygons; give --examples too.")
    if (config.threshold is None) != (not config.polygons):
        raise InputError("--threshold T and --polygons OUT.gpkg go together: the polygons are the areas with "
                         "similarity >= T.")
    if config.polygons and Path(config.polygons).stem == Path(config.out).stem:
        raise InputError("--polygons needs another name than --out: each gets a style (.qml) of the same name.")
    if config.threshold is not None and not -1 <= config.threshold <= 1:
        raise InputError(f"--threshold is a cosine similarity from -1 to 1, got {config.threshold}.")
    points = parse_points(config.at)
    with contextlib.ExitStack() as stack:
        outputs = stack.enter_context(OutputSet({"out": config.out, "polygons": config.polygons}, progress.log,
                                                paths_with_role(config, "input")))
        emb, src, bands, model_path, card = stack.enter_context(embeddings_for(config, config.embeddings,
                                                                               progress.sub(0, 85)))
        progress.update(85, "Query")
        if points:
            labels = [f"({t})" for t in config.at]
            local = to_raster_crs(points, config.at_crs, src.wkt)
            check_pixels(local, labels, src, bands)
            queries, names = emb.vectors_at(local).mean(0, keepdims=True), ["query"]
            counts = [len(points)]
        else:
            names, zones = example_zones(config.examples, config.class_field, emb, src.wkt)
            queries, counts = emb.class_means(zones, len(names))
            empty = [n for n, c in zip(names, counts) if c == 0]
            if empty:
                raise InputError(f"No example polygon of {', '.join(empty)} covers valid pixels of the raster.",
                                 hint="Draw the examples inside the raster's extent, on places with data.")
        meta = provenance("similar", model_path, card, src.path, config.osm,
                          {"queries": ";".join(names), "embeddings": Path(emb.path).name})
        out = stack.enter_context(geotiff(outputs.partial(config.out), src.width, src.height,
                                          len(names), "float32", src.geotransform, src.wkt, float("nan"), meta,
                                          level=1))  # an interactive query: fast over small
        for i, n in enumerate(names):
            out.ds.GetRasterBand(i + 1).SetDescription(f"similarity to {n}")
        mask = None
        if config.polygons:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="geolink-similar-")))
            mask = stack.enter_context(geotiff(tmp / "mask.tif", src.width, src.height, len(names), "uint8",
                                               src.geotransform, src.wkt))
        writer = SimilarityWriter(out, mask, config.threshold or 0.0)
        emb.map_to_pixels(src, bands, lambda v: cosine(v, queries), len(names), writer, progress.sub(86, 97),
                          "Similarity, strip")
        low, channels = min(writer.percentile(2), 0.99), emb.channels
        if mask is not None:
            mask.close()  # a new GeoTIFF's tiles are indexed on closing
            progress.update(97, "Polygons of the matching areas")
            polygons = write_polygons(tmp / "mask.tif", outputs.partial(config.polygons), names, src.wkt, meta)
        result = {"similarity": config.out,
                  "style": write_qml(outputs, config.out, pseudocolor_qml(low, 1.0, SIMILARITY_RAMP))}
        if config.polygons:
            classes = [{"name": n, "color": c} for n, c in zip(names, palette(len(names)))]
            result["polygons"] = config.polygons
            result["polygons_style"] = write_qml(outputs, config.polygons, categorized_qml("class", classes))
    figures = {"queries": names, "query_cells": [int(c) for c in counts], "channels": channels,
               "width": src.width, "height": src.height, "similarity_p2": round(low, 3),
               "similarity_p50": round(writer.percentile(50), 3)}
    if config.polygons:
        figures["polygons"] = polygons
    progress.update(100, "Done")
    return {"outputs": result, "figures": figures,
            "report": f"Similarity to {', '.join(names)} ({src.width} x {src.height} px) -> {config.out}"}
