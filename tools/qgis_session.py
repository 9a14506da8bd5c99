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


def render_png(layers, path, width: int = 1000, extent=None) -> str:
    """Render map layers (top first) to a PNG with QGIS's renderer, in the first layer's CRS."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers(list(layers))
    settings.setDestinationCrs(layers[-1].crs())
    extent = extent or layers[-1].extent()
    height = max(1, round(width * extent.height() / max(extent.width(), 1e-9)))
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(str(path), "PNG")
    return str(path)
