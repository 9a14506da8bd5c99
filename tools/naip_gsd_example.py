"""The NAIP sample of /work/shared (osm2graph_example, a US_ sample: a 0.6 m aerial JPEG and its bbox)
classified by a model with its GSD handling, rendered as one PNG: the image, the map at the model's GSD
(resampled, the default) and the map at the image's own resolution (--native, warned about).

    python tools/naip_gsd_example.py SHARED_DIR [--model default] [--png docs/naip_gsd.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
SAMPLE = "a702502933_US_21"


def georeference(shared: Path, out: Path) -> Path:
    """The sample's JPEG as a GeoTIFF in EPSG:4326 over its bbox (the pickle is read without unpickling code)."""
    from osgeo import gdal

    from geolink.pretraining.safe_pickle import read_bbox

    folder = shared / "geolink-examples" / "osm2graph_example" / SAMPLE
    west, south, east, north = read_bbox(folder / f"{SAMPLE}.pickle")
    gdal.UseExceptions()
    gdal.Translate(str(out), str(folder / f"{SAMPLE}.jpg"), format="GTiff", outputSRS="EPSG:4326",
                   outputBounds=[west, north, east, south])
    return out


def classify(raster: Path, model: str, out: Path, native: bool) -> tuple:
    """(class map, log lines, figures) of geolink classify."""
    from osgeo import gdal

    from geolink.progress import Progress
    from geolink.tasks import classify as task

    events = []
    result = task.run(task.Config(raster=str(raster), model=model, out=str(out), native=native, device="cpu"),
                      Progress(events.append))
    logs = [f"{e['level']}: {e['message']}" for e in events if e["event"] == "log"]
    return gdal.Open(str(out)).ReadAsArray(), logs, result["figures"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "naip_gsd.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from osgeo import gdal

    from geolink.model_store import resolve_model
    from geolink.models.card import read_card

    classes = read_card(resolve_model(args.model)).classes
    with tempfile.TemporaryDirectory() as tmp:
        raster = georeference(args.shared, Path(tmp) / f"{SAMPLE}.tif")
        rgb = gdal.Open(str(raster)).ReadAsArray().transpose(1, 2, 0)
        panels = [(f"NAIP {SAMPLE} (RGB)", rgb, None)]
        for native in (False, True):
            classes_map, logs, figures = classify(raster, args.model, Path(tmp) / f"native{native}.tif", native)
            for line in logs:
                print(line)
            title = (f"'{args.model}' at {figures['pixel_size_m']:.3g} m "
                     + ("(--native: warned)" if native else f"(resampled to the card's {figures['model_gsd_m']:g} m)"))
            panels.append((title, classes_map, figures))
    cmap = ListedColormap([c["color"] for c in classes])
    fig, axes = plt.subplots(1, 3, figsize=(15, 6.4), dpi=100)
    for ax, (title, data, _) in zip(axes, panels):
        if data.ndim == 3:
            ax.imshow(data)
        else:
            ax.imshow(data, cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, interpolation="nearest",
                      extent=(0, rgb.shape[1], rgb.shape[0], 0))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c["color"]) for c in classes]
    fig.legend(handles, [c["name"] for c in classes], loc="lower center", ncol=len(classes), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(args.png)
    print(f"written: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
