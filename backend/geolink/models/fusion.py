"""GeoLink's two-way attention block between image patches (queries) and OSM nodes (keys).

Parameter names follow the original (nn.MultiheadAttention weights, norm1..norm4, mlp) so official
checkpoints load; the maths is nn.MultiheadAttention's, run as F.scaled_dot_product_attention.
Nodes stay a flat list ([N, C], all images together): projections, norms and the MLP run on real
nodes only, and only the attention itself sees them padded per image (NodePadding) with a key mask.

Attention over an empty set of nodes contributes nothing (its output is 0), which defines the
image-only pathway: patches = norm2(patches).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class NodePadding:
    """How flat nodes are padded per image for attention, in groups of images with similar node counts.

    Images are sorted by node count and cut into groups whose padding wastes at most a quarter of
    the slots, so one dense tile does not make every image of the batch pay for its width. Images
    without nodes are in no group: their attention output is 0.
    """

    MAX_WASTE = 0.25

    def __init__(self, batch: torch.Tensor, num_graphs: int):
        counts = torch.bincount(batch, minlength=num_graphs)
        order = torch.sort(batch, stable=True).indices
        slot = torch.empty_like(batch)
        slot[order] = torch.arange(batch.shape[0], device=batch.device) - (torch.cumsum(counts, 0) - counts)[
            batch[order]]
        self.num_graphs, self.num_nodes = num_graphs, batch.shape[0]
        self.groups = []  # (images [Bg], nodes [Ng], their image within the group, their slot, width, mask or None)
        sizes = counts.tolist()
        ranked = sorted((i for i in range(num_graphs) if sizes[i]), key=lambda i: -sizes[i])
        local = torch.full((num_graphs,), -1, dtype=torch.long)
        while ranked:
            width, members = sizes[ranked[0]], [ranked.pop(0)]
            while ranked and (sum(sizes[i] for i in members) + sizes[ranked[0]]) >= (
                    (1 - self.MAX_WASTE) * width * (len(members) + 1)):
                members.append(ranked.pop(0))
            images = torch.tensor(members, device=batch.device)
            local[members] = torch.arange(len(members))
            nodes = torch.nonzero(torch.isin(batch, images)).view(-1)
            row = local.to(batch.device)[batch[nodes]]
            full = all(sizes[i] == width for i in members)
            mask = None if full else torch.zeros(len(members), width, dtype=torch.bool, device=batch.device)
            if mask is not None:
                mask[row, slot[nodes]] = True
            self.groups.append((images, nodes, row, slot[nodes], width, mask))

    def pad(self, rows: torch.Tensor, group: tuple) -> torch.Tensor:
        images, nodes, row, slot, width, _ = group
        out = rows.new_zeros(len(images), width, *rows.shape[1:])
        out[row, slot] = rows[nodes]
        return out

    def nodes_attend_nodes(self, q, k, v, heads: int, dropout: float) -> torch.Tensor:
        out = q.new_zeros(q.shape)
        for g in self.groups:
            att = _attention(self.pad(q, g), self.pad(k, g), self.pad(v, g), heads, g[5], dropout)
            out[g[1]] = att[g[2], g[3]]
        return out

    def patches_attend_nodes(self, q, k, v, heads: int, dropout: float) -> torch.Tensor:
        out = q.new_zeros(q.shape)
        for g in self.groups:
            out[g[0]] = _attention(q[g[0]], self.pad(k, g), self.pad(v, g), heads, g[5], dropout)
        return out

    def nodes_attend_patches(self, q, k, v, heads: int, dropout: float) -> torch.Tensor:
        out = q.new_zeros(q.shape)
        for g in self.groups:
            out[g[1]] = _attention(self.pad(q, g), k[g[0]], v[g[0]], heads, None, dropout)[g[2], g[3]]
        return out


def _project(mha: nn.MultiheadAttention, x: torch.Tensor, part: slice) -> torch.Tensor:
    rows = slice(part.start * mha.embed_dim, part.stop * mha.embed_dim)
    return F.linear(x, mha.in_proj_weight[rows], mha.in_proj_bias[rows])


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Optional[torch.Tensor],
               dropout: float) -> torch.Tensor:
    """[B, Lq, C] x [B, Lk, C] -> [B, Lq, C]; mask [B, Lk] True = attend."""
    b, lq, c = q.shape

    def split(t):
        return t.view(b, t.shape[1], heads, c // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=dropout,
                                         attn_mask=mask[:, None, None, :] if mask is not None else None)
    return out.transpose(1, 2).reshape(b, lq, c)


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = dropout
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)
        self.norm4 = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, query_pe: torch.Tensor, nodes: Optional[torch.Tensor],
                node_pe: Optional[torch.Tensor], padding: Optional[NodePadding],
                update_nodes: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """queries [B, L, C] (patches) with query_pe [1 or B, L, C]; nodes and node_pe [N, C] (flat, all
        images) placed by `padding`. `update_nodes=False` skips the steps that only change the nodes
        (the patches' output does not depend on them)."""
        if nodes is None or padding is None or not padding.num_nodes:
            return self.norm2(queries), nodes
        p = self.dropout if self.training else 0.0
        sa = self.self_attn
        q, k = _project(sa, nodes + node_pe, slice(0, 2)).chunk(2, -1)
        att = padding.nodes_attend_nodes(q, k, _project(sa, nodes, slice(2, 3)), sa.num_heads, p)
        nodes = self.norm1(nodes + sa.out_proj(att))

        ti = self.cross_attn_token_to_image
        keyed = nodes + node_pe
        att = padding.patches_attend_nodes(_project(ti, queries + query_pe, slice(0, 1)),
                                           _project(ti, keyed, slice(1, 2)), _project(ti, nodes, slice(2, 3)),
                                           ti.num_heads, p)
        has_nodes = torch.zeros(queries.shape[0], 1, 1, dtype=queries.dtype, device=queries.device)
        for g in padding.groups:
            has_nodes[g[0]] = 1
        queries = self.norm2(queries + has_nodes * ti.out_proj(att))
        if update_nodes:
            it = self.cross_attn_image_to_token
            k = _project(it, queries + query_pe, slice(1, 2))
            att = padding.nodes_attend_patches(_project(it, keyed, slice(0, 1)), k, _project(it, queries, slice(2, 3)),
                                               it.num_heads, p)
            nodes = self.norm3(nodes + it.out_proj(att))
            nodes = self.norm4(self.mlp(nodes))
        return queries, nodes
