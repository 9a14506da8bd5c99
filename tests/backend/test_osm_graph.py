"""The OSM graph builder: exact agreement with the original converter, relations, positions, file format."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from shapely.geometry import LineString, Point, Polygon, box

from geolink.errors import InputError
from geolink.osm import OsmFeatures, OsmIndex, build_graph, get_text_encoder, load_graph, read_osm, save_graph
from geolink.osm import relations as rel
from geolink.osm.format import EDGE_TYPES, LINE, POINT, POLYGON
from geolink.osm.graph import TileFrame, polygon_positions
from geolink.osm.text import TagWeights

REFERENCE_SAMPLES = ["a1085095888_S2_20", "a472140250_FI_21", "w221548378_US_21"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return get_text_encoder("minilm", cache_dir=tmp_path_factory.mktemp("textcache"))


def features(polygons=(), lines=(), points=(), label="building:building") -> OsmFeatures:
    geoms = [*polygons, *lines, *points]
    kinds = [POLYGON] * len(polygons) + [LINE] * len(lines) + [POINT] * len(points)
    return OsmFeatures(np.array(geoms, dtype=object), np.array(kinds, dtype=np.int8),
                       np.array([label] * len(geoms), dtype=object))


@pytest.mark.parametrize("via_index", [False, True], ids=["files", "index-query"])
@pytest.mark.parametrize("name", REFERENCE_SAMPLES)
def test_graphs_match_the_original_converter_exactly(shared_dir, encoder, name, via_index):
    ref = json.loads((shared_dir / "reference" / "osm2graph_edges.json").read_text())[name]
    folder = shared_dir / "geolink-examples" / "osm2graph_example" / name
    files = [str(p) for k in ("polygon", "line", "point") if (p := folder / f"{name}_{k}.geojson").exists()]
    feats = read_osm(files, "EPSG:4326")
    if via_index:  # the raster engine's path: the STRtree query clips to the tile, which must change nothing here
        feats = OsmIndex(feats).query(ref["bbox_wsen"])
    graph = build_graph(feats, ref["bbox_wsen"], encoder)
    for kind, count in ref["nodes"].items():
        assert graph[kind].num_nodes == count, kind
    assert len(ref["edges"]) == len(EDGE_TYPES)
    for key, expected in ref["edges"].items():
        src, _, dst = key.split("__")
        store = graph[src, "to", dst]
        assert store.edge_index.tolist() == expected["edge_index"], key
        assert store.edge_attr.argmax(1).tolist() == expected["edge_attr_argmax"], key
        assert (store.edge_attr.sum(1) == 1).all()
    for kind, dims in (("polygon", 2), ("line", 6), ("point", 2)):
        mine = graph[kind].x[:, -dims:]  # polygon: the centroid (the last two of its 8 position values)
        assert torch.equal(mine, torch.tensor(ref["positions"][kind], dtype=torch.float32).view(-1, dims)), kind


def _all_pairs(a, b, rule, same):
    """The original's quadratic loop, as an oracle for the STRtree + vectorised relate path."""
    out = []
    for i, j in itertools.product(range(len(a)), range(len(b))):
        if same:
            if i == j:
                out.append((i, j, rel.SELF))
                continue
            lo, hi = min(i, j), max(i, j)
            code = rule(shapely.relate(a[hi], a[lo]))
            if i > j:
                code = {rel.COVERS: rel.COVERED_BY, rel.COVERED_BY: rel.COVERS}.get(code, code)
            if code not in (rel.DISJOINT, rel.OTHER):
                out.append((i, j, code))
        else:
            code = rule(shapely.relate(a[i], b[j]))
            if code not in (rel.DISJOINT, rel.NONE):
                out.append((i, j, code))
    return out


def _edges(edge_index, attr, order):
    return [(int(s), int(d), order[int(c)]) for s, d, c in zip(edge_index[0], edge_index[1], attr.argmax(1))]


def test_vectorised_relations_equal_the_all_pairs_loop():
    rng = np.random.default_rng(3)
    polys = [box(x, y, x + w, y + h) for x, y, w, h in rng.uniform([0, 0, 1, 1], [20, 20, 8, 8], (40, 4))]
    polys += [polys[0], polys[1].buffer(-0.5), Polygon([(0, 0), (4, 0), (0, 4)])]  # equal, covered, touching
    polys = np.array(polys, dtype=object)
    lines = np.array([LineString(rng.uniform(0, 28, (3, 2))) for _ in range(30)] + [polys[2].exterior],
                     dtype=object)
    on_lines = [Point(line.coords[k]) for line in lines[:5] for k in (0, 1)]  # an end (touches), a middle vertex
    points = np.array([Point(p) for p in rng.uniform(0, 28, (30, 2))] + [Point(polys[3].exterior.coords[0])]
                      + on_lines, dtype=object)
    for geoms in (polys, lines):
        index, attr = rel.same_dim_edges(geoms)
        assert _edges(index, attr, rel.SAME_DIM_CODES) == _all_pairs(geoms, geoms, rel.same_dim_class, True)
    for a, b, rule, order in ((lines, polys, rel.line_polygon_class, rel.LINE_POLYGON_CODES),
                              (points, lines, rel.point_other_class, rel.POINT_OTHER_CODES),
                              (points, polys, rel.point_other_class, rel.POINT_OTHER_CODES)):
        (fi, fa), (bi, ba) = rel.cross_dim_edges(a, b, rule, order)
        expected = _all_pairs(a, b, rule, False)
        assert expected, "the random layout must produce some relations"
        assert _edges(fi, fa, order) == expected
        assert _edges(bi, ba, order) == sorted((j, i, c) for i, j, c in expected)


