"""The GeoLink model on tiny configurations: encode, graphs, fusion, position embeddings, pretraining losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_geometric

from geolink.errors import InputError, ModelError
from geolink.models import GeoLinkConfig, create_geolink, default_layers
from geolink.models.graphs import IN_RELATIONS, NODE_TYPES, OUT_RELATIONS, RELATIONS, collate_graphs
from geolink.models.objectives import choose_per_graph
from geolink.models.pos_embed import sincos_table
from geolink.osm.graph_edit import empty_graph

from .model_helpers import TEXT_DIM, max_err, random_graph, tiny_model

torch.set_num_threads(2)


def with_random_affine(m: torch.nn.Module) -> torch.nn.Module:
    """Biases and LayerNorm scales are 0 and 1 at initialisation (and in the fidelity oracle), which would
    hide a misplaced bias or affine map: here they are random, as in trained weights."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
        for module in m.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch_geometric.nn.LayerNorm)):
                module.weight.normal_(1.0, 0.1)
    return m.eval()


@pytest.fixture(scope="module")
def model():
    return with_random_affine(tiny_model())


def graphs():
    return [random_graph(3, 2, 4, seed=1), None, random_graph(1, 0, 0, seed=2), empty_graph(TEXT_DIM),
            random_graph(5, 6, 1, edges=12, seed=3)]


def test_position_table_is_the_sin_cos_of_the_patch_grid():
    dim, n = 16, 3
    table = sincos_table(dim, n)[0].numpy()
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    for row, (y, x) in enumerate([(y, x) for y in range(n) for x in range(n)], start=1):
        expect = np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)])
        np.testing.assert_allclose(table[row], expect, atol=1e-6)
    assert not table[0].any()  # the class token's row


def test_default_layers_are_the_originals():
    assert default_layers(12) == [3, 5, 7, 11] and default_layers(24) == [7, 11, 15, 23]


@torch.no_grad()
def test_encode_shapes_and_sizes(model):
    feats = model.encode(torch.randn(2, 3, 32, 32), graphs()[:2])
    assert [tuple(f.shape) for f in feats] == [(2, 64, 2, 2)] * 3 + [(2, 32, 2, 2)]
    assert model.out_channels() == [64, 64, 64, 32]
    other = model.encode(torch.randn(1, 3, 48, 80), [random_graph(2, 2, 2)], layers=[1, 3])
    assert [tuple(f.shape) for f in other] == [(1, 64, 3, 5), (1, 32, 3, 5)]
    with pytest.raises(InputError, match="multiple of the patch size"):
        model.encode(torch.randn(1, 3, 40, 32))
    with pytest.raises(InputError, match="block indices"):
        model.encode(torch.randn(1, 3, 32, 32), layers=[4])
    with pytest.raises(InputError, match="one per image"):
        model.encode(torch.randn(2, 3, 32, 32), [None])
    with pytest.raises(InputError, match="text values"):
        model.encode(torch.randn(1, 3, 32, 32), [random_graph(1, 1, 1, text_dim=TEXT_DIM + 1)])


@torch.no_grad()
def test_batch_equals_one_at_a_time_and_is_deterministic(model):
    gs = graphs()
    images = torch.randn(len(gs), 3, 32, 32)
    batched = model.encode(images, gs)
    assert all(torch.equal(a, b) for a, b in zip(batched, model.encode(images, gs)))
    for i, g in enumerate(gs):
        for a, b in zip(batched, model.encode(images[i:i + 1], [g])):
            assert max_err(a[i:i + 1], b) < 1e-5


@torch.no_grad()
def test_image_without_nodes_takes_the_image_only_path(model):
    images = torch.randn(3, 3, 32, 32)
    raw = model.encode(images, None, layers=[3])[0]  # fused map without graphs
    x = model._with_cls(model._patch_tokens(images)[0])
    for blk in model.img_encoder.blocks:
        x = blk(x)
    block = model.osm_cross_modal_encoder[0]
    expect = block.norm2(model.img_fusion_mlp(model.img_norm(x[:, 1:])))
    assert max_err(raw.flatten(2).transpose(1, 2), expect) < 1e-5
    mixed = model.encode(images, [random_graph(2, 2, 2), empty_graph(TEXT_DIM), None], layers=[3])[0]
    assert torch.isfinite(mixed).all()
    assert max_err(mixed[1:], raw[1:]) < 1e-5 and max_err(mixed[:1], raw[:1]) > 1e-3


