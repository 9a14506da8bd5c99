"""Screenshot of the "Find similar" map tool driven with the mouse in the real QGIS window.

    python tools/screenshot_similar.py [--out docs/find_similar.png] [--model default] [--size 480]

Runs `qgis` on a virtual screen (xvfb-run) with the plugin installed from a fresh zip (screenshot.py's
run_in_qgis), loads a crop of the real Sentinel-2 scene, picks "Find similar" on the GeoLink toolbar and
clicks the map with the mouse: a click on marsh, then a shift-click on another marsh, waiting for the
similarity layer after each, and grabs the screen.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from screenshot import PRELUDE, crop, ready, screenshot, screenshot_parser  # noqa: E402

STARTUP = PRELUDE + r'''
from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, plugins


def grab():
    QApplication.processEvents()
    QApplication.primaryScreen().grabWindow(0).save(CFG["out"], "PNG")
    log("saved " + CFG["out"])
    os._exit(0)


def start():
    win = iface.mainWindow()
    win.setGeometry(0, 0, CFG["screen"][0], CFG["screen"][1])
    layer = QgsRasterLayer(CFG["raster"], "Sentinel-2 crop")
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)  # B4, B3, B2: true colour
    for band, setter in ((3, renderer.setRedContrastEnhancement), (2, renderer.setGreenContrastEnhancement),
                         (1, renderer.setBlueContrastEnhancement)):
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        low, high = layer.dataProvider().cumulativeCut(band, 0.02, 0.98)
        ce.setMinimumValue(low)
        ce.setMaximumValue(high)
        setter(ce)
    layer.setRenderer(renderer)
    QgsProject.instance().addMapLayer(layer)
    QgsProject.instance().setCrs(layer.crs())  # else the project takes the layer's CRS only after the clicks
    canvas = iface.mapCanvas()
    canvas.setExtent(layer.extent())
    canvas.refresh()
    plugin = plugins["geolink_qgis"]
    plugin.find_action.trigger()
    iface.setActiveLayer(layer)
    ext, clicks = layer.extent(), list(CFG["clicks"])

    def next_click():
        tool = plugin.similar_tool
        if tool.task is not None:
            QTimer.singleShot(500, next_click)
            return
        if tool.last_error:
            log("find similar: " + tool.last_error)
        if not clicks:
            log(f"find similar: {len(tool.points)} points shown")
            iface.layerTreeView().expandAll()
            QTimer.singleShot(3000, grab)
            return
        fx, fy = clicks.pop(0)
        at = canvas.getCoordinateTransform().transform(QgsPointXY(ext.xMinimum() + fx * ext.width(),
                                                                  ext.yMaximum() - fy * ext.height()))
        shift = Qt.KeyboardModifier.ShiftModifier if tool.points else Qt.KeyboardModifier.NoModifier
        pos = QPoint(int(at.x()), int(at.y()))
        QTest.mouseMove(canvas.viewport(), pos)
        QTest.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, shift, pos, 800)  # no double click
        QTest.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, shift, pos, 100)
        log(f"clicked at {fx}, {fy}: {len(tool.points)} point(s)")
        QTimer.singleShot(500, next_click)
    QTimer.singleShot(2000, next_click)


QTimer.singleShot(3000, start)
QTimer.singleShot(CFG["timeout_ms"], grab)
'''


def main() -> int:
    args = screenshot_parser(__doc__.splitlines()[0], "find_similar.png", 600,
                             "seconds before the screen is grabbed regardless").parse_args()
    if not ready(args.data):
        return 1
    work = Path(tempfile.mkdtemp(prefix="geolink-screenshot-similar-"))
    raster = crop(args.data / "s2" / "s2_rgbn.tif", work / "s2_crop.tif", args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {"raster": str(raster), "out": str(args.out.resolve()), "model": args.model,
              "clicks": [(0.62, 0.21), (0.42, 0.77)]}  # marsh, then another marsh
    return 0 if screenshot(STARTUP, config, work, args.timeout, args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
