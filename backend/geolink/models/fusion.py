"""GeoLink's two-way attention block between image patches (queries) and OSM nodes (keys).

Parameter names follow the original (nn.MultiheadAttention weights, norm1..norm4, mlp) so official
checkpoints load; the attention itself runs through F.scaled_dot_product_attention with a per-image
key mask. Attention over an empty set of nodes contributes nothing (its output is 0), which defines
the image-only pathway: patches = norm2(patches).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def attend(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           key_mask: Optional[torch.Tensor], dropout: float) -> torch.Tensor:
    """nn.MultiheadAttention's maths with SDPA. key_mask [B, Lk] True = attend; every row needs one True."""
    b, lq, e = q.shape
    h = mha.num_heads
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)

    def heads(t, w, bias):
        return F.linear(t, w, bias).view(b, -1, h, e // h).transpose(1, 2)

    mask = key_mask[:, None, None, :] if key_mask is not None else None
    out = F.scaled_dot_product_attention(heads(q, wq, bq), heads(k, wk, bk), heads(v, wv, bv), attn_mask=mask,
                                         dropout_p=dropout)
    return mha.out_proj(out.transpose(1, 2).reshape(b, lq, e))


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

    def forward(self, queries: torch.Tensor, keys: Optional[torch.Tensor], query_pe: torch.Tensor,
                key_pe: Optional[torch.Tensor], key_mask: Optional[torch.Tensor],
                update_keys: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """queries [B, Lq, C] (patches), keys [B, Lk, C] (nodes, padded; None when no image has any),
        key_mask [B, Lk] True for real nodes. `update_keys=False` skips the steps that only change the
        keys (the image output does not depend on them)."""
        if keys is None or not keys.shape[1]:
            return self.norm2(queries), keys
        p = self.dropout if self.training else 0.0
        has = key_mask.any(1)
        safe = key_mask.clone()
        safe[:, 0] |= ~has  # rows without nodes attend to a padding slot; their result is zeroed below
        gate = has[:, None, None].to(queries.dtype)
        k = keys + key_pe
        keys = self.norm1(keys + attend(self.self_attn, k, k, keys, safe, p))
        k = keys + key_pe
        queries = self.norm2(queries + gate * attend(self.cross_attn_token_to_image, queries + query_pe, k, keys,
                                                     safe, p))
        if update_keys:
            keys = self.norm3(keys + attend(self.cross_attn_image_to_token, keys + key_pe, queries + query_pe,
                                            queries, None, p))
            keys = self.norm4(self.mlp(keys))
        return queries, keys
