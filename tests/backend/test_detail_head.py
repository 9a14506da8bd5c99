"""The detail head (FPN with guided upsampling over the input bands): it places edges inside a ViT
patch where the patch-level FPN head cannot, trains on cached frozen features, and runs in the streaming
engine (windows, overlap, blending) and under bfloat16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geolink.inference.engine import Runtime, run_windows
from geolink.models import build_segmenter
from geolink.progress import Progress
from geolink.raster.source import Source
from geolink.raster.windows import WindowPlan

from .model_helpers import random_graph, tiny_model
from .raster_helpers import s2_crop

torch.set_num_threads(1)


def edge_images(n: int, size: int = 32, seed: int = 0):
    """Images whose class (0/1) is the side of a straight edge at a random place and angle, shown in band 0
    (+-1 with noise); the edge cuts through ViT patches anywhere. Returns (images, labels, edge-zone mask)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images, labels, near = [], [], []
    for _ in range(n):
        angle, offset = g.uniform(0, np.pi), g.uniform(-6, 6)
        d = (xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle) - offset
        label = (d > 0).astype(np.int64)
        img = g.normal(0, 0.3, (3, size, size)).astype(np.float32)
        img[0] += np.where(label == 1, 1.0, -1.0)
        images.append(img)
        labels.append(label)
        near.append(np.abs(d) <= 2)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)), np.stack(near)


def train_on_cached_features(decoder: str, steps: int = 80):
    """Fit a head on the cached features of a frozen random encoder (as finetune does); the detail
    head reads the images too. Returns accuracy on the pixels within 2 px of held-out edges."""
    encoder = tiny_model(seed=1).eval()
    seg = build_segmenter(encoder, decoder, 2)
    images, labels, _ = edge_images(24, seed=0)
    test_images, test_labels, test_near = edge_images(12, seed=1)
    with torch.no_grad():
        cached = [f.half() for f in seg.encode(images)]  # the cache keeps float16, as training/cache.py
        test_cached = seg.encode(test_images)
    torch.manual_seed(0)
    opt = torch.optim.Adam(seg.head.parameters(), lr=3e-3)
    seg.head.train()
    for step in range(steps):
        idx = torch.from_numpy(np.random.default_rng(step).choice(len(images), 8, replace=False))
        logits = seg.head([f[idx].float() for f in cached], images[idx])
        loss = torch.nn.functional.cross_entropy(logits, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seg.head.eval()
    with torch.no_grad():
        pred = seg.head(test_cached, test_images).argmax(1).numpy()
    return float((pred == test_labels.numpy())[test_near].mean())


def test_detail_head_draws_edges_inside_patches_that_fpn_blurs():
    detail, fpn = train_on_cached_features("detail"), train_on_cached_features("fpn")
    assert detail >= 0.95, detail
    assert detail > fpn + 0.05, (detail, fpn)


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(2)
    return build_segmenter(tiny_model(seed=2, img_size=64, osm=False), "detail", 3).eval()


def test_streaming_windows_blend_the_detail_head(segmenter, data_dir, tmp_path):
    """Windows of 64 px overlapping by 16: pixels only the first window covers equal its direct output, and
    every pixel comes out (also under bfloat16 autocast, which agrees with float32 on almost every pixel)."""
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=150)))
    bands = src.choose_bands(["red", "green", "blue"], None)
    norm = src.normaliser({}, bands)
    plan = WindowPlan(src.width, src.height, 64, 16)
    outs = {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        out = np.full((3, src.height, src.width), np.nan, np.float32)

        def sink(row, values, valid, out=out):
            out[:, row:row + values.shape[1]] = np.where(valid, values, np.nan)

        runtime = Runtime("cpu", 4)
        runtime.autocast_dtype = dtype
        run_windows(src, bands, norm, plan, segmenter, 3, sink, runtime, Progress())
        assert np.isfinite(out).all()
        outs[name] = out
    raw, _ = src.read(bands, 0, 0, 64, 64)
    with torch.no_grad():
        direct = segmenter(torch.from_numpy(norm(raw))[None])[0].numpy()
    assert np.allclose(outs["float32"][:, :48, :48], direct[:, :48, :48], atol=1e-4)
    agree = (outs["float32"].argmax(0) == outs["bfloat16"].argmax(0)).mean()
    assert agree > 0.9, agree


def test_detail_head_with_osm_fused_features_under_autocast():
    seg = build_segmenter(tiny_model(seed=4), "detail", 3).eval()
    torch.manual_seed(5)
    images = torch.randn(2, 3, 32, 32)
    graphs = [random_graph(2, 3, 1, seed=i) for i in range(2)]
    with torch.no_grad():
        full = seg(images, graphs)
        alone = seg(images, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = seg(images, graphs)
    assert full.shape == (2, 3, 32, 32) and half.dtype == torch.bfloat16
    assert float((full - alone).abs().max()) > 1e-4  # the OSM graphs change the per-pixel logits
    assert float((full - half.float()).abs().max()) < 0.25 * float(full.abs().max())


def test_detail_head_refuses_features_without_the_bands(segmenter):
    from geolink.errors import InputError

    with torch.no_grad():
        feats = segmenter.encode(torch.zeros(1, 3, 64, 64))
        with pytest.raises(InputError, match="input bands"):
            segmenter.head(feats)


def test_guided_upsampling_keeps_what_the_bands_explain_and_sums_to_one():
    """A map that is a linear function of the guide's bands comes back at full resolution (edges included), and
    the detail head's output is a probability distribution over the classes at every pixel."""
    from geolink.models.heads import guided_log_probabilities, guided_upsample

    torch.manual_seed(0)
    guide = torch.randn(2, 3, 32, 32).double()
    guide[:, 0, :, 13:] += 3.0  # an edge at column 13, inside a 4 px cell of the coarse grid
    truth = 0.5 * guide[:, :1] - 0.25 * guide[:, 2:] + 1.0
    coarse = torch.nn.functional.avg_pool2d(truth, 4)
    fine = guided_upsample(coarse, guide, eps=1e-6)
    bilinear = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    assert float((fine - truth).abs().mean()) < 0.25 * float((bilinear - truth).abs().mean())
    logp = guided_log_probabilities(torch.randn(2, 4, 8, 8), guide.float())
    assert logp.shape == (2, 4, 32, 32)
    assert torch.allclose(logp.exp().sum(1), torch.ones(2, 32, 32), atol=1e-5)


def test_a_package_with_the_first_detail_head_is_refused_with_what_to_do(tmp_path):
    """Packages fine-tuned with the learnt full-resolution path (the first detail head) get a plain message."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from geolink.errors import ModelError
    from geolink.models import load_model

    from .tiny_models import make_package

    path = make_package(tmp_path / "detail.safetensors", decoder="detail")
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    assert load_model(path).card.head["decoder"] == "detail"
    tensors["head.detail.stem.0.0.weight"] = torch.zeros(16, 3, 3, 3)  # the first detail head's layout
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelError, match="first version of the detail head") as err:
        load_model(path)
    assert "Fine-tune it again" in err.value.hint
