"""The OSM entity encoder: one heterogeneous graph-attention layer (torch_geometric), per-graph LayerNorm."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
import torch_geometric
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.utils import softmax

from .graphs import NODE_TYPES, RELATIONS, GraphBatch


class OSMHeteroGAT(nn.Module):
    """A GATConv per relation, averaged over the relations each node's graph has, then ReLU.

    The weights live in torch_geometric's HeteroConv/GATConv modules (the original's names). The
    forward computes the same function as running each GATConv (one head, no self loops) and
    averaging, but for all nine relations at once: one projection per source type, one attention
    softmax and one scatter over every edge. That keeps the OSM branch to a few dozen kernels, which
    matters on CPUs where each kernel launch synchronises threads.
    """

    def __init__(self, in_channels: int = 512, out_channels: int = 128, layers: int = 1):
        super().__init__()
        self.out_channels = out_channels
        self.convs = nn.ModuleList([
            HeteroConv({rel: GATConv(in_channels if i == 0 else out_channels, out_channels, add_self_loops=False)
                        for rel in RELATIONS}, aggr="mean")
            for i in range(layers)])

    def forward(self, g: GraphBatch, x: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor],
                                                                         Dict[str, torch.Tensor]]:
        """(node embeddings [N_t, out], reached [N_t] bool) per type. `x` replaces g.x (masked inputs).

        A node whose graph has no relation into its type gets no embedding in the original; it is
        flagged unreached here (its row is 0) and left out downstream.
        """
        count = {t: g.present[:, [r for r, rel in enumerate(RELATIONS) if rel[2] == t]][g.batch[t]].to(x[t].dtype)
                 for t in NODE_TYPES}  # [N_t, 3]: which relations into t the node's graph has
        for hetero in self.convs:
            x = self._layer(hetero, g, x, count)
        return x, {t: count[t].sum(1) > 0 for t in NODE_TYPES}

    def _layer(self, hetero: HeteroConv, g: GraphBatch, x: Dict[str, torch.Tensor],
               flags: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        c = self.out_channels
        out_rels = {t: [rel for rel in RELATIONS if rel[0] == t] for t in NODE_TYPES}
        in_rels = {t: [rel for rel in RELATIONS if rel[2] == t] for t in NODE_TYPES}
        # rows of the flat tables: source table row = base + node * 3 + (relation among the type's out-relations)
        proj, src_score, dst_score, src_base, dst_base = [], [], [], {}, {}
        n_src = n_dst = 0
        for t in NODE_TYPES:
            convs = [hetero.convs[rel] for rel in out_rels[t]]
            p = (x[t] @ torch.cat([cv.lin.weight for cv in convs]).t()).view(-1, len(convs), c)
            proj.append(p.reshape(-1, c))
            src_score.append((p * torch.cat([cv.att_src.view(1, c) for cv in convs])).sum(-1).reshape(-1))
            src_base[t], n_src = n_src, n_src + p.shape[0] * len(convs)
            convs = [hetero.convs[rel] for rel in in_rels[t]]
            att = torch.stack([cv.lin.weight.t() @ cv.att_dst.view(c) for cv in convs], 1)  # [D, 3]
            dst_score.append((x[t] @ att).reshape(-1))
            dst_base[t], n_dst = n_dst, n_dst + x[t].shape[0] * len(convs)
        src_rows, dst_rows = [], []
        for rel in RELATIONS:
            s, _, d = rel
            e = g.edges[rel]
            src_rows.append(src_base[s] + e[0] * len(out_rels[s]) + out_rels[s].index(rel))
            dst_rows.append(dst_base[d] + e[1] * len(in_rels[d]) + in_rels[d].index(rel))
        src_rows, dst_rows = torch.cat(src_rows), torch.cat(dst_rows)
        logits = F.leaky_relu(torch.cat(src_score)[src_rows] + torch.cat(dst_score)[dst_rows],
                              hetero.convs[RELATIONS[0]].negative_slope)
        alpha = softmax(logits, dst_rows, num_nodes=n_dst)
        agg = torch.zeros(n_dst, c, dtype=logits.dtype, device=logits.device)
        agg.index_add_(0, dst_rows, torch.cat(proj)[src_rows] * alpha[:, None])
        out = {}
        for t in NODE_TYPES:
            rels = in_rels[t]
            bias = torch.stack([hetero.convs[rel].bias for rel in rels])  # [3, C]
            per_rel = agg[dst_base[t]: dst_base[t] + x[t].shape[0] * len(rels)].view(-1, len(rels), c) + bias
            f = flags[t]
            out[t] = ((per_rel * f[..., None]).sum(1) / f.sum(1, keepdim=True).clamp(min=1)).relu()
        return out


def graph_layer_norm(norm: torch_geometric.nn.LayerNorm, x: torch.Tensor, batch: torch.Tensor,
                     num_graphs: int) -> torch.Tensor:
    """torch_geometric's graph-mode LayerNorm (mean and biased std over a group's nodes and channels,
    x / (std + eps), then the affine map) applied to each group of nodes (`batch`) on its own.

    The original calls it without a batch vector: one group, every node of the type in the batch.
    """
    if not x.shape[0]:
        return x
    n = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(x.dtype) * x.shape[1]
    mean = x.new_zeros(num_graphs).index_add_(0, batch, x.sum(1)) / n
    centred = x - mean[batch, None]
    var = x.new_zeros(num_graphs).index_add_(0, batch, (centred * centred).sum(1)) / n
    out = centred / (var.sqrt()[batch, None] + norm.eps)
    if norm.weight is not None:
        out = out * norm.weight + norm.bias
    return out
