"""The OSM graph format (the original GeoLink's): what a graph holds, in which order, how wide.

A graph is a torch_geometric HeteroData. Its node types are polygon, line and point; a node's x is the
tag text embedding followed by positions in tile units (x from the west edge, y from the north edge,
0..1 inside the tile): polygon 4 points (3 inside it, then its centroid), line 3 (centroid, first
vertex, last vertex), point 1. Its edge types are (src, "to", dst) for the 9 pairs of node types, with
one-hot relation classes as edge_attr (relations.py: which classes, in which column order). `None`, a
graph without nodes, or a missing node type all mean "no entities".
"""

from __future__ import annotations

from typing import Tuple

# The original's order: of its per-type files, of a graph's node types, and of the kind codes of OsmFeatures.
KINDS = ("polygon", "line", "point")
POLYGON, LINE, POINT = 0, 1, 2  # 2 minus the geometry's dimension
# The order the model lays nodes out in; the --osm-max-nodes subset keeps it (points, lines, polygons).
NODE_TYPES = ("point", "line", "polygon")
POSITION_POINTS = {"point": 1, "line": 3, "polygon": 4}
MAX_POSITION_POINTS = max(POSITION_POINTS.values())
POSITION_WIDTHS = {t: 2 * k for t, k in POSITION_POINTS.items()}

# Edge types in the original's order (that of its graph files), with the width of their edge_attr.
EDGE_TYPES = (("polygon", "polygon"), ("line", "line"), ("line", "polygon"), ("polygon", "line"),
              ("point", "point"), ("point", "line"), ("line", "point"), ("point", "polygon"), ("polygon", "point"))
EDGE_ATTR_WIDTHS = {("polygon", "polygon"): 6, ("line", "line"): 6, ("line", "polygon"): 3, ("polygon", "line"): 3,
                    ("point", "point"): 2, ("point", "line"): 2, ("line", "point"): 2, ("point", "polygon"): 2,
                    ("polygon", "point"): 2}
# The same relations in the model's order (its graph encoder's weights are named and averaged in it): by source
# type in NODE_TYPES order, each source's own type first.
RELATIONS: Tuple[Tuple[str, str, str], ...] = tuple(
    (s, "to", d) for s, ds in (("point", ("point", "line", "polygon")), ("line", ("line", "point", "polygon")),
                               ("polygon", ("polygon", "point", "line"))) for d in ds)
