"""GeoLink for QGIS: the plugin package (QGIS imports classFactory)."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import GeoLinkPlugin

    return GeoLinkPlugin(iface)
