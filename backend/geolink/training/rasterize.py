"""Burning labelled polygons onto windows of the model's pixel grid.

A window gets an int32 array of polygon numbers (1 + index into the LabelSet, 0 = unlabelled), so
the caller can map them to classes and to the train / validation split. Polygons are burnt
largest first: the smaller polygon wins where polygons overlap (see labels.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .labels import LabelSet


class LabelBurner:
    """Holds the polygons as an in-memory OGR layer and rasterises any window of the grid on demand."""

    def __init__(self, labels: LabelSet, geotransform: Sequence[float], srs_wkt: str):
        from osgeo import gdal, ogr, osr

        gdal.UseExceptions()
        self.geotransform = tuple(geotransform)
        self.srs_wkt = srs_wkt
        srs = osr.SpatialReference()
        srs.ImportFromWkt(srs_wkt)
        self._ds = ogr.GetDriverByName("Memory").CreateDataSource("labels")
        self._layer = self._ds.CreateLayer("labels", srs, ogr.wkbMultiPolygon)
        self._layer.CreateField(ogr.FieldDefn("pid", ogr.OFTInteger))
        for i in np.argsort(-labels.areas, kind="stable"):
            feat = ogr.Feature(self._layer.GetLayerDefn())
            feat.SetField("pid", int(i) + 1)
            feat.SetGeometry(ogr.CreateGeometryFromWkb(labels.geometries[i]))
            self._layer.CreateFeature(feat)

    def burn(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """[height, width] polygon numbers of the window whose top-left pixel is (x, y); pixel centres rule."""
        from osgeo import gdal

        x0, dx, rx, y0, ry, dy = self.geotransform
        rds = gdal.GetDriverByName("MEM").Create("", int(width), int(height), 1, gdal.GDT_Int32)
        rds.SetGeoTransform((x0 + x * dx + y * rx, dx, rx, y0 + x * ry + y * dy, ry, dy))
        rds.SetProjection(self.srs_wkt)
        gdal.RasterizeLayer(rds, [1], self._layer, options=["ATTRIBUTE=pid"])
        return rds.GetRasterBand(1).ReadAsArray()


def pixel_boxes(labels: LabelSet, geotransform: Sequence[float]) -> np.ndarray:
    """[N, 4] (col0, row0, col1, row1) pixel bounding box of each polygon on a north-up grid (may exceed it)."""
    from osgeo import ogr

    x0, dx, _, y0, _, dy = geotransform
    boxes = []
    for wkb in labels.geometries:
        xmin, xmax, ymin, ymax = ogr.CreateGeometryFromWkb(wkb).GetEnvelope()
        cols = sorted(((xmin - x0) / dx, (xmax - x0) / dx))
        rows = sorted(((ymax - y0) / dy, (ymin - y0) / dy))
        boxes.append([np.floor(cols[0]), np.floor(rows[0]), np.ceil(cols[1]), np.ceil(rows[1])])
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def overlap_conflicts(labels: LabelSet) -> int:
    """How many pairs of polygons of different classes overlap with a positive area."""
    from osgeo import ogr

    geoms = [ogr.CreateGeometryFromWkb(g) for g in labels.geometries]
    envs = np.array([g.GetEnvelope() for g in geoms])  # xmin, xmax, ymin, ymax
    conflicts = 0
    for i in range(len(geoms)):
        near = ((envs[i + 1:, 0] < envs[i, 1]) & (envs[i + 1:, 1] > envs[i, 0]) &
                (envs[i + 1:, 2] < envs[i, 3]) & (envs[i + 1:, 3] > envs[i, 2]))
        for j in np.flatnonzero(near) + i + 1:
            if labels.class_ids[i] != labels.class_ids[j] and geoms[i].Intersection(geoms[j]).GetArea() > 0:
                conflicts += 1
    return conflicts
