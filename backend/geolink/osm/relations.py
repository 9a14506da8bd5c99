"""Spatial relations between OSM entities, classified like the original GeoLink converter.

The original classifies each pair's DE-9IM matrix with a cascade of regular expressions. On a
9-character matrix those expressions reduce to the positional rules below (checked exhaustively
against all 4**9 matrices while writing this module). The matrix cells are, in order:
II IB IE BI BB BE EI EB EE (I interior, B boundary, E exterior; 'F' = empty intersection).

Only pairs whose geometries intersect can be related (a disjoint pair has II, IB, BI and BB all
'F'), so candidates come from an STRtree `intersects` query and each candidate's matrix from one
vectorised `shapely.relate` call; distinct matrices are classified once.
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np
import shapely

SELF, DISJOINT, TOUCHES, OVERLAPS, COVERS, COVERED_BY, EQUALS, OTHER = range(8)
CROSSES, WITHIN, NONE = 3, 3, 0
LINE_IN_POLYGON = 4  # line covered by polygon / polygon covers line

# One-hot column order of each edge type's edge_attr, as in the original (codes sorted ascending).
SAME_DIM_CODES = (SELF, TOUCHES, OVERLAPS, COVERS, COVERED_BY, EQUALS)
LINE_POLYGON_CODES = (TOUCHES, CROSSES, LINE_IN_POLYGON)
POINT_OTHER_CODES = (TOUCHES, WITHIN)

II, IB, IE, BI, BB, BE, EI, EB, EE = range(9)


def _empty(m: str, *cells: int) -> bool:
    return all(m[c] == "F" for c in cells)


def _touch_or_disjoint(m: str) -> int:
    """For a matrix with II empty: disjoint when nothing else meets, else touches."""
    return DISJOINT if _empty(m, IB, BI, BB) else TOUCHES


def same_dim_class(m: str) -> int:
    """Class of r[i, j] for two geometries of one dimension, where m = relate(g_j, g_i)."""
    if m[II] == "F":
        return _touch_or_disjoint(m)
    if _empty(m, EI, EB):
        return COVERED_BY  # g_j covers g_i
    if _empty(m, IE, BE):
        return COVERS  # g_j is covered by g_i
    if m[IE] != "F" and m[EI] != "F":
        return OVERLAPS
    return OTHER


def line_polygon_class(m: str) -> int:
    """Class for m = relate(line, polygon): touches 2, crosses 3, covered by 4, none 0 (or disjoint 1)."""
    if m[II] == "F":
        return _touch_or_disjoint(m)
    if _empty(m, IE, BE):
        return LINE_IN_POLYGON
    if m[IE] != "F" or m[EI] != "F":
        return CROSSES
    return NONE


def point_other_class(m: str) -> int:
    """Class for m = relate(point, other): touches 2, within 3, none 0 (or disjoint 1)."""
    if m[II] == "F":
        return _touch_or_disjoint(m)
    if _empty(m, IE, BE):
        return WITHIN
    return NONE


def _classify(matrices: np.ndarray, rule: Callable[[str], int]) -> np.ndarray:
    if len(matrices) == 0:
        return np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(matrices, return_inverse=True)
    return np.array([rule(str(m)) for m in unique], dtype=np.int64)[inverse.reshape(-1)]


def _one_hot(codes: np.ndarray, order: Tuple[int, ...]) -> np.ndarray:
    lookup = np.full(max(order) + 1, -1, dtype=np.int64)
    lookup[list(order)] = np.arange(len(order))
    out = np.zeros((len(codes), len(order)), dtype=np.float32)
    out[np.arange(len(codes)), lookup[codes]] = 1.0
    return out


def _sorted(src: np.ndarray, dst: np.ndarray, codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((dst, src))
    return src[order], dst[order], codes[order]


Edges = Tuple[np.ndarray, np.ndarray]  # edge_index [2, E] int64, edge_attr [E, C] float32


def same_dim_edges(geoms: np.ndarray) -> Edges:
    """Edges among geometries of one dimension: self loops plus touches/overlaps/covers/covered-by/equals."""
    n = len(geoms)
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    forward = _classify(shapely.relate(geoms[j], geoms[i]), same_dim_class)
    mirror = np.array([SELF, DISJOINT, TOUCHES, OVERLAPS, COVERED_BY, COVERS, EQUALS, OTHER])[forward]
    loops = np.arange(n)
    src = np.concatenate([loops, i, j])
    dst = np.concatenate([loops, j, i])
    codes = np.concatenate([np.full(n, SELF), forward, mirror])
    keep = (codes != DISJOINT) & (codes != OTHER)
    src, dst, codes = _sorted(src[keep], dst[keep], codes[keep])
    return np.stack([src, dst]), _one_hot(codes, SAME_DIM_CODES)


def cross_dim_edges(a: np.ndarray, b: np.ndarray, rule: Callable[[str], int],
                    order: Tuple[int, ...]) -> Tuple[Edges, Edges]:
    """Edges a->b and b->a from relate(a_i, b_j), both carrying the same class; sorted by source then target."""
    i, j = shapely.STRtree(b).query(a, predicate="intersects")
    codes = _classify(shapely.relate(a[i], b[j]), rule)
    keep = (codes != DISJOINT) & (codes != NONE)
    i, j, codes = i[keep], j[keep], codes[keep]
    fi, fj, fc = _sorted(i, j, codes)
    bj, bi, bc = _sorted(j, i, codes)
    return (np.stack([fi, fj]), _one_hot(fc, order)), (np.stack([bj, bi]), _one_hot(bc, order))


def delaunay_edges(xy: np.ndarray) -> Edges:
    """Point-to-point edges: Delaunay neighbours (class 1) for more than 3 points, then self loops (class 0)."""
    n = len(xy)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if n > 3:
        from scipy.spatial import Delaunay, QhullError

        try:
            tri = Delaunay(xy).simplices
        except QhullError:  # collinear or coincident points: the original keeps only the self loops
            tri = None
        if tri is not None:
            ends = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]])
            pairs = np.unique(np.concatenate([ends, ends[:, ::-1]]), axis=0).astype(np.int64)
    loops = np.repeat(np.arange(n, dtype=np.int64)[:, None], 2, axis=1)
    edge_index = np.concatenate([pairs, loops]).T
    attr = np.zeros((len(pairs) + n, 2), dtype=np.float32)
    attr[: len(pairs), 1] = 1.0
    attr[len(pairs):, 0] = 1.0
    return edge_index, attr
