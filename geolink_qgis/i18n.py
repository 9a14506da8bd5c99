"""Translation: every user-visible string goes through `tr`, as QGIS plugins do (Qt Linguist, one context).

The plugin installs `i18n/geolink_<locale>.qm` when one exists for the QGIS locale (see `install_translator`);
without it, strings show as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import QCoreApplication, QSettings, QTranslator

CONTEXT = "GeoLink"
_translator: Optional[QTranslator] = None


def tr(text: str) -> str:
    """`text` in the user's language."""
    return QCoreApplication.translate(CONTEXT, text)


def install_translator(plugin_dir: Path) -> bool:
    """Load the translation for QGIS's locale (locale/userLocale, e.g. "de_DE" -> geolink_de.qm), if shipped."""
    global _translator
    locale = str(QSettings().value("locale/userLocale", "") or "")[:2]
    qm = plugin_dir / "i18n" / f"geolink_{locale}.qm"
    if not locale or not qm.is_file():
        return False
    translator = QTranslator()
    if not translator.load(str(qm)):
        return False
    QCoreApplication.installTranslator(translator)
    _translator = translator
    return True
