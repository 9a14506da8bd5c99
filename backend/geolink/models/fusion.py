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

from .padding import NodePadding


def _project(mha: nn.MultiheadAttention, x: torch.Tensor, first: int, parts: int = 1) -> torch.Tensor:
    """x through `parts` consecutive in-projections of `mha` from `first` (0 = q, 1 = k, 2 = v), concatenated."""
    rows = slice(first * mha.embed_dim, (first + parts) * mha.embed_dim)
    return F.linear(x, mha.in_proj_weight[rows], mha.in_proj_bias[rows])


def _plus_projected(x: torch.Tensor, proj: nn.Linear, y: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """x + proj(y) for [B, L, C] x and y, the bias only where `keep` [B, 1, 1] (y is 0 elsewhere). The matmul
    accumulates into x + bias: one pass fewer over the patches (when all three share a dtype: not under
    autocast, whose lower-precision matmuls do not apply in place)."""
    bias = proj.bias if keep is None else proj.bias * keep.to(proj.bias.dtype)
    if not x.dtype == y.dtype == proj.weight.dtype:
        return x + F.linear(y, proj.weight) + bias
    out = x + bias
    out.view(-1, out.shape[-1]).addmm_(y.reshape(-1, y.shape[-1]), proj.weight.t())
    return out


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

    def forward(self, queries: torch.Tensor, query_pe: Optional[torch.Tensor], nodes: Optional[torch.Tensor],
                node_pe: Optional[torch.Tensor], padding: Optional[NodePadding], update_nodes: bool = True,
                patch_q: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """queries [B, L, C] (patches) with query_pe [1 or B, L, C]; nodes and node_pe [N, C] (flat, all
        images) placed by `padding`. `update_nodes=False` skips the steps that only change the nodes
        (the patches' output does not depend on them); `patch_q`: the patches' queries for attending
        to the nodes, when the caller has them already (see GeoLinkModel._fusion_queries)."""
        if nodes is None or padding is None or not padding.num_nodes:
            return self.norm2(queries), nodes
        p = self.dropout if self.training else 0.0
        sa = self.self_attn
        att = padding.nodes_attend_nodes(_project(sa, nodes + node_pe, 0, 2), _project(sa, nodes, 2), sa.num_heads, p)
        nodes = self.norm1(nodes + sa.out_proj(att))

        ti = self.cross_attn_token_to_image
        keyed = nodes + node_pe
        if patch_q is None:
            patch_q = _project(ti, queries + query_pe, 0)
        att = padding.patches_attend_nodes(patch_q, _project(ti, keyed, 1), _project(ti, nodes, 2), ti.num_heads, p)
        keep = None if padding.all_have_nodes else padding.has_nodes[:, None, None]  # out_proj's bias only there
        queries = self.norm2(_plus_projected(queries, ti.out_proj, att, keep))
        if update_nodes:
            it = self.cross_attn_image_to_token
            att = padding.nodes_attend_patches(_project(it, keyed, 0), _project(it, queries + query_pe, 1),
                                               _project(it, queries, 2), it.num_heads, p)
            nodes = self.norm3(nodes + it.out_proj(att))
            nodes = self.norm4(self.mlp(nodes))
        return queries, nodes
