"""User-visible strings go through Qt's translation (context "GeoLink"), as QGIS plugins' do."""

from __future__ import annotations

import re

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QTranslator

from geolink_qgis.i18n import CONTEXT


class Shouting(QTranslator):
    """A translation into capitals, standing in for a .qm file: Qt asks it for every tr() string."""

    def translate(self, context, text, disambiguation=None, n=-1):
        if context != CONTEXT:
            return None
        return re.sub(r"[^{}]+(?![^{]*})", lambda m: m.group(0).upper(), text)  # placeholders {name} kept


def test_titles_labels_and_dialog_texts_are_translatable(qgis_app):
    from geolink_qgis.ui.main_dialog import GeoLinkDialog
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    translator = Shouting()
    QCoreApplication.installTranslator(translator)
    try:
        alg = QgsApplication.processingRegistry().createAlgorithmById("geolink:classify")
        assert alg.displayName() == "CLASSIFY LAND COVER" and alg.group() == "MAPPING"
        assert alg.parameterDefinition("BANDS").description().startswith("BANDS FEEDING THE MODEL")
        dialog = GeoLinkDialog()
        assert dialog.task.itemText(0) == "CLASSIFY LAND COVER" and dialog.run_button.text() == "RUN"
        settings_dialog = SettingsDialog()
        assert settings_dialog.windowTitle() == "GEOLINK SETTINGS"
        assert settings_dialog.check_button.text() == "CHECK BACKEND"
    finally:
        QCoreApplication.removeTranslator(translator)
    assert QgsApplication.processingRegistry().createAlgorithmById("geolink:classify").displayName() == \
        "Classify land cover"


def test_every_algorithm_parameter_and_output_is_translatable(qgis_app):
    """Each GeoLink algorithm's parameter and output descriptions reach Qt's translator (none left in English)."""
    translator = Shouting()
    QCoreApplication.installTranslator(translator)
    try:
        algs = [a for a in QgsApplication.processingRegistry().algorithms() if a.provider().id() == "geolink"]
        assert len(algs) >= 10
        untranslated = []
        for listed in algs:
            alg = QgsApplication.processingRegistry().createAlgorithmById(listed.id())
            texts = [p.description() for p in alg.parameterDefinitions()]
            texts += [o.description() for o in alg.outputDefinitions()]
            untranslated += [f"{alg.id()}: {t}" for t in texts if t != t.upper()]
    finally:
        QCoreApplication.removeTranslator(translator)
    assert not untranslated, "\n".join(untranslated)
