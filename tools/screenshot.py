"""Screenshots of the real QGIS window walking through the GeoLink dialog over real data.

    python tools/screenshot.py [--out docs/screenshot.png] [--model default] [--size 480]

Runs the `qgis` desktop application on a virtual screen (xvfb-run), with a throw-away
profile where the plugin is installed from `make package`'s zip. A startup script loads
two crops of the real Sentinel-2 scene (`make data`), a one-band copy and the committed
land-cover polygons, then clicks through the GeoLink dialog as a user would, saving beside
--out: the dialog describing the chosen model (walkthrough-1-model.png), a classification
(--out itself), the Layers panel after a second run on the other crop
(walkthrough-2-two-runs.png), a fine-tune with its report link (walkthrough-3-finetune.png;
1 epoch, to keep it short) and the message a one-band raster gets (walkthrough-4-error.png).
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
LABELS = ROOT / "tests" / "data" / "labels" / "s2_virginia_labels.geojson"  # hand-digitised on the same scene

# What every script run inside QGIS starts with: its configuration (__CONFIG__, filled in by run_in_qgis), a log
# file, and a guard for a step that logs its traceback and ends QGIS.
PRELUDE = r'''
import json, os

CFG = json.loads(__CONFIG__)


def log(msg):
    with open(CFG["log"], "a", encoding="utf-8") as f:
        f.write(msg + "\n")


def guarded(step):
    def run(*args):
        try:
            step(*args)
        except Exception:
            import traceback
            log(traceback.format_exc())
            os._exit(1)
    return run
'''

STARTUP = PRELUDE + r'''
from qgis.core import (QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsProject, QgsRasterLayer, QgsRectangle,
                       QgsVectorLayer)
from qgis.PyQt.QtCore import QRect, Qt, QTimer
from qgis.PyQt.QtGui import QImage
from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QLineEdit
from qgis.utils import iface, plugins

STEPS = []


def save(pixmap, name, width=None):
    # A small PNG for the README: scaled down, in 256 colours.
    QApplication.processEvents()
    path = name if os.path.isabs(name) else os.path.join(CFG["docs"], name)
    if width and pixmap.width() > width:
        pixmap = pixmap.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_Indexed8)
    image.save(path, "PNG")
    log(f"saved {path} ({image.width()}x{image.height()})")


def screen():
    return QApplication.primaryScreen().grabWindow(0)


def next_step():
    if not STEPS:
        log("walkthrough done")
        os._exit(0)
    step = STEPS.pop(0)
    log("step: " + step.__name__)
    try:
        step()
    except Exception:
        import traceback
        log(traceback.format_exc())
        os._exit(1)


def later(ms=1500):
    QTimer.singleShot(ms, next_step)


def true_colour(path, name):
    layer = QgsRasterLayer(path, name)
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
    return layer


def show_left_of_dialog(extent):
    # Zoom so the data fills the left part of the map, clear of the dialog on the right.
    canvas = iface.mapCanvas()
    canvas.setExtent(QgsRectangle(extent.xMinimum() - 0.02 * extent.width(), extent.yMinimum(),
                                  extent.xMaximum() + 0.75 * extent.width(), extent.yMaximum()))
    canvas.refresh()


def dialog():
    return plugins["geolink_qgis"].dialog


def run_then(after):
    d = dialog()
    d.start()
    d.run.finished.connect(lambda ok, results, error: (log(f"run ok={ok} error={error[:200]!r}"), after()))


def tidy_layers():
    # Groups open, inputs and probability layers folded, so the Layers panel shows the runs side by side.
    iface.layerTreeView().expandAll()
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        if node.layer().name() in CFG["inputs"]:
            node.setExpanded(False)
        else:
            node.layer().setOpacity(0.8)


def step_setup():
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
    project = QgsProject.instance()
    grey = QgsRasterLayer(CFG["grey"], "Grey band")
    labels = QgsVectorLayer(CFG["labels"], "My land-cover polygons", "ogr")
    north = true_colour(CFG["raster2"], "Sentinel-2 north")
    main = true_colour(CFG["raster"], "Sentinel-2 crop")
    project.addMapLayers([grey, labels, north, main])
    for layer in (grey, labels, north):
        project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    iface.setActiveLayer(main)
    show_left_of_dialog(main.extent())
    plugin = plugins["geolink_qgis"]
    plugin.open_dialog()  # the active layer, "Sentinel-2 crop", is the dialog's first choice
    d = plugin.dialog
    d.move(CFG["screen"][0] - d.width() - 40, 90)
    d.model.setCurrentText(CFG["model"])
    later()


def step_model_shot():
    save(dialog().grab(), "walkthrough-1-model.png")
    next_step()


def step_classify():
    dialog().output.setFilePath(CFG["output"])
    run_then(lambda: (tidy_layers(), show_left_of_dialog(QgsProject.instance().mapLayersByName(
        "Sentinel-2 crop")[0].extent()), later(4000)))


def step_classify_shot():
    save(screen(), CFG["out"], width=1200)
    next_step()


def step_second_run():
    north = QgsProject.instance().mapLayersByName("Sentinel-2 north")[0]
    iface.setActiveLayer(north)
    d = dialog()
    d.refresh()  # as when the dialog is opened again: the active layer is picked, never the last result
    log("raster chosen: " + d.raster.currentLayer().name())
    d.output.setFilePath("")
    run_then(lambda: (tidy_layers(), later(3000)))


def step_two_runs_shot():
    win = iface.mainWindow()
    legend = {d.objectName(): d for d in win.findChildren(QDockWidget)}["Layers"]
    origin = legend.mapTo(win, legend.rect().topLeft())
    save(screen().copy(QRect(origin.x(), origin.y(), legend.width(), legend.height())), "walkthrough-2-two-runs.png")
    next_step()


def step_finetune():
    d = dialog()
    d.task.setCurrentIndex(3)
    labels = QgsProject.instance().mapLayersByName("My land-cover polygons")[0]
    d.raster.setLayer(QgsProject.instance().mapLayersByName("Sentinel-2 crop")[0])
    d.labels.setLayer(labels)
    d.class_field.setField("class")
    d.output.setFilePath("")  # the default: the GeoLink model folder, named after the polygons
    full = d.parameters
    d.parameters = lambda: {**full(), "EPOCHS": CFG["epochs"], "BATCH_SIZE": 4}  # short for the picture
    run_then(lambda: later(1500))


def step_finetune_shot():
    save(dialog().grab(), "walkthrough-3-finetune.png")
    next_step()


def step_error():
    d = dialog()
    d.parameters = type(d).parameters.__get__(d)
    d.task.setCurrentIndex(0)
    d.model.setCurrentText(CFG["model"])
    d.raster.setLayer(QgsProject.instance().mapLayersByName("Grey band")[0])
    run_then(lambda: later(1500))


def step_error_shot():
    save(screen(), "walkthrough-4-error.png", width=1200)
    next_step()


STEPS[:] = [step_setup, step_model_shot, step_classify, step_classify_shot, step_second_run, step_two_runs_shot,
            step_finetune, step_finetune_shot, step_error, step_error_shot]
QTimer.singleShot(3000, next_step)
QTimer.singleShot(CFG["timeout_ms"], lambda: (log("timed out"), save(screen(), "walkthrough-timeout.png"),
                                              os._exit(1)))
'''


def crop(src: Path, out: Path, size: int, col: int = 700, row: int = 900, bands=None) -> Path:
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.Translate(str(out), str(src), srcWin=[col, row, size, size], bandList=bands)
    return out


def main() -> int:
    parser = screenshot_parser(__doc__.splitlines()[0], "screenshot.png", 1500,
                               "seconds before the walkthrough is given up")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs in the walkthrough")
    args = parser.parse_args()
    if not ready(args.data):
        return 1
    work = Path(tempfile.mkdtemp(prefix="geolink-screenshot-"))
    scene = args.data / "s2" / "s2_rgbn.tif"
    raster = crop(scene, work / "s2_crop.tif", args.size)
    raster2 = crop(scene, work / "s2_north.tif", args.size // 2, col=200, row=1200)  # where the labels are
    grey = crop(scene, work / "grey.tif", 64, bands=[1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {"raster": str(raster), "raster2": str(raster2), "grey": str(grey), "labels": str(LABELS),
              "inputs": ["Sentinel-2 crop", "Sentinel-2 north", "Grey band", "My land-cover polygons"],
              "out": str(args.out.resolve()), "docs": str(args.out.resolve().parent), "model": args.model,
              "epochs": args.epochs, "output": str(work / "land_cover.tif")}
    if not screenshot(STARTUP, config, work, args.timeout, args.out):
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


def screenshot_parser(description: str, out_name: str, timeout: int, timeout_help: str) -> argparse.ArgumentParser:
    """The options of every screenshot script: the picture, the model, the crop, the sample data, the time limit."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / out_name)
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=480, help="crop size in pixels (10 m each)")
    parser.add_argument("--data", type=Path, default=ROOT / ".cache" / "data")
    parser.add_argument("--timeout", type=int, default=timeout, help=timeout_help)
    return parser


def ready(data: Path) -> bool:
    """Whether the sample scene, xvfb-run and the qgis application are there; says what is missing."""
    if not (data / "s2" / "s2_rgbn.tif").exists():
        print(f"error: {data}/s2/s2_rgbn.tif missing: run `make data`", file=sys.stderr)
        return False
    if not shutil.which("xvfb-run") or not shutil.which("qgis"):
        print("error: needs xvfb-run and the qgis application (apt install xvfb qgis)", file=sys.stderr)
        return False
    return True


def screenshot(startup: str, config: dict, work: Path, timeout: int, out: Path) -> bool:
    """run_in_qgis with the project's backend (GEOLINK_BACKEND_PYTHON, else .venv); says where `out` went."""
    env = dict(os.environ, GEOLINK_BACKEND_PYTHON=os.environ.get("GEOLINK_BACKEND_PYTHON",
                                                                 str(ROOT / ".venv" / "bin" / "python")))
    run_in_qgis(startup, config, work, timeout, env)
    if not out.exists():
        print(f"error: no screenshot written; see {work}", file=sys.stderr)
        return False
    print(f"screenshot: {out}")
    return True


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
