"""Enum spellings that work from QGIS 3.22 (PyQt5) to QGIS 4 (PyQt6).

QGIS 3.x exposes Processing enums as class attributes (QgsProcessing.TypeVectorPolygon);
later releases add scoped enums in `Qgis` (Qgis.ProcessingSourceType.VectorPolygon) and
QGIS 4 drops the old names. Each constant here takes the new spelling when it exists.
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsRasterFileWriter,
    QgsUnitTypes,
    QgsVectorFileWriter,
)


def _pick(scoped_enum: str, member: str, old_owner, old_name: str):
    scoped = getattr(Qgis, scoped_enum, None)
    if scoped is not None and hasattr(scoped, member):
        return getattr(scoped, member)
    return getattr(old_owner, old_name)


FLAG_ADVANCED = _pick("ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition, "FlagAdvanced")
NUMBER_INTEGER = _pick("ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber, "Integer")
NUMBER_DOUBLE = _pick("ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Double")
SOURCE_VECTOR_ANY = _pick("ProcessingSourceType", "VectorAnyGeometry", QgsProcessing, "TypeVectorAnyGeometry")
SOURCE_VECTOR_POINT = _pick("ProcessingSourceType", "VectorPoint", QgsProcessing, "TypeVectorPoint")
SOURCE_VECTOR_POLYGON = _pick("ProcessingSourceType", "VectorPolygon", QgsProcessing, "TypeVectorPolygon")
FILE_BEHAVIOR_FILE = _pick("ProcessingFileParameterBehavior", "File", QgsProcessingParameterFile, "File")
FILE_BEHAVIOR_FOLDER = _pick("ProcessingFileParameterBehavior", "Folder", QgsProcessingParameterFile, "Folder")
FIELD_ANY = _pick("ProcessingFieldParameterDataType", "Any", QgsProcessingParameterField, "Any")
RASTER_WRITE_OK = _pick("RasterFileWriterResult", "Success", QgsRasterFileWriter, "NoError")
DISTANCE_METERS = _pick("DistanceUnit", "Meters", QgsUnitTypes, "DistanceMeters")
VECTOR_WRITE_OK = QgsVectorFileWriter.WriterError.NoError


def add_advanced(param) -> None:
    """Mark a parameter as advanced (shown under "Advanced parameters")."""
    param.setFlags(param.flags() | FLAG_ADVANCED)


def layer_filter(name: str):
    """QgsMapLayerProxyModel filters (Qgis.LayerFilter from QGIS 3.34)."""
    from qgis.core import QgsMapLayerProxyModel

    scoped = getattr(Qgis, "LayerFilter", None)
    if scoped is not None and hasattr(scoped, name):
        return getattr(scoped, name)
    return getattr(QgsMapLayerProxyModel.Filter, name)
