"""The plugin inside the real QGIS desktop application (Xvfb): toolbar button, menu, dialogs, unload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STARTUP = textwrap.dedent('''
    import json, os, traceback
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QAction
    from qgis.utils import iface, plugins, unloadPlugin

    def check():
        report = {}
        try:
            plugin = plugins["geolink_qgis"]
            actions = {a.objectName(): a for a in iface.mainWindow().findChildren(QAction)}
            report["actions"] = sorted(n for n in actions if n.startswith("geolink"))
            report["in_toolbar"] = any(a.objectName() == "geolinkOpenDialog"
                                       for a in iface.pluginToolBar().actions())
            actions["geolinkOpenDialog"].trigger()
            report["dialog_visible"] = plugin.dialog.isVisible()
            report["tasks"] = [plugin.dialog.task.itemText(i) for i in range(plugin.dialog.task.count())]
            from qgis.core import QgsApplication
            report["provider"] = QgsApplication.processingRegistry().providerById("geolink") is not None
            report["unloaded"] = unloadPlugin("geolink_qgis")
            report["provider_after_unload"] = QgsApplication.processingRegistry().providerById("geolink") is not None
        except Exception:
            report["error"] = traceback.format_exc()
        with open(os.environ["GEOLINK_TEST_REPORT"], "w") as f:
            json.dump(report, f)
        os._exit(0)

    QTimer.singleShot(1500, check)
''')


@pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("qgis")), reason="needs xvfb-run and qgis")
def test_plugin_in_the_qgis_desktop(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import package

    profiles = tmp_path / "profiles-root"
    package.install_zip(package.build_zip(tmp_path / "dist"), profiles / "profiles" / "default")
    script = tmp_path / "startup.py"
    script.write_text(STARTUP)
    report = tmp_path / "report.json"
    env = dict(os.environ, GEOLINK_TEST_REPORT=str(report))
    env.pop("QT_QPA_PLATFORM", None)
    subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "qgis", "--nologo", "--noversioncheck",
                    "--profiles-path", str(profiles), "--code", str(script)], env=env, timeout=180,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = json.loads(report.read_text())
    assert "error" not in result, result.get("error")
    assert result["actions"] == ["geolinkClearEmbeddings", "geolinkFindSimilar", "geolinkModels", "geolinkOpenDialog",
                                 "geolinkSettings"]
    assert result["in_toolbar"] and result["dialog_visible"] and result["provider"]
    assert "Classify land cover" in result["tasks"]
    assert result["unloaded"] and not result["provider_after_unload"]
