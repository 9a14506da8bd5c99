"""Maps without drawing, through qgis_process with the packaged plugin: OSM in, a styled land-cover map and zones
with their OSM review categories out, rendered to PNG.

1. `make package`'s zip is installed into a throw-away QGIS profile;
2. qgis_process runs geolink:trainfromosm on a crop of the real Sentinel-2 scene with the OSM-style layer
   (tests/data/osm/s2_virginia_osm_style.geojson) as its OSM layer, then geolink:classify and geolink:zones
   with "Compare with OSM" with the new model;
3. the outputs are loaded with the styles the backend wrote beside them and rendered:
   OUT/osm_labels.png = the imagery with the OSM polygons | the land-cover map | the zones' review categories.

    python tools/demo_osm_labels.py [--out demo/osm] [--model default] [--crop 1177,0,600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

SCENE = ROOT / ".cache" / "data" / "s2" / "s2_rgbn.tif"
OSM_STYLE = ROOT / "tests" / "data" / "osm" / "s2_virginia_osm_style.geojson"


def installed_profile(folder: Path) -> dict:
    """The packaged plugin installed into a profile under `folder`; the environment for qgis_process."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--out", str(folder / "dist")], check=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--install-zip",
                    str(folder / "dist" / "geolink_qgis.zip"), "--profile",
                    str(folder / "profiles" / "profiles" / "default")], check=True)
    return dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(folder / "profiles"), QT_QPA_PLATFORM="offscreen")


def qgis_process(env: dict, alg: str, **params) -> dict:
    args = ["qgis_process.bin", "--json", "run", f"geolink:{alg}", "--", *[f"{k}={v}" for k, v in params.items()]]
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{alg} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout[out.stdout.index("{"):])["results"]


def render(crop: Path, classes: Path, zones: Path, out: Path) -> Path:
    from demo import side_by_side
    from qgis.core import QgsFillSymbol, QgsRasterLayer, QgsVectorLayer
    from qgis_session import render_png

    image = QgsRasterLayer(str(crop), "Sentinel-2")
    osm = QgsVectorLayer(str(OSM_STYLE), "OSM-style layer", "ogr")
    osm.renderer().setSymbol(QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "255,255,0,255",
                                                         "outline_width": "0.5"}))
    landcover = QgsRasterLayer(str(classes), "Land cover")
    landcover.loadNamedStyle(str(classes.with_suffix(".qml")))
    review = QgsVectorLayer(str(zones), "Zones", "ogr")
    review.loadNamedStyle(str(zones.with_suffix(".qml")))
    extent = image.extent()
    panels = [render_png([osm, image], out / "a.png", width=600, extent=extent),
              render_png([landcover], out / "b.png", width=600, extent=extent),
              render_png([review, image], out / "c.png", width=600, extent=extent)]
    side_by_side(panels[0], panels[1], out / "ab.png")
    target = out / "osm_labels.png"
    side_by_side(str(out / "ab.png"), panels[2], target)
    for tmp in [*panels, str(out / "ab.png")]:
        Path(tmp).unlink()
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo" / "osm")
    parser.add_argument("--model", default="default", help="base model package")
    parser.add_argument("--crop", default="1177,0,600", help="column,row,size of the crop of the scene")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from osgeo import gdal

    x, y, size = (int(v) for v in args.crop.split(","))
    crop = args.out / "scene.tif"
    gdal.Translate(str(crop), str(SCENE), srcWin=[x, y, size, size])
    with tempfile.TemporaryDirectory(prefix="geolink-osm-demo-") as tmp:
        env = installed_profile(Path(tmp))
        model = args.out / "from-osm.safetensors"
        res = qgis_process(env, "trainfromosm", INPUT=crop, OSM=OSM_STYLE, TAG_MAP=0, MODEL=args.model,
                           OUTPUT=model)
        metrics = json.loads(res["METRICS"])
        print(f"trained from OSM: {metrics['scored_on']} OA {metrics['overall_accuracy']}, mIoU {metrics['mean_iou']}"
              f"; classes {metrics['classes']}; report {res['REPORT']}")
        classes = Path(qgis_process(env, "classify", INPUT=crop, MODEL=model,
                                    OUTPUT=args.out / "landcover.tif")["OUTPUT"])
        zones = Path(qgis_process(env, "zones", INPUT=crop, OSM=OSM_STYLE, MODEL=model, COMPARE_OSM="true",
                                  OUTPUT=args.out / "zones.gpkg")["OUTPUT"])
    from qgis_session import start_qgis

    app = start_qgis()
    print(f"rendered {render(crop, classes, zones, args.out)}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
