"""GeoLink's pretraining objectives, as the original: masked-image reconstruction, image-graph contrast and
masked-node reconstruction, computed with a GeoLinkModel's pretraining parts (built when its config says
`pretraining`)."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..errors import ModelError
from ..osm.format import KINDS, NODE_TYPES
from .geolink import PATCH, GeoLinkModel
from .graphs import GraphBatch
from .padding import NodePadding, rank_within
from .pos_embed import wide_float

MAX_DECODED_NODES = 10  # nodes reconstructed per image in pretraining, as the original


def pretrain_losses(model: GeoLinkModel, images: torch.Tensor, graphs=None, mask_ratio: float = 0.75,
                    osm_mask_ratio: float = 0.2) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked-image reconstruction, image-graph contrastive, masked-node reconstruction) losses.

    As the original: 75% of patches masked (MAE, norm-pixel loss); per image and node type,
    round(n * 20%) nodes (at least 1) get the type's mask token instead of their text embedding;
    the graph readout (Set2Set per type, projection, sum over types) is contrasted with the mean
    visible patch at temperature 0.2; up to 10 masked nodes per image are decoded by the fusion
    block against the visible patches and regressed onto their text embeddings. Randomness comes
    from torch's generator. Images without OSM nodes are left out of both OSM losses (the
    original fails on them); a batch without any gives those losses 0.
    """
    if not model.has_pretraining_parts:
        raise ModelError("This model package has no pretraining parts (it was saved encoder-only).",
                         hint="Continue pretraining from a full package or an official checkpoint.")
    b = images.shape[0]
    x, rows, cols = model._patch_tokens(images)
    n = x.shape[1]
    keep = int(n * (1 - mask_ratio))
    ids_shuffle = torch.argsort(torch.rand(b, n, device=x.device), 1)
    ids_restore = torch.argsort(ids_shuffle, 1)
    ids_keep = ids_shuffle[:, :keep]
    x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    z = model._with_cls(x)
    for blk in model.img_encoder.blocks:
        z = blk(z)
    z = model.img_norm(z)
    mae = _mae_loss(model, images, _decode_image(model, z, ids_restore, rows, cols), mask)
    if not model.has_osm:
        zero = z.sum() * 0
        return mae, zero, zero
    gb = model._graph_batch(graphs, b, z.device)
    if gb is None:
        zero = z.sum() * 0
        return mae, zero, zero
    fusion_pe = torch.gather(model._pos(model.fusion_img_pos_embed, rows, cols).expand(b, -1, -1), 1,
                             ids_keep[..., None].expand(-1, -1, model.config.fusion_dim))
    masked = {t: choose_per_graph(gb.batch[t], b, osm_mask_ratio) for t in NODE_TYPES}
    inputs = {t: torch.where(masked[t][:, None], model.osm_mask_token[t].to(gb.x[t].dtype), gb.x[t])
              for t in NODE_TYPES}
    h, reached = gb.split(model._node_embeddings(gb, inputs)), gb.split(gb.reached)
    contrast = _contrastive_loss(model, z, gb, h, reached)
    osm = _node_loss(model, z[:, 1:], fusion_pe, gb, h, {t: masked[t] & reached[t] for t in NODE_TYPES})
    return mae, contrast, osm

def _decode_image(model: GeoLinkModel, z: torch.Tensor, ids_restore: torch.Tensor, rows: int,
                  cols: int) -> torch.Tensor:
    y = model.img_decoder_mlp(z)
    b, n = ids_restore.shape
    tokens = torch.cat([y[:, 1:], model.img_mask_token.expand(b, n + 1 - y.shape[1], -1)], 1)
    tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
    pe = torch.cat([model.rec_img_pos_embed[:, :1], model._pos(model.rec_img_pos_embed, rows, cols)], 1)
    y = torch.cat([y[:, :1], tokens], 1) + pe
    for blk in model.img_cross_modal_decoder:
        y = blk(y)
    return model.img_decoder_pred(model.img_decoder_norm(y))[:, 1:]

