"""Render a screenshot of the real QGIS window with the GeoLink dialog and its results over real data.

    python tools/screenshot.py [--out docs/screenshot.png] [--model default] [--size 480]
    python tools/screenshot.py --find-similar --out docs/find_similar.png   # the "Find similar" map tool

Runs the `qgis` desktop application on a virtual screen (xvfb-run), with a throw-away
profile where the plugin is installed from `make package`'s zip. A startup script loads a
crop of the real Sentinel-2 scene (`make data`), runs "Classify land cover" from the GeoLink
dialog (the same path a user clicks), waits for the styled results to land in their group,
and grabs the screen. With --find-similar it instead picks the "Find similar" tool on the GeoLink toolbar
and clicks the map with the mouse (a click on marsh, then a shift-click on another marsh), waiting for
the similarity layer after each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import package  # noqa: E402

SCREEN = (1600, 1000)

STARTUP = r'''
import json, os
from qgis.core import (QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsPointXY, QgsProject, QgsRasterLayer,
                       QgsRectangle)
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QLineEdit
from qgis.utils import iface, plugins

CFG = json.loads(__CONFIG__)


def log(msg):
    with open(CFG["log"], "a", encoding="utf-8") as f:
        f.write(msg + "\n")


def grab():
    QApplication.processEvents()
    pixmap = QApplication.primaryScreen().grabWindow(0)
    pixmap.save(CFG["out"], "PNG")
    log("saved " + CFG["out"])
    os._exit(0)


def finished(ok, results, error):
    log(f"run finished ok={ok} error={error!r}")
    root = QgsProject.instance().layerTreeRoot()
    iface.layerTreeView().expandAll()  # the run's group open, so the legend shows the class names
    for node in root.findLayers():
        if node.layer().name() == "Sentinel-2 crop":
            node.setExpanded(False)
        else:
            node.layer().setOpacity(0.8)
    show_left_of_dialog(QgsProject.instance().mapLayersByName("Sentinel-2 crop")[0].extent())
    QTimer.singleShot(4000, grab)


def show_left_of_dialog(extent):
    """Zoom so the data fills the left part of the map, clear of the dialog on the right."""
    canvas = iface.mapCanvas()
    canvas.setExtent(QgsRectangle(extent.xMinimum() - 0.02 * extent.width(), extent.yMinimum(),
                                  extent.xMaximum() + 0.75 * extent.width(), extent.yMaximum()))
    canvas.refresh()


def find_similar(layer):
    """Pick the map tool from the toolbar and click the map with the mouse; grab when the last query is shown."""
    plugin = plugins["geolink_qgis"]
    QgsProject.instance().setCrs(layer.crs())  # the project takes the first layer's CRS later, after the clicks
    show_left_of_dialog(layer.extent())
    plugin.find_action.trigger()
    iface.setActiveLayer(layer)
    canvas, ext = iface.mapCanvas(), layer.extent()
    clicks = list(CFG["find_similar"])

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
        job = tool.task.jobs[-1].config if tool.task is not None else {}
        log(f"clicked at {fx}, {fy} ({len(tool.points)} points): "
            f"{job.get('at')} in {str(job.get('at_crs'))[:60]}")
        QTimer.singleShot(500, next_click)
    QTimer.singleShot(2000, next_click)


def start():
    try:
        win = iface.mainWindow()
        win.setGeometry(0, 0, CFG["screen"][0], CFG["screen"][1])
        docks = {d.objectName(): d for d in win.findChildren(QDockWidget)}
        if "Browser" in docks:
            docks["Browser"].hide()
        toolbox, legend = docks.get("ProcessingToolbox"), docks.get("Layers")
        if toolbox is not None and legend is not None:  # the provider and its algorithms, under the layers
            win.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, toolbox)
            win.splitDockWidget(legend, toolbox, Qt.Orientation.Vertical)
            toolbox.show()
            search = toolbox.findChild(QLineEdit)
            if search is not None:
                search.setText("GeoLink")
        layer = QgsRasterLayer(CFG["raster"], "Sentinel-2 crop")
        renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)  # B4, B3, B2: true colour
        for band, setter in ((3, renderer.setRedContrastEnhancement), (2, renderer.setGreenContrastEnhancement),
                             (1, renderer.setBlueContrastEnhancement)):
            ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
            ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
            stats = layer.dataProvider().cumulativeCut(band, 0.02, 0.98)
            ce.setMinimumValue(stats[0])
            ce.setMaximumValue(stats[1])
            setter(ce)
        layer.setRenderer(renderer)
        QgsProject.instance().addMapLayer(layer)
        show_left_of_dialog(layer.extent())
        if CFG["find_similar"]:
            return find_similar(layer)
        plugin = plugins["geolink_qgis"]
        plugin.open_dialog()
        dialog = plugin.dialog
        dialog.move(CFG["screen"][0] - dialog.width() - 40, 90)
        dialog.raster.setLayer(layer)
        dialog.model.setCurrentText(CFG["model"])
        dialog.output.setFilePath(CFG["output"])
        log("dialog open; running classify")
        dialog.start()
        dialog.run.finished.connect(finished)
    except Exception:
        import traceback
        log(traceback.format_exc())
        os._exit(1)


QTimer.singleShot(3000, start)
QTimer.singleShot(CFG["timeout_ms"], grab)
'''


def crop(src: Path, out: Path, size: int) -> Path:
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.Translate(str(out), str(src), srcWin=[700, 900, size, size])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=480, help="crop size in pixels (10 m each)")
    parser.add_argument("--data", type=Path, default=ROOT / ".cache" / "data")
    parser.add_argument("--find-similar", action="store_true", help="drive the Find similar map tool instead")
    parser.add_argument("--timeout", type=int, default=480, help="seconds before the screen is grabbed regardless")
    args = parser.parse_args()
    if not (args.data / "s2" / "s2_rgbn.tif").exists():
        print(f"error: {args.data}/s2/s2_rgbn.tif missing: run `make data`", file=sys.stderr)
        return 1
    if not shutil.which("xvfb-run") or not shutil.which("qgis"):
        print("error: needs xvfb-run and the qgis application (apt install xvfb qgis)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="geolink-screenshot-"))
    raster = crop(args.data / "s2" / "s2_rgbn.tif", work / "s2_crop.tif", args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {"raster": str(raster), "out": str(args.out.resolve()), "model": args.model,
              "output": str(work / "land_cover.tif"),
              "find_similar": [(0.62, 0.21), (0.42, 0.77)] if args.find_similar else []}
    env = dict(os.environ, GEOLINK_BACKEND_PYTHON=os.environ.get("GEOLINK_BACKEND_PYTHON",
                                                                 str(ROOT / ".venv" / "bin" / "python")))
    run_in_qgis(STARTUP, config, work, args.timeout, env)
    if not args.out.exists():
        print(f"error: no screenshot written; see {work}", file=sys.stderr)
        return 1
    print(f"screenshot: {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def run_in_qgis(startup: str, config: dict, work: Path, timeout: int, env: dict) -> None:
    """Run the `qgis` application on a virtual screen with the plugin installed from a fresh zip in a throw-away
    profile, and `startup` (with __CONFIG__ replaced by `config` plus log, screen and timeout_ms) as its
    --code script; print the script's log."""
    profiles = work / "profiles-root"
    package.install_zip(package.build_zip(work / "dist"), profiles / "profiles" / "default")
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    with open(ini, "a", encoding="utf-8") as f:  # no first-run and news panels in the picture
        f.write("\n[qgis]\ncheckVersion=false\nshowTips=false\n[core]\nNewsFeed\\httpsfeedqgisorg\\disabled=true\n")
    log = work / "screenshot.log"
    config = dict(config, log=str(log), screen=SCREEN, timeout_ms=timeout * 1000)
    script = work / "startup.py"
    script.write_text(startup.replace("__CONFIG__", repr(json.dumps(config))), encoding="utf-8")
    env = dict(env)
    env.pop("QT_QPA_PLATFORM", None)  # a real (virtual) screen, not offscreen
    cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", "qgis", "--nologo",
           "--noversioncheck", "--profiles-path", str(profiles), "--code", str(script)]
    try:
        subprocess.run(cmd, env=env, timeout=timeout + 120, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        print("error: QGIS did not finish in time", file=sys.stderr)
    print(log.read_text(encoding="utf-8") if log.exists() else "(no log)")


if __name__ == "__main__":
    sys.exit(main())
