"""The "Find similar" map tool: click a place on a raster (shift-click to add more); a layer of how alike every
place is appears, and updates with each click.

The first click on a raster encodes it once with the model (`geolink embed` in a worker process); the
embeddings are kept in a cache, the project's folder (geolink_cache/) when the project is saved, else the
user's cache folder, keyed by the raster file (path, size, date) and the model. Every later query reuses
them (`geolink similar --embeddings`): a second or two. The GeoLink menu shows the cache's size and clears it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable, List, Optional

from qgis.core import (
    QgsApplication,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsMapToolEmitPoint, QgsVertexMarker
from qgis.PyQt.QtCore import QStandardPaths, Qt
from qgis.PyQt.QtGui import QColor

from .. import results, settings
from ..layers import layer_file
from ..worker_client import Job
from .jobs import JobsTask

CACHE_DIR = "geolink_cache"
LAYER_NAME = "GeoLink similarity"
TITLE = "Find similar"


# ---------------------------------------------------------------- the embeddings cache

def cache_folder(project: Optional[QgsProject] = None) -> Path:
    """geolink_cache/ beside a saved project, else the user's cache folder."""
    home = (project or QgsProject.instance()).homePath()
    if home:
        return Path(home) / CACHE_DIR
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    return Path(base) / "geolink" / "embeddings"


def embeddings_path(folder: Path, raster: str, model: str) -> Path:
    """Where the embeddings of `raster` by `model` are kept: named for both, keyed by the file's size and date
    (a changed raster gets new embeddings)."""
    stat = Path(raster).stat()
    key = json.dumps([str(Path(raster).resolve()), stat.st_size, int(stat.st_mtime), model])
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{Path(raster).stem}_{Path(model).stem}")[:60]
    return folder / f"{safe}_{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}.tif"


def cache_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def clear_cache(folder: Path, project: Optional[QgsProject] = None) -> int:
    """Remove the similarity layers shown from the cache, then the cache's files; returns the bytes freed."""
    project = project or QgsProject.instance()
    for layer in list(project.mapLayers().values()):
        if Path(layer.source().split("|")[0]).parent == folder:
            project.removeMapLayer(layer.id())
    freed = 0
    for p in folder.glob("*") if folder.is_dir() else []:
        if p.is_file():
            size = p.stat().st_size
            try:
                p.unlink()
                freed += size
            except OSError:  # open elsewhere (Windows): left for the next clear
                pass
    return freed


# ---------------------------------------------------------------- the map tool

