"""Start QGIS without a window (or on Xvfb) with Processing and the GeoLink provider, for scripts and tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QGIS_PLUGINS = "/usr/share/qgis/python/plugins"


def start_qgis(gui: bool = False, config_dir: str = ""):
    """Return an initialised QgsApplication with Processing and the GeoLink provider registered."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("GEOLINK_BACKEND_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    if config_dir:
        os.environ["QGIS_CUSTOM_CONFIG_PATH"] = config_dir
    for path in (QGIS_PLUGINS, str(ROOT)):
        if path not in sys.path:
            sys.path.append(path)
    from qgis.core import QgsApplication

    app = QgsApplication([], gui)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from geolink_qgis.provider import GeoLinkProvider

    provider = GeoLinkProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    app.geolink_provider = provider  # keep a reference: the registry does not own Python objects' wrappers
    return app
