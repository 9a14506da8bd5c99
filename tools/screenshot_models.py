"""Screenshots of the GeoLink Models dialog in the real QGIS window (Xvfb):

    python tools/screenshot_models.py [--checkpoint FILE.pth] [--out-dir docs]

1. models_dialog.png: after importing a checkpoint in the official layout (default: the reference oracle's
   randomly initialised ViT-Tiny GeoLink in ../shared, a small stand-in for the 1.2 GB ViT-L files): where the
   official weights are, the imported model's card and the SHA-256 shown;
2. models_dialog_offline.png: after *Download* under *Tag text encoder* on a machine that cannot reach the
   Hugging Face hub (run it where huggingface.co is unreachable, or with HF_HUB_OFFLINE=1): the message saying
   which files to copy from another computer and how to choose them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from screenshot import PRELUDE, screenshot  # noqa: E402

STARTUP = PRELUDE + r'''
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface

state = {}


def save(name):
    QApplication.processEvents()
    path = os.path.join(CFG["out_dir"], name)
    state["dialog"].grab().save(path, "PNG")
    log("saved " + path)


def when_idle(then):
    d = state["dialog"]
    if d.run is None and d.task is None:
        QTimer.singleShot(800, then)
    else:
        QTimer.singleShot(300, lambda: when_idle(then))


@guarded
def start():
    from geolink_qgis.ui.models_dialog import ModelsDialog

    iface.mainWindow().setGeometry(0, 0, CFG["screen"][0], CFG["screen"][1])
    d = state["dialog"] = ModelsDialog(iface.mainWindow())
    d.resize(900, 900)
    d.move(300, 40)
    d.show()
    d.import_checkpoint(CFG["checkpoint"])
    QTimer.singleShot(500, lambda: when_idle(imported))


@guarded
def imported():
    d = state["dialog"]
    log("status: " + d.status.text())
    log("sha256 shown: " + d.sha256.text())
    save("models_dialog.png")
    d.download_text_encoder()
    QTimer.singleShot(500, lambda: when_idle(downloaded))


@guarded
def downloaded():
    log("status: " + state["dialog"].status.text())
    save("models_dialog_offline.png")
    os._exit(0)


QTimer.singleShot(3000, start)
QTimer.singleShot(CFG["timeout_ms"], lambda: (log("timed out"), os._exit(1)))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path,
                        default=ROOT.parent / "shared" / "reference" / "fusion_vit_tiny" / "checkpoint.pth")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before giving up")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        print(f"error: {args.checkpoint} not found: give --checkpoint", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="geolink-models-shot-"))
    checkpoint = work / "geolink_vit_tiny_reference.pth"  # the name the imported model gets
    shutil.copyfile(args.checkpoint, checkpoint)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    config = {"checkpoint": str(checkpoint), "out_dir": str(args.out_dir.resolve())}
    if not screenshot(STARTUP, config, work, args.timeout, args.out_dir / "models_dialog_offline.png"):
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
