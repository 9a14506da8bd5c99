"""The OSM graph of each training window, when --osm is given and the base model reads OSM."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..progress import Progress


def window_graphs(config, grid, positions: Sequence[Tuple[int, int]], size: int, base,
                  progress: Progress) -> Optional[list]:
    """The OSM graph of each window (None where a window has no OSM feature), or None without --osm."""
    if not config.osm:
        return None
    encoder = getattr(base, "encoder", base)
    if not encoder.has_osm:
        progress.warn("The base model is image-only: the OSM files are not used.")
        return None
    text_encoder = encoder.card.text_encoder_name
    if text_encoder is None:
        progress.warn("The base model's card names no tag text encoder: the OSM files are not used.")
        return None
    from ..osm.window_graphs import WindowGraphs

    graphs = WindowGraphs.from_files(config.osm, grid.wkt, grid.bounds, text_encoder, progress=progress.sub(0, 40))
    if graphs.encoder is None:
        progress.warn("The OSM files hold no feature over the raster; training on the image alone.")
        return None
    bounds = [grid.window_bounds(x, y, size, size) for x, y in positions]
    return [graphs(b) for b in progress.sub(40, 100).steps(bounds, len(bounds), "Building OSM graphs")]