def test_relation_classes_on_hand_made_shapes():
    big, small = box(0, 0, 10, 10), box(2, 2, 4, 4)
    # same_dim_class(relate(g_j, g_i)) is the class of the edge i -> j
    assert rel.same_dim_class(shapely.relate(small, big)) == rel.COVERS  # big -> small: big covers small
    assert rel.same_dim_class(shapely.relate(big, small)) == rel.COVERED_BY
    assert rel.same_dim_class(shapely.relate(box(10, 0, 12, 2), big)) == rel.TOUCHES
    assert rel.same_dim_class(shapely.relate(box(8, 8, 12, 12), big)) == rel.OVERLAPS
    road = LineString([(-5, 5), (15, 5)])
    assert rel.line_polygon_class(shapely.relate(road, big)) == rel.CROSSES
    assert rel.line_polygon_class(shapely.relate(LineString([(1, 1), (3, 3)]), big)) == 4
    assert rel.point_other_class(shapely.relate(Point(5, 5), big)) == rel.WITHIN
    assert rel.point_other_class(shapely.relate(Point(0, 5), big)) == rel.TOUCHES


def test_points_edges_delaunay_and_self_loops():
    few = rel.delaunay_edges(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    assert few[0].tolist() == [[0, 1, 2], [0, 1, 2]] and few[1].argmax(1).tolist() == [0, 0, 0]
    collinear = rel.delaunay_edges(np.array([[float(i), 0.0] for i in range(5)]))
    assert collinear[0].shape == (2, 5)  # Qhull refuses: only the self loops, as in the original
    square = rel.delaunay_edges(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert square[0].shape[1] == 10 + 4  # 5 triangle sides both ways, then 4 self loops
    assert square[1][:10].argmax(1).tolist() == [1] * 10 and square[1][10:].argmax(1).tolist() == [0] * 4


def test_polygon_positions_are_inside_deterministic_and_seeded():
    polys = np.array([box(0, 0, 10, 10), Polygon([(0, 0), (10, 0), (10, 1), (1, 1), (1, 10), (0, 10)])], dtype=object)
    frame = TileFrame((0, 0, 10, 10))
    a, b = polygon_positions(polys, frame, seed=0), polygon_positions(polys, frame, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, polygon_positions(polys, frame, seed=1))
    assert np.allclose(a[0, 6:], [0.5, 0.5])  # the centroid, y measured from the north edge
    xy = a[0, :6].reshape(3, 2) * 10
    assert shapely.contains_xy(polys[0], xy[:, 0], 10 - xy[:, 1]).all()
    assert np.isclose(a[0, 1], a[0, 7])  # the first inner point lies due east of the centroid


def test_graph_format_and_round_trip(tmp_path, encoder):
    tile = (0.0, 0.0, 100.0, 100.0)
    data = build_graph(features([box(0, 0, 100, 100), box(10, 10, 20, 20)], [LineString([(0, 50), (100, 50)])],
                                [Point(15, 15), Point(70, 70)]), tile, encoder)
    assert data["polygon"].x.shape == (2, 384 + 8) and data["line"].x.shape == (1, 384 + 6)
    assert data["point"].x.shape == (2, 384 + 2)
    assert [(s, d) for s, _, d in data.edge_types] == list(EDGE_TYPES)
    # the huge polygon covering the tile relates to everything
    assert data["point", "to", "polygon"].edge_index.tolist() == [[0, 0, 1], [0, 1, 0]]
    path = save_graph(data, tmp_path / "g.pt")
    loaded = load_graph(str(path))
    for key in data.node_types:
        assert torch.equal(loaded[key].x, data[key].x)
    for key in data.edge_types:
        assert torch.equal(loaded[key].edge_index, data[key].edge_index)
    assert not list(tmp_path.glob("*.partial-*"))


def test_empty_and_single_kind_tiles(encoder):
    assert build_graph(OsmFeatures.empty(), (0, 0, 1, 1), encoder) is None
    data = build_graph(features(points=[Point(0.5, 0.5)]), (0, 0, 1, 1), encoder, TagWeights({}))
    assert data["polygon"].x.shape == (0, 392) and data["polygon", "to", "polygon"].edge_attr.shape == (0, 6)
    assert data["point", "to", "point"].edge_index.tolist() == [[0], [0]]
    with pytest.raises(InputError):
        build_graph(features(points=[Point(0, 0)]), (1, 0, 1, 1), encoder)


def test_original_graph_files_load_safely(shared_dir):
    path = sorted((shared_dir / "geolink-examples" / "ufz_example" / "graph").glob("*.pt"))[0]
    data = load_graph(str(path))
    assert data["polygon"].x.shape[1] == 520 and data["point", "to", "point"].edge_attr.shape[1] == 2


def test_load_graph_refuses_other_files(tmp_path):
    bad = Path(tmp_path / "bad.pt")
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError):
        load_graph(str(bad))
