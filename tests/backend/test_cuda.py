"""The model on a CUDA GPU, against the same model on the CPU: encode, bf16 autocast, the pretraining
losses and a task head. Skipped where torch sees no GPU (CI has none; the lent GPU machines do)."""

from __future__ import annotations

import pytest
import torch

from geolink.models import build_segmenter
from geolink.osm.graph_edit import empty_graph

from .model_helpers import TEXT_DIM, random_graph, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).norm() / b.float().norm())


def graphs():
    return [random_graph(3, 2, 4, seed=1), None, random_graph(40, 60, 30, edges=200, seed=2), empty_graph(TEXT_DIM),
            random_graph(5, 6, 1, edges=12, seed=3)]


@pytest.fixture()
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@torch.no_grad()
def test_encode_on_cuda_equals_cpu(no_tf32):
    model = tiny_model(seed=4).eval()
    gs = graphs()
    images = torch.randn(len(gs), 3, 32, 32)
    cpu = model.encode(images, gs)
    gpu = model.cuda().encode(images.cuda(), gs)
    assert all(g.is_cuda for g in gpu)
    assert max(rel_err(g, c) for g, c in zip(gpu, cpu)) < 1e-5
    for i, g in enumerate(gs):  # the batch does not change an image's result on the GPU either
        alone = model.encode(images[i:i + 1].cuda(), [g])
        assert max(rel_err(a, b[i:i + 1]) for a, b in zip(alone, gpu)) < 1e-5


@torch.no_grad()
def test_a_packed_pinned_graph_batch_moves_in_one_copy_per_dtype(no_tf32):
    """The classify engine's collate: page-locked buffers, moved with one copy per dtype, the same outputs."""
    from geolink.inference.job import graph_collator

    model = tiny_model(seed=4).eval().cuda()
    gs = graphs()
    images = torch.randn(len(gs), 3, 32, 32, device="cuda")
    packed = graph_collator(model, pin=True)(gs)
    assert all(b.is_pinned() for b in packed.buffers.values()) and len(packed.buffers) == 3
    moved = packed.to("cuda")
    assert moved.node_type.is_cuda and moved.x["point"].data_ptr() != packed.x["point"].data_ptr()
    expect = model.encode(images, gs)
    assert max(rel_err(a, b) for a, b in zip(model.encode(images, packed), expect)) < 1e-6


@torch.no_grad()
def test_bfloat16_autocast_is_close_to_float32():
    model = tiny_model(seed=5).eval().cuda()
    gs = graphs()
    images = torch.randn(len(gs), 3, 32, 32, device="cuda")
    full = model.encode(images, gs)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        half = model.encode(images, gs)
    assert all(torch.isfinite(h).all() for h in half)
    assert max(rel_err(h, f) for h, f in zip(half, full)) < 5e-2


def test_pretraining_losses_and_a_head_train_on_cuda():
    model = tiny_model(seed=6).train().cuda()
    gs = graphs()
    torch.manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model.pretrain_losses(torch.randn(len(gs), 3, 32, 32, device="cuda"), gs)
    sum(losses).backward()
    assert all(torch.isfinite(v) for v in losses)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    model.zero_grad()
    head = build_segmenter(model.eval(), "fpn", 3).cuda()
    logits = head(torch.randn(2, 3, 32, 32, device="cuda"), gs[:2])
    assert logits.shape == (2, 3, 32, 32) and logits.is_cuda
    logits.logsumexp(1).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    ensemble = build_segmenter(model.eval(), "detail", 3, members=3).cuda().eval()  # averaged in float32
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        averaged = ensemble(torch.randn(2, 3, 32, 32, device="cuda"), gs[:2])
    assert averaged.shape == (2, 3, 32, 32) and torch.isfinite(averaged).all()
