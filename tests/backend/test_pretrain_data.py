"""Pretraining data: safe pickles, the pairs layout, tiling, augmentations that move graphs with images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from geolink.errors import InputError
from geolink.pretraining.augment import PairAugment, crop_pair, flip_pair
from geolink.pretraining.dataset import step_indices
from geolink.pretraining.graphs import from_plain, positions, subgraph, to_plain
from geolink.pretraining.prepare import find_pairs, tile_windows
from geolink.pretraining.safe_pickle import load_plain_pickle, read_bbox


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
    wins = tile_windows(500, 300, 224, 224)
    assert wins[0] == (0, 0) and (276, 76) in wins
    assert all(c + 224 <= 500 and r + 224 <= 300 for c, r in wins)
    assert tile_windows(100, 100, 224, 224) == [(0, 0)]


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