class FindSimilarTool(QgsMapToolEmitPoint):
    """Click: a new query at that place; shift-click: add the place to the query (the mean of the points)."""

    def __init__(self, canvas, message_bar, active_layer: Callable[[], object] = lambda: None,
                 model: str = "default"):
        super().__init__(canvas)
        self.message_bar, self.active_layer, self.model = message_bar, active_layer, model
        self.points: List[QgsPointXY] = []
        self.markers: List[QgsVertexMarker] = []
        self.raster_id = ""
        self.layer_id = ""
        self.task: Optional[JobsTask] = None
        self.finished_task: Optional[JobsTask] = None
        self.pending = False
        self.runs = 0
        self.last_error = ""

    # -- events

    def flags(self):
        """No flags: QgsMapToolEmitPoint's AllowZoomRect would make a shift-click a zoom rectangle."""
        return type(super().flags())(0)

    def canvasReleaseEvent(self, event):  # noqa: N802 (QGIS API name)
        add = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        self.click(self.toMapCoordinates(event.pos()), add)

    def deactivate(self):
        self.clear_markers()
        super().deactivate()

    def click(self, point: QgsPointXY, add: bool = False) -> None:
        raster = self.raster_layer(point)
        if raster is None:
            self.tell("Find similar needs a raster layer: add the imagery and select it in the Layers panel.", True)
            return
        if not add or raster.id() != self.raster_id:
            self.points = []
            self.clear_markers()
        self.raster_id = raster.id()
        self.points.append(QgsPointXY(point))
        marker = QgsVertexMarker(self.canvas())
        marker.setCenter(QgsPointXY(point))
        marker.setColor(QColor("#ff00ff"))
        marker.setIconSize(14)
        marker.setPenWidth(3)
        marker.setIconType(getattr(QgsVertexMarker, "IconType", QgsVertexMarker).ICON_CROSS)
        self.markers.append(marker)
        self.query()

    def clear_markers(self) -> None:
        for m in self.markers:
            self.canvas().scene().removeItem(m)
        self.markers = []

    # -- which raster, which files

    def raster_layer(self, point: QgsPointXY) -> Optional[QgsRasterLayer]:
        """The selected raster layer, else the topmost visible one under the point (never a similarity output)."""
        project = QgsProject.instance()
        folder = cache_folder(project)

        def usable(layer) -> bool:
            return isinstance(layer, QgsRasterLayer) and Path(layer.source().split("|")[0]).parent != folder

        active = self.active_layer()
        if usable(active):
            return active
        settings_ = self.canvas().mapSettings()
        for layer in self.canvas().layers():
            if usable(layer) and settings_.layerExtentToOutputExtent(layer, layer.extent()).contains(point):
                return layer
        return None

    def query(self) -> None:
        """Start the query for the current points (or note that one is waiting behind the running job)."""
        if self.task is not None:
            self.pending = True
            return
        project = QgsProject.instance()
        raster = project.mapLayer(self.raster_id)
        if raster is None:
            return
        path = layer_file(raster)[0]
        if not path:
            self.tell(f"Find similar works on raster files; '{raster.name()}' is not one. Save it as a GeoTIFF "
                      "(right-click > Export > Save As) and use that.", True)
            return
        folder = cache_folder(project)
        folder.mkdir(parents=True, exist_ok=True)
        emb = embeddings_path(folder, path, self.model)
        self.runs += 1
        out = folder / f"{emb.stem}_similarity_{self.runs}.tif"
        crs = self.canvas().mapSettings().destinationCrs()
        base = {"raster": path, "model": self.model}
        if settings.device() != "auto":
            base["device"] = settings.device()
        jobs = []
        if not emb.exists():
            jobs.append(Job("embed", {**base, "out": str(emb), "preview": str(folder / f"{emb.stem}_pca.tif")},
                            outputs=[str(emb)], env=settings.worker_env()))
            self.tell(f"Encoding '{raster.name()}' once with the model '{self.model}'; later clicks reuse the "
                      f"embeddings (cached in {folder}).")
        at = [f"{p.x()!r},{p.y()!r}" for p in self.points]
        jobs.append(Job("similar", {**base, "embeddings": str(emb), "at": at,
                                    "at_crs": crs.authid() or crs.toWkt(), "out": str(out)},
                        outputs=[str(out)], env=settings.worker_env()))
        self.task = JobsTask(f"GeoLink: {TITLE.lower()} in {raster.name()}", jobs,
                             lambda ok, result, error: self._done(ok, error, out))
        QgsApplication.taskManager().addTask(self.task)

    def _done(self, ok: bool, error: str, out: Path) -> None:
        # the task manager deletes a task after this returns: its Python object must outlive that
        self.finished_task, self.task = self.task, None
        if ok:
            self.last_error = ""
            self.show(out)
        else:
            self.last_error = error
            self.tell(error, True)
        if self.pending:
            self.pending = False
            self.query()

    def show(self, path: Path) -> None:
        """Put the new similarity raster in the place of the previous one (or on top), styled."""
        project = QgsProject.instance()
        layer = QgsRasterLayer(str(path), LAYER_NAME)
        results.apply_style(layer, results.SIMILARITY)
        layer.setOpacity(0.75)
        root = project.layerTreeRoot()
        old = project.mapLayer(self.layer_id)
        node = root.findLayer(old.id()) if old is not None else None
        project.addMapLayer(layer, False)
        if node is not None:
            parent = node.parent()
            parent.insertLayer(parent.children().index(node), layer)
            old_path = Path(old.source())
            project.removeMapLayer(old.id())
            for p in old_path.parent.glob(old_path.stem + ".*"):
                try:
                    p.unlink()
                except OSError:
                    pass
        else:
            root.insertLayer(0, layer)
        self.layer_id = layer.id()
        self.tell(f"Similarity to {len(self.points)} point{'s' if len(self.points) > 1 else ''} "
                  "(shift-click to add more).")

    def tell(self, text: str, warning: bool = False) -> None:
        (self.message_bar.pushWarning if warning else self.message_bar.pushInfo)(TITLE, text)


def clear_cache_interactive(parent, project: Optional[QgsProject] = None) -> None:
    """Show the cache's folder and size; clear it when the user agrees."""
    from qgis.PyQt.QtWidgets import QMessageBox

    folder = cache_folder(project)
    size = cache_size(folder)
    if not size:
        QMessageBox.information(parent, "GeoLink embeddings cache", f"The cache is empty ({folder}).")
        return
    answer = QMessageBox.question(parent, "GeoLink embeddings cache",
                                  f"Cached embeddings and similarity maps: {human_size(size)} in {folder}.\n\n"
                                  "Delete them? The next 'Find similar' click encodes its raster again.")
    if answer == QMessageBox.StandardButton.Yes:
        freed = clear_cache(folder, project)
        QMessageBox.information(parent, "GeoLink embeddings cache", f"Freed {human_size(freed)}.")