def _mae_loss(model: GeoLinkModel, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, c, hh, ww = images.shape
    target = images.reshape(b, c, hh // PATCH, PATCH, ww // PATCH, PATCH)
    target = torch.einsum("nchpwq->nhwpqc", target).reshape(b, -1, PATCH * PATCH * c)
    if model.config.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum()

def _random_rank(batch: torch.Tensor, num_graphs: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(a random rank of each node within its graph, the graph sizes)."""
    dtype = wide_float(batch.device)
    order = torch.argsort(batch.to(dtype) + torch.rand(batch.shape[0], device=batch.device, dtype=dtype))
    counts = torch.bincount(batch, minlength=num_graphs)
    return rank_within(batch, counts, order), counts

def choose_per_graph(batch: torch.Tensor, num_graphs: int, ratio: float) -> torch.Tensor:
    """Per graph, round(n * ratio) nodes (at least 1, at most n) chosen at random."""
    rank, counts = _random_rank(batch, num_graphs)
    k = torch.round(counts.to(wide_float(counts.device)) * ratio).long().clamp(min=1)
    k = torch.minimum(k, counts)
    return rank < k[batch]

def _contrastive_loss(model: GeoLinkModel, z: torch.Tensor, gb: GraphBatch, h: Dict[str, torch.Tensor],
                      reached: Dict[str, torch.Tensor]) -> torch.Tensor:
    b = gb.num_graphs
    per_type = []
    for t in KINDS:
        idx = reached[t]
        batch = gb.batch[t][idx]
        if not batch.numel():
            per_type.append(z.new_zeros(b, model.config.graph_dim))
            continue
        readout = model.osm_aggr_mlp[t](model.osm_read_out[t](h[t][idx], batch, dim_size=b))
        has = torch.bincount(batch, minlength=b) > 0
        per_type.append(readout * has[:, None].to(readout.dtype))
    types = torch.stack(per_type, 1)
    # The original's softmax runs over a singleton axis, so every type weighs 1 (a sum); kept as is.
    graph = (torch.softmax(model.type_attention(types), -1) * types).sum(1)
    with_nodes = torch.zeros(b, dtype=torch.bool, device=z.device)
    for t in NODE_TYPES:
        with_nodes[gb.batch[t][reached[t]]] = True
    img = F.normalize(model.img_consistency_prj(z[:, 1:].mean(1))[with_nodes], dim=1)
    osm = F.normalize(model.osm_graph_consistency_prj(graph)[with_nodes], dim=1)
    logits = img @ osm.t() / model.config.temperature
    labels = torch.arange(logits.shape[0], device=z.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

def _node_loss(model: GeoLinkModel, visible: torch.Tensor, visible_pe: torch.Tensor, gb: GraphBatch,
               h: Dict[str, torch.Tensor], masked: Dict[str, torch.Tensor]) -> torch.Tensor:
    tokens = torch.cat([model.osm_node_fusion_mlp[t](h[t][masked[t]]) for t in NODE_TYPES])
    pe = torch.cat([model._node_pos(gb.pos[t][masked[t]]) for t in NODE_TYPES])
    labels = torch.cat([gb.x[t][masked[t]] for t in NODE_TYPES])
    batch = torch.cat([gb.batch[t][masked[t]] for t in NODE_TYPES])
    if not batch.numel():
        return visible.sum() * 0
    rank, _ = _random_rank(batch, gb.num_graphs)
    pick = rank < MAX_DECODED_NODES
    nodes, target = tokens[pick], labels[pick]
    padding = NodePadding(batch[pick], gb.num_graphs).to(visible.device)
    queries = model.img_fusion_mlp(visible)
    for blk in model.osm_cross_modal_encoder:
        queries, nodes = blk(queries, visible_pe, nodes, pe[pick], padding)
    pred = model.osm_node_pred(nodes)
    return ((pred - target) ** 2).mean(-1).mean()
