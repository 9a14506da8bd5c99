"""Pretraining data: safe pickles, the pairs layout, tiling, augmentations that move graphs with images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from geolink.errors import InputError
from geolink.osm.graph_edit import from_plain, positions, subgraph, to_plain
from geolink.pretraining.augment import PairAugment, crop_pair, flip_pair
from geolink.pretraining.dataset import step_indices
from geolink.pretraining.prepare import find_pairs
from geolink.pretraining.safe_pickle import load_plain_pickle, read_bbox
from geolink.raster.windows import window_grid


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_refuses_code(tmp_path):
    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps({"bbox": (0, 0, 1, 1), "x": _Exploit()}))
    with pytest.raises(InputError, match="posix.system|os.system|refused"):
        load_plain_pickle(bad)
    builtin = tmp_path / "eval.pickle"
    builtin.write_bytes(pickle.dumps({"bbox": eval}))
    with pytest.raises(InputError, match="refused"):
        read_bbox(builtin)


def test_unpickler_reads_plain_and_numpy_scalars(tmp_path):
    p = tmp_path / "ok.pickle"
    p.write_bytes(pickle.dumps({"bbox": tuple(np.float64(v) for v in (1.5, 2.0, 3.25, 4.0)), "time": 2021}))
    assert read_bbox(p) == (1.5, 2.0, 3.25, 4.0)
    assert load_plain_pickle(p)["time"] == 2021
    inverted = tmp_path / "inv.pickle"
    inverted.write_bytes(pickle.dumps({"bbox": (3, 2, 1, 4)}))
    with pytest.raises(InputError, match="inverted"):
        read_bbox(inverted)


def test_pairs_layout_on_paper_examples(shared_dir):
    pairs = find_pairs(shared_dir / "geolink-examples" / "osm2graph_example")
    assert len(pairs) == 5
    fi = next(p for p in pairs if p["name"] == "a472140250_FI_21")
    assert fi["bbox"] == pytest.approx((21.09095986596293, 63.30618753669535, 21.09262794212925, 63.30738014000828))
    assert set(fi["vectors"]) == {"polygon", "line", "point"}
    assert fi["image"].suffix == ".jpg"


def test_tile_windows_cover_the_raster():
    wins = window_grid(500, 300, 224, 224)
    assert wins[0] == (0, 0) and (276, 76) in wins
    assert all(c + 224 <= 500 and r + 224 <= 300 for c, r in wins)
    assert window_grid(100, 100, 224, 224) == [(0, 0)]


def test_step_indices_are_reproducible_and_split_across_ranks():
    a = step_indices(10, 3, 4, rank=0, world=2, seed=1)
    b = step_indices(10, 3, 4, rank=1, world=2, seed=1)
    assert a == step_indices(10, 3, 4, rank=0, world=2, seed=1)
    assert not set(a) & set(b)
    epoch = [i for s in range(5) for i in step_indices(10, s, 2, seed=0)]
    assert sorted(epoch) == list(range(10))


def _dot_pair(text_dim: int = 4, size: int = 64):
    """An image with one bright pixel at each point node and at each polygon's first point."""
    from torch_geometric.data import HeteroData

    pts = torch.tensor([[0.2, 0.3], [0.7, 0.6], [0.55, 0.15]])
    poly = torch.tensor([[0.4, 0.8, 0.45, 0.82, 0.5, 0.85, 0.42, 0.8]])
    g = HeteroData()
    g["point"].x = torch.cat([torch.arange(3.0)[:, None].repeat(1, text_dim), pts], 1)
    g["polygon"].x = torch.cat([torch.full((1, text_dim), 9.0), poly], 1)
    g["line"].x = torch.zeros(0, text_dim + 6)
    g["point", "to", "point"].edge_index = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 0]])
    g["point", "to", "point"].edge_attr = torch.eye(2)[[1, 1, 1, 0]]
    g["point", "to", "polygon"].edge_index = torch.tensor([[2], [0]])
    g["point", "to", "polygon"].edge_attr = torch.tensor([[1.0, 0.0]])
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    for x, y in torch.cat([pts, poly[:, :2]]):
        image[:, int(y * size), int(x * size)] = 255
    return image, g


def _bright_at(image: torch.Tensor, graph, node_type: str) -> list:
    h, w = image.shape[-2:]
    values = []
    for x, y in positions(graph, node_type)[:, 0]:
        c, r = min(int(x * w), w - 1), min(int(y * h), h - 1)
        values.append(float(image[:, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].max()))
    return values


def test_crop_keeps_nodes_inside_and_remaps_positions():
    image, g = _dot_pair()
    img, out, box = crop_pair(image.float() / 255, g, (0.1, 0.1, 0.6, 0.5))
    text = out["point"].x[:, :4]
    assert text[:, 0].tolist() == [0.0, 2.0]  # points 0 and 2 kept, in source order
    assert out["polygon"].x.shape[0] == 0
    assert out["point", "to", "point"].edge_index.tolist() == [[1, 0], [0, 0]]
    assert out["point", "to", "point"].edge_attr.shape == (2, 2)
    assert out["point", "to", "polygon"].edge_index.shape == (2, 0)
    pos = positions(out, "point")
    assert float(pos.min()) >= 0 and float(pos.max()) <= 1
    assert min(_bright_at(img, out, "point")) > 0.5


