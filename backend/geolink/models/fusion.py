"""GeoLink's two-way attention block between image patches (queries) and OSM nodes (keys).

Parameter names follow the original (nn.MultiheadAttention weights, norm1..norm4, mlp) so official
checkpoints load; the maths is nn.MultiheadAttention's, run as F.scaled_dot_product_attention.
Nodes stay a flat list ([N, C], all images together): projections, norms and the MLP run on real
nodes only, and only the attention itself sees them padded per image with a key mask.

Attention over an empty set of nodes contributes nothing (its output is 0), which defines the
image-only pathway: patches = norm2(patches).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class NodePadding:
    """Where each flat node sits in a [B, width] per-image padding (its image, its slot), and the mask."""

    def __init__(self, batch: torch.Tensor, num_graphs: int):
        order = torch.sort(batch, stable=True).indices
        counts = torch.bincount(batch, minlength=num_graphs)
        self.batch, self.num_graphs = batch, num_graphs
        self.slot = torch.empty_like(batch)
        self.slot[order] = torch.arange(batch.shape[0], device=batch.device) - (torch.cumsum(counts, 0) - counts)[
            batch[order]]
        self.width = int(counts.max()) if batch.numel() else 0
        self.mask = torch.zeros(num_graphs, self.width, dtype=torch.bool, device=batch.device)
        self.mask[batch, self.slot] = True
        self.has_nodes = counts > 0
        self.attend_mask = self.mask.clone()  # rows without nodes attend to a padding slot, zeroed afterwards
        if self.width:
            self.attend_mask[:, 0] |= ~self.has_nodes

    def pad(self, rows: torch.Tensor) -> torch.Tensor:
        out = rows.new_zeros(self.num_graphs, self.width, *rows.shape[1:])
        out[self.batch, self.slot] = rows
        return out

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        return padded[self.batch, self.slot]


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
        if nodes is None or padding is None or not padding.width:
            return self.norm2(queries), nodes
        p = self.dropout if self.training else 0.0
        mask = padding.attend_mask
        sa = self.self_attn
        q, k = _project(sa, nodes + node_pe, slice(0, 2)).chunk(2, -1)
        v = _project(sa, nodes, slice(2, 3))
        att = _attention(padding.pad(q), padding.pad(k), padding.pad(v), sa.num_heads, mask, p)
        nodes = self.norm1(nodes + sa.out_proj(padding.unpad(att)))

        ti = self.cross_attn_token_to_image
        keyed = nodes + node_pe
        att = _attention(_project(ti, queries + query_pe, slice(0, 1)), padding.pad(_project(ti, keyed, slice(1, 2))),
                         padding.pad(_project(ti, nodes, slice(2, 3))), ti.num_heads, mask, p)
        gate = padding.has_nodes[:, None, None].to(queries.dtype)
        queries = self.norm2(queries + gate * ti.out_proj(att))
        if update_nodes:
            it = self.cross_attn_image_to_token
            q = padding.pad(_project(it, keyed, slice(0, 1)))
            k = _project(it, queries + query_pe, slice(1, 2))
            att = _attention(q, k, _project(it, queries, slice(2, 3)), it.num_heads, None, p)
            nodes = self.norm3(nodes + it.out_proj(padding.unpad(att)))
            nodes = self.norm4(self.mlp(nodes))
        return queries, nodes
