"""GeoLink against the original implementation's outputs (../shared/reference/fusion_vit_tiny)."""

from __future__ import annotations

import pytest
import torch

from geolink import load_model
from geolink.osm.graph_edit import empty_graph

from .model_helpers import max_err, ufz_graphs

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def oracle(shared_dir):
    ref = shared_dir / "reference" / "fusion_vit_tiny"
    expected = torch.load(ref / "expected.pt", weights_only=True)
    return load_model(ref / "checkpoint.pth"), expected, ufz_graphs(shared_dir, expected["samples"])


@torch.no_grad()
def test_reproduces_the_original_feature_maps(oracle):
    model, expected, graphs = oracle
    assert not model.training
    model.config.osm_norm = "batch"  # the original's batch-wide OSM LayerNorm statistics
    try:
        feats = model.encode(expected["images"], graphs, expected["output_layers"])
    finally:
        model.config.osm_norm = "graph"
    assert [f.shape for f in feats] == [f.shape for f in expected["features"]]
    errors = [max_err(a, b) for a, b in zip(feats, expected["features"])]
    print("max abs errors", errors)
    assert max(errors) < 1e-4, errors


@torch.no_grad()
def test_per_image_statistics_equal_the_original_on_each_image_alone(oracle):
    """The default (per-image) OSM statistics are the original's for a batch of one."""
    model, expected, graphs = oracle
    layers = [0]  # the fused map on the first block: enough to exercise the OSM statistics, and fast
    for i, g in enumerate(graphs):
        image = expected["images"][i:i + 1]
        default = model.encode(image, [g], layers)[-1]
        model.config.osm_norm = "batch"
        original = model.encode(image, [g], layers)[-1]
        model.config.osm_norm = "graph"
        assert max_err(default, original) < 1e-6


@torch.no_grad()
def test_batch_with_missing_and_empty_graphs_equals_one_at_a_time(oracle):
    model, expected, graphs = oracle
    images = torch.cat([expected["images"], expected["images"][:2]])
    per_image = [graphs[0], None, graphs[2], empty_graph(512), graphs[1]]
    layers = [0, 1]  # a raw map and the fused map, from the first blocks (fast)
    batched = model.encode(images, per_image, layers)
    for i, g in enumerate(per_image):
        alone = model.encode(images[i:i + 1], [g], layers)
        for a, b in zip(batched, alone):
            assert torch.isfinite(a[i]).all()
            assert max_err(a[i:i + 1], b) < 1e-5
    image_only = model.encode(images, None, layers)
    assert max_err(image_only[-1][1], batched[-1][1]) < 1e-6  # None and an empty graph: the image-only path
    assert max_err(image_only[-1][3], batched[-1][3]) < 1e-6
    assert max_err(image_only[-1][0], batched[-1][0]) > 1e-3  # the OSM graph changes the fused map


@torch.no_grad()
def test_deterministic_and_any_layers(oracle):
    model, expected, graphs = oracle
    a = model.encode(expected["images"], graphs, expected["output_layers"])
    b = model.encode(expected["images"], graphs, expected["output_layers"])
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    raw = model.encode(expected["images"], graphs, [3, 5, 6])
    assert max_err(raw[0], expected["features"][0]) < 1e-5 and max_err(raw[1], expected["features"][1]) < 1e-5
    assert raw[2].shape == (3, 256, 14, 14)


@torch.no_grad()
def test_all_ufz_graphs_run(shared_dir, oracle):
    """The Chicago graphs have point nodes but no point relation (the original fails on them)."""
    from .model_helpers import UFZ

    model, expected, _ = oracle
    graphs = ufz_graphs(shared_dir, UFZ)
    images = expected["images"][[0, 1, 2, 0, 1]]
    feats = model.encode(images, graphs)
    assert all(torch.isfinite(f).all() for f in feats)
    for i, g in enumerate(graphs):  # each image's maps are its own, whatever else is in the batch
        assert max(max_err(a[i:i + 1], b) for a, b in zip(feats, model.encode(images[i:i + 1], [g]))) < 1e-5
    image_only = model.encode(images, None)[-1]
    related = [i for i, g in enumerate(graphs) if any(g[et].edge_index.numel() for et in g.edge_types)]
    assert related and all(max_err(image_only[i], feats[-1][i]) > 1e-3 for i in related)  # the OSM reaches the map
