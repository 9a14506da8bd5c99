"""Screenshots of the first install from inside the real QGIS window (Xvfb), with no backend configured:

    python tools/screenshot_install.py [--out-dir /tmp/geolink-install-shots]

1. install_confirm.png: Install backend's confirmation (what, from where, how big, where to);
2. install_cancelled.png: an install stopped with Stop installation while pip runs;
3. install_repair.png: after an install that failed offline, the settings and the GeoLink dialog offer Repair.

The environment goes to the throw-away profile, built from the Python QGIS itself finds (logged). "Offline"
is pip pointed at a closed local port, so nothing is downloaded for shot 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from screenshot import PRELUDE, run_in_qgis  # noqa: E402

STARTUP = PRELUDE + r'''
import time
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, plugins

state = {}


def grab(name):
    QApplication.processEvents()
    path = os.path.join(CFG["out_dir"], name)
    QApplication.primaryScreen().grabWindow(0).save(path, "PNG")
    log("saved " + path)


@guarded
def confirm():
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    iface.mainWindow().setGeometry(0, 0, CFG["screen"][0], CFG["screen"][1])
    plugin = plugins["geolink_qgis"]
    plugin.open_dialog()
    plugin.dialog.move(60, 120)
    dialog = state["settings"] = SettingsDialog(iface.mainWindow())
    dialog.move(700, 80)
    dialog.show()
    plan = state["plan"] = dialog.install_plan()
    log(f"base python chosen inside QGIS: {plan.base_python}; venv: {plan.venv}")
    box = state["box"] = dialog.confirmation(plan)
    box.show()
    box.move(760, 330)  # below the settings' form, as a window manager might place it
    QTimer.singleShot(2500, lambda: (grab("install_confirm.png"), box.close(), start_install()))


@guarded
def start_install():
    dialog = state["settings"]
    task = dialog.install(state["plan"], confirm=False)
    task.line.connect(lambda text: watch(text))
    task.done.connect(cancelled)


@guarded
def watch(text):
    if text.startswith("Installing PyTorch") and "pip_started" not in state:
        state["pip_started"] = True
        QTimer.singleShot(4000, stop_now)  # let pip run a few seconds, then click Stop


@guarded
def stop_now():
    log("clicking Stop installation")
    state["clicked"] = time.monotonic()
    state["settings"].stop_button.click()


@guarded
def cancelled(outcome, detail):
    took = time.monotonic() - state.get("clicked", time.monotonic())
    log(f"install outcome={outcome} {took:.1f} s after Stop; venv exists: {os.path.exists(str(state['plan'].venv))}")
    QTimer.singleShot(1500, lambda: (grab("install_cancelled.png"), fail_offline()))


@guarded
def fail_offline():
    for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        os.environ.pop(key, None)
    os.environ.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="1",
                      PIP_TIMEOUT="3")
    dialog = state["settings"]
    dialog.log.clear()
    task = dialog.install(state["plan"], confirm=False)
    task.done.connect(failed)


@guarded
def failed(outcome, detail):
    log(f"offline install outcome={outcome}: {detail}")
    plugin = plugins["geolink_qgis"]
    plugin.dialog.refresh()
    log(f"main dialog banner: {plugin.dialog.backend_note.text()} | button: {plugin.dialog.install_button.text()}")
    QTimer.singleShot(1500, lambda: (grab("install_repair.png"), os._exit(0)))


QTimer.singleShot(3000, confirm)
QTimer.singleShot(CFG["timeout_ms"], lambda: (grab("timeout.png"), os._exit(2)))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(tempfile.gettempdir()) / "geolink-install-shots")
    parser.add_argument("--timeout", type=int, default=400)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="geolink-install-shots-"))
    env = dict(os.environ)
    env.pop("GEOLINK_BACKEND_PYTHON", None)  # the plugin's own environment, as for a new user
    run_in_qgis(STARTUP, {"out_dir": str(args.out_dir.resolve())}, work, args.timeout, env)
    shots = sorted(p.name for p in args.out_dir.glob("install_*.png"))
    print("screenshots:", ", ".join(shots) or "none", "in", args.out_dir)
    return 0 if len(shots) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
