"""OpenStreetMap polygons as training labels: tags -> classes through a tag map, with OSM's noise handled.

OSM labels are noisy: edges drawn loosely, polygons that overlap, big landuse polygons with other
things inside, and land nobody tagged. Here:
- only polygons count (points and lines have no extent to label); a polygon's class is the first
  tag-map class its tags match (tagmap.py); polygons matching no class are left out;
- polygons are cut to the raster, then EDGE MARGIN: every polygon loses a band of `margin` metres (by
  default one pixel of the training grid, at least MIN_MARGIN: OSM edges are metres off whatever the imagery)
  along its edges (negative buffer), and a larger polygon also loses a band of `margin` around each
  smaller polygon of another class inside it, so no pixel near a loosely drawn boundary is trained on;
- smaller polygons win inside larger ones (they are burnt last, as for hand-drawn labels);
- untagged land stays unlabelled (ignored by the loss, never taken as a class);
- balanced sampling (`balance_targets`): a class keeps at most as many training pixels as the
  median class (or BALANCE_RATIO times the rarest, when that is more), drawn at random, so one vast
  forest polygon does not drown the rest; the loss is class-weighted on top (losses.py);
- hold-out by polygon is the fine-tuning's spatial split (sampling.spatial_split).
The report says how much area each class got and what was dropped, and why.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely

from ..errors import InputError
from ..osm.format import POLYGON
from ..osm.read import OsmFeatures, read_osm
from ..osm.tagmap import TagMap, most_common_tags
from ..progress import Progress
from ..raster.crs import metres_per_unit
from .labels import LabelSet, class_colors
from .losses import IGNORE

MIN_MARGIN = 2.0  # metres: the default edge margin is one pixel, never less than this
BALANCE_RATIO = 3.0


def read_osm_labels(paths: Sequence[str], tag_map: TagMap, raster_wkt: str,
                    raster_bounds: Tuple[float, float, float, float], margin: float = 10.0,
                    colors: Optional[Dict[str, str]] = None, progress: Optional[Progress] = None,
                    cell: float = 0.0) -> Tuple[LabelSet, dict]:
    """(LabelSet in the raster's CRS, report) from OSM files through `tag_map` (module doc for the rules).

    `cell` (map units): polygons are cut into the squares of a grid of that size, so a few big OSM polygons still
    give pieces to hold out for validation in other places than the training pieces (the split is by piece).
    Refused with InputError: no polygon matches the tag map (the most frequent tags are named), only one
    class matched, no matching polygon over the raster, nothing left after the edge margin."""
    progress = progress or Progress()
    features = read_osm(paths, raster_wkt, progress.sub(0, 70))
    progress.update(75, "Matching OSM tags to classes")
    dropped: Dict[str, int] = {}
    geoms, ids = _matching_polygons(features, tag_map, dropped)
    geoms, ids = _over_raster(geoms, ids, raster_bounds, dropped)
    areas = shapely.area(geoms)
    progress.update(85, "Taking the edge margin off the OSM polygons")
    progress.check_cancelled()
    unit_x, unit_y = metres_per_unit(raster_wkt, (raster_bounds[1] + raster_bounds[3]) / 2)
    width = margin / float(np.sqrt(unit_x * unit_y))
    shrunk = _shrink(geoms, ids, areas, width) if width > 0 else geoms
    parts, source = shapely.get_parts(shrunk, return_index=True)
    ok = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    parts, source = parts[ok], source[ok]
    if cell:
        parts, source = _cut(parts, source, cell, raster_bounds[:2])
    gone = len(geoms) - len(np.unique(source))
    if gone:
        dropped[f"polygons narrower than twice the edge margin ({margin:g} m)"] = int(gone)
    names, class_ids = _classes_present(ids[source], tag_map, margin)
    missing = [n for n in tag_map.class_names if n not in names]
    part_area = shapely.area(parts) * unit_x * unit_y
    per_class = {n: {"polygons": int(len(np.unique(source[class_ids == k]))),
                     "area_km2": round(float(part_area[class_ids == k].sum() / 1e6), 4)}
                 for k, n in enumerate(names)}
    report = {"tag_map": tag_map.source, "tag_map_classes": tag_map.to_json()["classes"], "edge_margin_m": margin,
              "osm_files": [str(p) for p in paths],
              "classes": per_class, "classes_without_polygons": missing, "dropped": dropped}
    warnings = [f"No OSM polygon over the raster for: {', '.join(missing)} (left out of the model)."] if missing else []
    for w in warnings:
        progress.warn(w)
    progress.update(100, "OSM labels ready")
    given = {c["name"]: c["color"] for c in tag_map.classes if c.get("color")}
    given.update(colors or {})
    return LabelSet(geometries=[shapely.to_wkb(g) for g in parts], class_ids=class_ids,
                    classes=class_colors(names, given), areas=areas[source],
                    centroids=shapely.get_coordinates(shapely.centroid(parts)), source_crs="",
                    warnings=warnings), report


def _matching_polygons(features: OsmFeatures, tag_map: TagMap,
                       dropped: Dict[str, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(geometries, tag-map class ids) of the polygons a class matches; what is left out counted in `dropped`."""
    is_poly = features.kinds == POLYGON
    ids = tag_map.match_all(features.labels)
    if (~is_poly).any():
        dropped["points and lines (no area to label)"] = int((~is_poly).sum())
    if not (is_poly & (ids >= 0)).any():
        seen = most_common_tags(features.labels[is_poly] if is_poly.any() else features.labels)
        raise InputError(
            f"No OSM polygon matches a class of the tag map {tag_map.source}"
            + (f"; the tags seen most are {', '.join(f'{t} ({n})' for t, n in seen)}." if seen
               else "; the OSM holds no tagged feature."),
            hint="Choose another tag map (--tag-map landcover or urban-function) or write one for these tags.")
    if (is_poly & (ids < 0)).any():
        dropped["polygons with no tag of the tag map"] = int((is_poly & (ids < 0)).sum())
    keep = is_poly & (ids >= 0)
    return features.geoms[keep], ids[keep]


def _over_raster(geoms: np.ndarray, ids: np.ndarray, bounds: Tuple[float, float, float, float],
                 dropped: Dict[str, int]) -> Tuple[np.ndarray, np.ndarray]:
    """The polygons cut to the raster's bounds; refused when none lies over it."""
    box = shapely.box(*bounds)
    inside = shapely.intersects(geoms, box)
    if not inside.any():
        raise InputError("None of the OSM polygons matching the tag map lies over the raster.",
                         hint=f"The raster covers {_fmt_box(bounds)} and these polygons "
                              f"{_fmt_box(shapely.total_bounds(geoms))} (in the raster's CRS): give OSM of the "
                              "raster's area.")
    if (~inside).any():
        dropped["polygons outside the raster"] = int((~inside).sum())
    return shapely.intersection(geoms[inside], box), ids[inside]


def _classes_present(ids: np.ndarray, tag_map: TagMap, margin: float) -> Tuple[List[str], np.ndarray]:
    """(names of the tag-map classes the pieces have, each piece's index among them); refused below two classes."""
    present = sorted(set(ids.tolist()))
    names = [tag_map.class_names[i] for i in present]
    if not present:
        raise InputError(f"Nothing is left of the OSM polygons after taking {margin:g} m off their edges.",
                         hint="Give a smaller --edge-margin.")
    if len(present) < 2:
        raise InputError(f"Only one class of the tag map ({names[0]!r}) matched the OSM polygons over the raster: "
                         "a classifier needs at least two.",
                         hint="Give OSM covering more kinds of land, or a tag map whose classes these tags match.")
    index = {c: k for k, c in enumerate(present)}
    return names, np.array([index[i] for i in ids], dtype=np.int64)


def edge_margin(given: Optional[float], pixel_metres: float) -> float:
    """The edge margin in metres: the one given, else one pixel of the training grid but at least MIN_MARGIN."""
    if given is not None:
        if given < 0:
            raise InputError(f"--edge-margin must be 0 or more metres, got {given:g}.")
        return float(given)
    return max(float(pixel_metres), MIN_MARGIN)


def _shrink(geoms: np.ndarray, ids: np.ndarray, areas: np.ndarray, width: float) -> np.ndarray:
    """Each polygon minus a `width` band inside its edges and minus a `width` band around every smaller polygon
    of another class that meets it."""
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    inner = (areas[right] < areas[left]) & (ids[right] != ids[left])
    out = shapely.buffer(geoms, -width, quad_segs=2)
    for i in np.unique(left[inner]):
        others = right[inner & (left == i)]
        out[i] = shapely.difference(out[i], shapely.union_all(shapely.buffer(geoms[others], width, quad_segs=2)))
    return out


def _cut(parts: np.ndarray, source: np.ndarray, cell: float, origin: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Polygons cut along a grid of squares of side `cell` from `origin`; polygon pieces only."""
    x0, y0 = origin
    pieces, owner = [], []
    for geom, src in zip(parts, source):
        xmin, ymin, xmax, ymax = shapely.bounds(geom)
        cols = range(int(np.floor((xmin - x0) / cell)), int(np.ceil((xmax - x0) / cell)))
        rows = range(int(np.floor((ymin - y0) / cell)), int(np.ceil((ymax - y0) / cell)))
        if len(cols) * len(rows) <= 1:
            pieces.append(geom)
            owner.append(src)
            continue
        cells = shapely.box(*np.array([[x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell]
                                       for r in rows for c in cols]).T)
        cut, _ = shapely.get_parts(shapely.intersection(geom, cells), return_index=True)
        cut = cut[(shapely.get_type_id(cut) == 3) & (shapely.area(cut) > 0)]
        pieces.extend(cut)
        owner.extend([src] * len(cut))
    return np.array(pieces, dtype=object), np.array(owner, dtype=np.int64)


def balance_targets(targets: np.ndarray, n_classes: int, seed: int = 0,
                    ratio: float = BALANCE_RATIO) -> Tuple[np.ndarray, List[int], List[int]]:
    """(targets with the surplus pixels of the big classes set to IGNORE, pixels per class before, after).

    A class keeps at most max(median class's pixels, ratio x the rarest class's pixels), drawn at random."""
    flat = targets.reshape(-1)
    counts = np.bincount(flat[flat >= 0], minlength=n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        return targets, counts.tolist(), counts.tolist()
    cap = int(max(np.median(present), ratio * present.min()))
    rng = np.random.default_rng(seed)
    out = flat.copy()
    for c in np.flatnonzero(counts > cap):
        where = np.flatnonzero(flat == c)
        out[rng.choice(where, size=len(where) - cap, replace=False)] = IGNORE
    after = np.bincount(out[out >= 0], minlength=n_classes)
    return out.reshape(targets.shape), counts.tolist(), after.tolist()


def _fmt_box(bounds) -> str:
    return "({:.0f}, {:.0f}) - ({:.0f}, {:.0f})".format(*bounds)


def summary_lines(report: dict) -> Dict[str, str]:
    """The report's OSM figures as the training report's summary lines."""
    area = ", ".join(f"{n} {v['area_km2']:g} km² ({v['polygons']} polygons)" for n, v in report["classes"].items())
    lines = {"tag map": report["tag_map"], "edge margin": f"{report['edge_margin_m']:g} m",
             "OSM label area": area,
             "OSM left out": "; ".join(f"{n} {why}" for why, n in report["dropped"].items()) or "nothing"}
    if report.get("balance"):
        lines["balanced training pixels"] = ", ".join(
            f"{n} {a} of {b}" for n, (b, a) in report["balance"].items())
    if report["classes_without_polygons"]:
        lines["tag-map classes without polygons"] = ", ".join(report["classes_without_polygons"])
    return lines
