"""How much of an OSM extract each built-in tag map's classes cover: the labels `finetune --osm-labels` would get.

The polygons are read and classed as for training (no edge margin), burnt on a grid of --pixel metres over the
extract's extent (smaller polygons win), and counted: area per class, share of the extent, the unlabelled share,
and the most frequent tags of the polygons no class matches.

    python tools/tag_map_coverage.py .cache/data/Helsinki.osm.pbf [--pixel 5] [--tag-map landcover ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))


def utm_wkt(lon: float, lat: float) -> str:
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG((32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1)
    return srs.ExportToWkt()


def coverage(path: str, tag_map_name: str, pixel: float) -> dict:
    import shapely

    from geolink.osm.format import POLYGON
    from geolink.osm.read import read_osm
    from geolink.osm.tagmap import load_tag_map, most_common_tags
    from geolink.training.osm_labels import read_osm_labels
    from geolink.training.rasterize import LabelBurner

    lon_lat = read_osm([path], "EPSG:4326")
    lon, lat = shapely.get_coordinates(shapely.centroid(shapely.union_all(
        shapely.envelope(lon_lat.geoms)))).ravel()
    wkt = utm_wkt(lon, lat)
    features = read_osm([path], wkt)
    polygons = features.take(np.flatnonzero(features.kinds == POLYGON))
    bounds = tuple(shapely.total_bounds(polygons.geoms).tolist())
    tag_map = load_tag_map(tag_map_name)
    labels, report = read_osm_labels([path], tag_map, wkt, bounds, margin=0)
    width, height = int(np.ceil((bounds[2] - bounds[0]) / pixel)), int(np.ceil((bounds[3] - bounds[1]) / pixel))
    ids = LabelBurner(labels, (bounds[0], pixel, 0, bounds[3], 0, -pixel), wkt).burn(0, 0, width, height)
    classes = np.where(ids > 0, labels.class_ids[np.clip(ids - 1, 0, None)], -1)
    total = ids.size * pixel * pixel / 1e6
    area = {n: float((classes == k).sum() * pixel * pixel / 1e6) for k, n in enumerate(labels.class_names)}
    unmatched = polygons.labels[tag_map.match_all(polygons.labels) < 0]
    return {"tag_map": tag_map_name, "extent_km2": total, "area_km2": area,
            "unlabelled_share": float((classes < 0).mean()), "no_polygons": report["classes_without_polygons"],
            "unmatched_polygons": len(unmatched), "polygons": len(polygons),
            "top_unmatched": most_common_tags(unmatched, 8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("osm", help="OSM file (.osm/.pbf or a vector file with OSM tags)")
    parser.add_argument("--pixel", type=float, default=5.0, help="grid cell in metres")
    parser.add_argument("--tag-map", action="append", default=[], help="tag maps (default: the built-in ones)")
    args = parser.parse_args()
    from geolink.osm.tagmap import BUILT_IN

    for name in args.tag_map or BUILT_IN:
        c = coverage(args.osm, name, args.pixel)
        print(f"{name}: extent {c['extent_km2']:.2f} km², {c['polygons']} polygons, "
              f"{c['unmatched_polygons']} matching no class; unlabelled {c['unlabelled_share']:.1%} of the extent")
        for cls, km2 in sorted(c["area_km2"].items(), key=lambda kv: -kv[1]):
            print(f"  {cls:<16} {km2:7.3f} km²  {km2 / c['extent_km2']:6.1%}")
        if c["no_polygons"]:
            print(f"  no polygon: {', '.join(c['no_polygons'])}")
        print("  most frequent tags of unmatched polygons: "
              + ", ".join(f"{t} ({n})" for t, n in c["top_unmatched"]))


if __name__ == "__main__":
    main()
