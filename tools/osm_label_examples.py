"""The labels OSM gives real imagery: the paper's example pairs (../shared/geolink-examples/osm2graph_example),
each image georeferenced from its bbox (read with the safe unpickler), its OSM classed by both built-in tag maps
with the training rules (edge margin, smaller polygons win), drawn beside the image.

    python tools/osm_label_examples.py OUT_DIR [--shared ../shared] [--margin METRES]

Writes OUT_DIR/<sample>.png (image | landcover labels | urban-function labels; white = no label) and prints each
sample's labelled share per class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))


def georeference(sample: Path, out: Path) -> Path:
    """The sample's JPEG as a GeoTIFF in EPSG:4326 over the bbox of its pickle."""
    from osgeo import gdal

    from geolink.pretraining.safe_pickle import read_bbox

    west, south, east, north = read_bbox(sample / f"{sample.name}.pickle")
    gdal.Translate(str(out), str(sample / f"{sample.name}.jpg"), outputSRS="EPSG:4326",
                   outputBounds=[west, north, east, south])
    return out


def label_image(raster: Path, osm: list, tag_map_name: str, margin: Optional[float]):
    """(RGB label image, {class: share of the image}) or (None, reason) when the OSM gives no labels."""
    from osgeo import gdal

    from geolink.errors import InputError
    from geolink.osm.tagmap import load_tag_map
    from geolink.raster.crs import metres_per_unit
    from geolink.training.osm_labels import edge_margin, read_osm_labels
    from geolink.training.rasterize import LabelBurner

    ds = gdal.Open(str(raster))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    margin = edge_margin(margin, abs(dx) * metres_per_unit(ds.GetProjection(), y0)[0])  # finetune's default
    bounds = (x0, y0 + dy * ds.RasterYSize, x0 + dx * ds.RasterXSize, y0)
    try:
        labels, _ = read_osm_labels(osm, load_tag_map(tag_map_name), ds.GetProjection(), bounds, margin)
    except InputError as exc:
        return None, exc.message
    ids = LabelBurner(labels, ds.GetGeoTransform(), ds.GetProjection()).burn(0, 0, ds.RasterXSize, ds.RasterYSize)
    classes = np.where(ids > 0, labels.class_ids[np.clip(ids - 1, 0, None)], -1)
    palette = np.array([[int(c["color"][i:i + 2], 16) for i in (1, 3, 5)] for c in labels.classes] + [[255] * 3],
                       dtype=np.uint8)
    shares = {n: float((classes == k).mean()) for k, n in enumerate(labels.class_names)}
    return palette[classes], shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--margin", type=float, default=None, help="edge margin (default: finetune's)")
    args = parser.parse_args()
    from osgeo import gdal
    from PIL import Image, ImageDraw

    args.out.mkdir(parents=True, exist_ok=True)
    for sample in sorted((args.shared / "geolink-examples" / "osm2graph_example").iterdir()):
        raster = georeference(sample, args.out / f"{sample.name}.tif")
        image = gdal.Open(str(raster)).ReadAsArray()[:3].transpose(1, 2, 0).astype(np.uint8)
        osm = [str(p) for p in sorted(sample.glob("*.geojson"))]
        panels, lines = [image], []
        for name in ("landcover", "urban-function"):
            rgb, shares = label_image(raster, osm, name, args.margin)
            if rgb is None:
                rgb = np.full_like(image, 255)
                lines.append(f"  {name}: no labels: {shares}")
            else:
                lines.append(f"  {name}: " + ", ".join(f"{n} {s:.0%}" for n, s in shares.items())
                             + f"; unlabelled {1 - sum(shares.values()):.0%}")
            panels.append(rgb)
        gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
        canvas = Image.fromarray(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1))
        ImageDraw.Draw(canvas).text((4, 4), sample.name, fill=(255, 255, 0))
        canvas.save(args.out / f"{sample.name}.png")
        print(sample.name, f"({image.shape[1]} x {image.shape[0]} px)")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