def test_flips_and_full_augment_keep_image_and_positions_together():
    image, g = _dot_pair(size=96)
    img, out = flip_pair(image.float() / 255, g.clone(), horizontal=True)
    assert positions(out, "point")[0, 0].tolist() == pytest.approx([0.8, 0.3])
    assert min(_bright_at(img, out, "point")) > 0.5
    img, out = flip_pair(image.float() / 255, g.clone(), horizontal=False)
    assert min(_bright_at(img, out, "point")) > 0.5
    aug = PairAugment(size=96, jitter_p=0.0)
    for seed in range(12):
        img, out = aug(image, g, torch.Generator().manual_seed(seed))
        assert img.shape == (3, 96, 96)
        for t in ("point", "polygon"):
            if out[t].x.shape[0]:
                assert min(_bright_at(img, out, t)) > 0.2, (seed, t)
    assert torch.equal(aug(image, g, torch.Generator().manual_seed(3))[0],
                       aug(image, g, torch.Generator().manual_seed(3))[0])


def test_graph_plain_round_trip(tmp_path):
    _, g = _dot_pair()
    path = tmp_path / "g.pt"
    torch.save(to_plain(g), path)
    back = from_plain(torch.load(path, weights_only=True))
    assert torch.equal(back["point"].x, g["point"].x)
    assert torch.equal(back["point", "to", "polygon"].edge_index, g["point", "to", "polygon"].edge_index)
    sub = subgraph(g, {"point": torch.tensor([False, True, True])})
    assert sub["point", "to", "point"].edge_index.tolist() == [[0], [1]]


def _utm_raster(path, west=500000.0, north=4100000.0, size=64, res=10.0):
    from osgeo import gdal, osr

    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_UInt16)
    ds.SetGeoTransform((west, res, 0, north, 0, -res))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32618)
    ds.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(rng.integers(0, 3000, (size, size)).astype(np.uint16))
    ds = None
    return path


def test_tiling_raster_with_osm_in_another_crs(tmp_path):
    """A UTM raster, OSM features in CRS84: each tile's graph has the features at the right place."""
    import json

    from osgeo import osr

    from geolink.pretraining.prepare import DataSpec, prepare
    from geolink.progress import Progress

    raster = _utm_raster(tmp_path / "r.tif", size=64)  # 640 m x 640 m, tiles of 32 px = 320 m
    utm, wgs = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32618)
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_wgs = osr.CoordinateTransformation(utm, wgs)

    def lonlat(x, y):
        return list(to_wgs.TransformPoint(x, y)[:2])

    # a point 80 m east and 80 m south of the raster's north-west corner: tile (0, 0), position (0.25, 0.25)
    pt = lonlat(500080.0, 4099920.0)
    # a 100 m square 400-500 m east and 100-200 m south of the corner: tile (32, 0), centroid (130, 150) m in it
    square = [lonlat(500400, 4099900), lonlat(500500, 4099900), lonlat(500500, 4099800), lonlat(500400, 4099800)]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "amenity:cafe"}, "geometry": {"type": "Point", "coordinates": pt}},
        {"type": "Feature", "properties": {"label": "building:yes"},
         "geometry": {"type": "Polygon", "coordinates": [square + [square[0]]]}}]}
    osm = tmp_path / "osm.geojson"
    osm.write_text(json.dumps(fc))
    spec = DataSpec(rasters=[str(raster)], osm=[str(osm)], tile_size=32)
    samples = prepare(spec, tmp_path / "cache", Progress())
    assert [s["name"] for s in samples] == ["r_0_0", "r_32_0", "r_0_32", "r_32_32"]
    assert samples[0]["image"].dtype == torch.uint8 and samples[0]["image"].shape == (3, 32, 32)
    nw, ne = samples[0]["graph"], samples[1]["graph"]
    assert nw["nodes"]["point"].shape[0] == 1 and nw["nodes"]["polygon"].shape[0] == 0
    assert nw["nodes"]["point"][0, -2:].tolist() == pytest.approx([0.25, 0.25], abs=1e-3)
    assert ne["nodes"]["polygon"].shape[0] == 1
    centroid = ne["nodes"]["polygon"][0, -2:]  # last position point = centroid, tile x from 320 m, y from north
    assert centroid.tolist() == pytest.approx([130 / 320, 150 / 320], abs=2e-3)
    assert samples[3]["graph"] is None  # no features: image-only sample
    assert len(list((tmp_path / "cache").glob("pairs-*.pt"))) == 1
    again = prepare(spec, tmp_path / "cache", Progress())
    assert torch.equal(again[1]["graph"]["nodes"]["polygon"], ne["nodes"]["polygon"])


def test_prepared_pairs_from_paper_examples(shared_dir, tmp_path):
    from geolink.pretraining.prepare import DataSpec, prepare
    from geolink.progress import Progress

    samples = prepare(DataSpec(pairs=str(shared_dir / "geolink-examples" / "osm2graph_example")), tmp_path,
                      Progress())
    by_name = {s["name"]: s for s in samples}
    fi = by_name["a472140250_FI_21"]
    assert fi["image"].shape == (3, 282, 192)
    assert {t: x.shape[0] for t, x in fi["graph"]["nodes"].items()} == {"polygon": 8, "line": 9, "point": 1}
    assert fi["graph"]["nodes"]["polygon"].shape[1] == 384 + 8