def plain_fused_map(model, image: torch.Tensor, graph) -> torch.Tensor:
    """The fused map [1, L, C] computed with the original's modules as they are on one image: the ViT blocks,
    GAT, torch_geometric LayerNorm per node type, node MLPs, nn.MultiheadAttention."""
    x = model._with_cls(model._patch_tokens(image)[0])
    for blk in model.img_encoder.blocks:
        x = blk(x)
    gb = collate_graphs([graph], model.text_dim)
    h = gb.split(model.osm_encoder(gb, gb.x))
    nodes = torch.cat([model.osm_node_fusion_mlp[t](model.osm_norm[t](h[t])) for t in NODE_TYPES])[None]
    node_pe = torch.cat([model._node_pos(gb.pos[t]) for t in NODE_TYPES])[None]
    queries = model.img_fusion_mlp(model.img_norm(x[:, 1:]))
    query_pe = model._pos(model.fusion_img_pos_embed, image.shape[2] // 16, image.shape[3] // 16)
    block = model.osm_cross_modal_encoder[0]
    keys = nodes + node_pe
    nodes = block.norm1(nodes + block.self_attn(keys, keys, nodes, need_weights=False)[0])
    att = block.cross_attn_token_to_image(queries + query_pe, nodes + node_pe, nodes, need_weights=False)[0]
    return block.norm2(queries + att)


@torch.no_grad()
def test_fused_map_equals_the_plain_modules(model):
    """encode's fused map (folded weights, packed attention) equals the original's modules run as they are."""
    g, image = random_graph(3, 4, 2, edges=8, seed=4), torch.randn(1, 3, 32, 32)
    fused = model.encode(image, [g], layers=[3])[0].flatten(2).transpose(1, 2)
    assert max_err(fused, plain_fused_map(model, image, g)) < 1e-5


@pytest.mark.parametrize("arch", ["tiny", "small", "base", "large"])
@torch.no_grad()
def test_every_vit_size_equals_the_plain_modules(arch):
    """The real widths and head counts of each ViT size (three blocks deep to stay small), CLIP-wide tag
    embeddings, the original's fusion sizes, a non-square non-native input: encode equals the plain modules."""
    torch.manual_seed(0)
    model = with_random_affine(create_geolink(arch, text_dim=512, img_size=64, vit_overrides={"depth": 3},
                                              pretraining=False))
    g, image = random_graph(6, 5, 4, edges=10, seed=7, text_dim=512), torch.randn(1, 3, 48, 80)
    feats = model.encode(image, [g], layers=[0, 2])
    assert [f.shape[1] for f in feats] == [model.embed_dim, 256]
    assert max_err(feats[1].flatten(2).transpose(1, 2), plain_fused_map(model, image, g)) < 1e-5


@torch.no_grad()
def test_fusion_node_cap_is_deterministic_and_per_image(model):
    """max_fusion_nodes keeps an evenly spaced subset of each image's nodes (every type keeps its share);
    the other images, and the graph encoder's statistics, are untouched."""
    big, small = random_graph(9, 7, 5, edges=10, seed=8), random_graph(2, 1, 1, seed=9)
    gb = collate_graphs([big, small, None], TEXT_DIM, max_fusion_nodes=8)
    kept = gb.fusion_nodes
    assert torch.bincount(gb.node_graph[kept], minlength=3).tolist() == [8, 4, 0]
    assert torch.bincount(gb.node_type[kept][gb.node_graph[kept] == 0], minlength=3).tolist() == [2, 3, 3]
    assert gb.reached.all()  # every node still goes through the GAT and its LayerNorm

    images = torch.randn(3, 3, 32, 32)
    full = model.encode(images, [big, small, None])[-1]
    model.max_fusion_nodes = 8
    try:
        capped = model.encode(images, [big, small, None])[-1]
        alone = model.encode(images[:1], [big])[-1]
    finally:
        model.max_fusion_nodes = None
    assert max_err(capped[0], full[0]) > 1e-3 and max_err(capped[:1], alone) < 1e-5
    assert max_err(capped[1:], full[1:]) < 1e-5
    with pytest.raises(InputError, match="at least 1"):
        collate_graphs([big], TEXT_DIM, max_fusion_nodes=0)


@torch.no_grad()
def test_nodes_no_relation_reaches_are_left_out(model):
    """Point nodes in a graph without point relations get no embedding (as in the original) and no say."""
    no_point_rel = [r for r in RELATIONS if "point" not in (r[0], r[2])]
    with_points = random_graph(3, 3, 4, relations=no_point_rel, seed=5)
    without = with_points.clone()
    without["point"].x = with_points["point"].x[:0]
    image = torch.randn(1, 3, 32, 32)
    assert max_err(model.encode(image, [with_points])[-1], model.encode(image, [without])[-1]) < 1e-6


def test_collate_offsets_edges_and_records_relations():
    a, b = random_graph(2, 1, 3, seed=1), random_graph(1, 2, 0, seed=2, relations=RELATIONS[:3])
    gb = collate_graphs([a, None, b], TEXT_DIM)
    assert gb.num_graphs == 3 and gb.x["polygon"].shape == (3, TEXT_DIM) and gb.pos["polygon"].shape == (3, 4, 2)
    assert gb.batch["polygon"].tolist() == [0, 0, 2]
    assert gb.starts == {"point": 0, "line": 3, "polygon": 6} and gb.node_graph.tolist() == [0, 0, 0, 0, 2, 2, 0, 0, 2]
    rel = ("point", "to", "line")
    assert gb.present[:, RELATIONS.index(rel)].tolist() == [True, False, True]
    assert gb.present[2].sum() == 3
    # every edge lands on flat rows: source node * 3 + its out-relation slot, target node * 3 + its in-relation slot
    expect = []
    for g, first in ((a, {"point": 0, "line": 3, "polygon": 6}), (b, {"point": 3, "line": 4, "polygon": 8})):
        for r, (s, name, d) in enumerate(RELATIONS):
            if (s, name, d) in g.edge_types:
                for i, j in g[s, name, d].edge_index.t().tolist():
                    expect.append(((first[s] + i) * 3 + OUT_RELATIONS[s].index(r),
                                   (first[d] + j) * 3 + IN_RELATIONS[d].index(r)))
    assert sorted(zip(gb.gat_src.tolist(), gb.gat_dst.tolist())) == sorted(expect)
    assert torch.equal(gb.gat_target, gb.gat_dst // 3)
    assert gb.reached.all()  # b has relations from points (without edges) into lines and polygons
    bad = random_graph(1, 1, 1, seed=3)
    bad["point", "to", "line"].edge_index[1, 0] = 5
    with pytest.raises(InputError, match="edge to a node"):
        collate_graphs([bad], TEXT_DIM)
    bad["point", "to", "line"].edge_index = torch.zeros(3, dtype=torch.long)
    with pytest.raises(InputError, match="expected"):
        collate_graphs([bad], TEXT_DIM)


def tensors(gb) -> list:
    """Every tensor of a GraphBatch (its padding's too), in GraphBatch.map's order."""
    out = []
    gb.map(lambda t: out.append(t) or t)
    return out


@torch.no_grad()
def test_packed_graph_batch_round_trips_and_gives_the_same_outputs(model):
    """pack() puts every tensor in one buffer per dtype (views, nothing else allocated); moved with to() it
    comes back exactly, and the model's outputs with it are those with the plain batch and with the graphs."""
    gs, images = graphs(), torch.randn(5, 3, 32, 32)
    for cap in (None, 2):
        gb = collate_graphs(gs, TEXT_DIM, max_fusion_nodes=cap)
        packed = gb.pack()
        assert gb.buffers is None and sorted(map(str, packed.buffers)) == ["torch.bool", "torch.float32", "torch.int64"]
        plain, views = tensors(gb), tensors(packed)
        assert len(views) == len(plain) >= 25 and packed.padding.order is not None  # mask and order included
        for buffer in packed.buffers.values():
            assert buffer.is_contiguous() and buffer.numel() == sum(t.numel() for t in plain if t.dtype == buffer.dtype)
        for p, v in zip(plain, views):
            assert v.dtype == p.dtype and torch.equal(v, p)
            assert v.untyped_storage().data_ptr() == packed.buffers[v.dtype].untyped_storage().data_ptr()
        for moved in (packed.to("cpu"), packed.to("cpu", torch.float64)):
            assert moved.buffers is None
            for p, m in zip(plain, tensors(moved)):
                assert torch.equal(m, p.double() if p.is_floating_point() and m.dtype == torch.float64 else p)
        model.max_fusion_nodes = cap
        try:
            expect = model.encode(images, gs)
            for batch in (gb, packed, packed.to("cpu")):
                assert all(torch.equal(a, b) for a, b in zip(model.encode(images, batch), expect))
        finally:
            model.max_fusion_nodes = None


@torch.no_grad()
def test_fused_relations_equal_torch_geometric_heteroconv(model):
    """One graph with every relation: the batched encoder equals HeteroConv(GATConv per relation, mean) + ReLU."""
    g = random_graph(4, 5, 3, edges=9, seed=11)
    gb = collate_graphs([g], TEXT_DIM)
    ours, reached = gb.split(model.osm_encoder(gb, gb.x)), gb.split(gb.reached)
    hetero = model.osm_encoder.convs[0]
    theirs = hetero({t: gb.x[t] for t in gb.x}, {rel: g[rel].edge_index for rel in RELATIONS})
    for t, v in theirs.items():
        assert reached[t].all() and max_err(ours[t], v.relu()) < 1e-5


def test_autocast_bfloat16_is_close_to_float32(model):
    """bf16 autocast on the CPU (the second image has no OSM: the masked output projection path)."""
    images, gs = torch.randn(2, 3, 32, 32), graphs()[:2]
    with torch.no_grad():
        ref = model.encode(images, gs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = model.encode(images, gs)
    for f, r in zip(feats, ref):
        assert torch.isfinite(f.float()).all() and max_err(f.float(), r) < 0.05 * r.abs().max()


def test_pretrain_losses_train_every_part():
    model = tiny_model(seed=1).train()
    gs = graphs()
    torch.manual_seed(0)
    losses = model.pretrain_losses(torch.randn(len(gs), 3, 32, 32), gs)
    assert len(losses) == 3 and all(torch.isfinite(v) and v > 0 for v in losses)
    sum(losses).backward()
    for prefix in ("img_encoder.blocks.0.", "img_cross_modal_decoder.", "img_decoder_pred", "osm_encoder.",
                   "osm_read_out.", "osm_aggr_mlp.", "osm_graph_consistency_prj", "img_consistency_prj",
                   "osm_node_fusion_mlp.", "osm_cross_modal_encoder.0.norm4", "osm_node_pred", "osm_mask_token."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), prefix
    torch.manual_seed(0)
    again = model.pretrain_losses(torch.randn(len(gs), 3, 32, 32), gs)
    torch.manual_seed(0)
    assert [float(v) for v in again] == [float(v) for v in model.pretrain_losses(torch.randn(len(gs), 3, 32, 32), gs)]


def test_pretrain_losses_without_osm_and_masking_counts():
    model = tiny_model(seed=2).train()
    mae, contrast, osm = model.pretrain_losses(torch.randn(2, 3, 32, 32), [None, None])
    assert mae > 0 and float(contrast) == 0 and float(osm) == 0
    batch = torch.tensor([0] * 10 + [1] * 2 + [3] * 1)
    chosen = choose_per_graph(batch, 4, 0.2)
    assert torch.bincount(batch[chosen], minlength=4).tolist() == [2, 1, 0, 1]


def test_config_round_trip_and_arch_names():
    c = GeoLinkConfig(arch="small", text_dim=384, layers=[1, 2, 3, 11])
    assert c.arch == "vit_small_patch16_224"
    assert GeoLinkConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ModelError, match="Unknown model configuration"):
        GeoLinkConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(ModelError, match="multiple of the patch size"):
        GeoLinkConfig(img_size=100)


def test_node_padding_packs_each_image_and_attends_within_it():
    """Groups by similar node counts, widths a multiple of 16, and attention that never crosses images."""
    from geolink.models.padding import NodePadding, attention

    sizes = [70, 0, 3, 161, 71, 2]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    batch = batch[torch.randperm(batch.shape[0], generator=torch.Generator().manual_seed(0))]  # any node order
    pad = NodePadding(batch, len(sizes))
    assert [(n, width) for _, n, _, width, _ in pad.groups] == [(1, 176), (2, 80), (2, 16)]
    assert pad.has_nodes.tolist() == [True, False, True, True, True, True] and not pad.all_have_nodes
    assert len(set(pad.slot.tolist())) == pad.num_nodes and pad.num_slots == 176 + 2 * 80 + 2 * 16

    heads, c = 2, 8
    torch.manual_seed(0)
    nodes = torch.randn(pad.num_nodes, 3 * c)
    patches = torch.randn(len(sizes), 5, c)
    mixed = pad.nodes_attend_nodes(nodes[:, :2 * c], nodes[:, 2 * c:], heads, 0.0)
    to_nodes = pad.patches_attend_nodes(patches, nodes[:, c:2 * c], nodes[:, 2 * c:], heads, 0.0)
    for image in range(len(sizes)):
        mine = torch.nonzero(batch == image).view(-1)
        if not len(mine):
            continue
        q, k, v = nodes[mine].chunk(3, -1)
        assert max_err(mixed[mine], attention(q[None], k[None], v[None], heads, None, 0.0)[0]) < 1e-6
        alone = attention(patches[image:image + 1], k[None], v[None], heads, None, 0.0)[0]
        assert max_err(to_nodes[image], alone) < 1e-6
    assert not to_nodes[1].any()  # the image without nodes
