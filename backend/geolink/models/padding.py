"""How a flat list of OSM nodes (all images of a batch together) is padded per image for attention.

Widths are multiples of 16: PyTorch's CPU flash-attention kernel runs about twice as fast on such
key lengths (8 x 196 patches on 71 keys: 1.8 ms; on 80: 1.1 ms). Images are sorted by node count
and cut into groups: an image joins the group before it when it rounds up to the same width, or
when the group's padding then still wastes at most a quarter of its slots; so one dense tile does
not make every image of a batch pay for its width. Images without nodes are in no group: their
attention output is 0.

All groups share one packed buffer (group after group, image after image, `width` slots each), so
padding is one copy and unpadding one gather, whatever the number of groups. Everything here is
worked out once per batch, on the CPU, when graphs are collated; the forward pass only indexes.
"""

from __future__ import annotations

import copy
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


class NodePadding:
    MAX_WASTE = 0.25
    ALIGN = 16

    def __init__(self, batch: torch.Tensor, num_graphs: int):
        """batch [N]: the image of each flat node. Built on the CPU; move it with .to()."""
        batch = batch.cpu()
        counts = torch.bincount(batch, minlength=num_graphs)
        sizes = counts.tolist()
        self.num_graphs, self.num_nodes = num_graphs, int(batch.shape[0])
        self.has_nodes = counts > 0
        self.all_have_nodes = bool(self.has_nodes.all())
        ranked = sorted((i for i in range(num_graphs) if sizes[i]), key=lambda i: -sizes[i])
        order: List[int] = []
        # (first image in `order`, images, first packed slot, width, key mask [images, 1, 1, width] or None)
        self.groups: List[Tuple[int, int, int, int, Optional[torch.Tensor]]] = []
        image_slot = [0] * num_graphs  # each image's first packed slot
        slots = 0

        def aligned(n: int) -> int:
            return -(-n // self.ALIGN) * self.ALIGN

        while ranked:
            members = [ranked.pop(0)]
            filled = sizes[members[0]]
            width = aligned(filled)
            while ranked and (aligned(sizes[ranked[0]]) == width or
                              filled + sizes[ranked[0]] >= (1 - self.MAX_WASTE) * width * (len(members) + 1)):
                filled += sizes[ranked[0]]
                members.append(ranked.pop(0))
            if len(members) == num_graphs:
                members.sort()
            mask = None
            if any(sizes[i] != width for i in members):
                mask = torch.arange(width)[None] < torch.tensor([sizes[i] for i in members])[:, None]
                mask = mask[:, None, None, :]
            for k, i in enumerate(members):
                image_slot[i] = slots + k * width
            self.groups.append((len(order), len(members), slots, width, mask))
            order += members
            slots += len(members) * width
        self.num_slots = slots
        within = rank_within(batch, counts)  # each node's place among its image's nodes
        self.slot = torch.tensor(image_slot, dtype=torch.long)[batch] + within  # [N] each node's packed slot
        identity = order == list(range(num_graphs))
        self.order = None if identity else torch.tensor(order, dtype=torch.long)  # images, group by group

    def to(self, device) -> NodePadding:
        """A copy on `device` (this one is left as it is)."""
        return self.map(lambda t: t.to(device, non_blocking=True))

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> NodePadding:
        """A copy with `fn` of each of its tensors, always in the same order (GraphBatch.pack)."""
        def apply(t):
            return None if t is None else fn(t)

        moved = copy.copy(self)
        moved.has_nodes, moved.slot, moved.order = (apply(t) for t in (self.has_nodes, self.slot, self.order))
        moved.groups = [(*g[:4], apply(g[4])) for g in self.groups]
        return moved

    def _pack(self, columns: Sequence[torch.Tensor]) -> torch.Tensor:
        """[N, C_i] blocks side by side in the packed layout [slots, sum C_i] (zeros on padding)."""
        packed = columns[0].new_zeros(self.num_slots, sum(c.shape[1] for c in columns))
        at = 0
        for c in columns:
            packed[:, at: at + c.shape[1]].index_copy_(0, self.slot, c)
            at += c.shape[1]
        return packed

    def _unpack(self, parts: List[torch.Tensor]) -> torch.Tensor:
        return (torch.cat(parts) if len(parts) > 1 else parts[0]).index_select(0, self.slot)

    def _sorted(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.order is None else images.index_select(0, self.order)

    def _unsorted(self, parts: List[torch.Tensor]) -> torch.Tensor:
        if self.order is None:
            return torch.cat(parts) if len(parts) > 1 else parts[0]
        out = parts[0].new_zeros(self.num_graphs, *parts[0].shape[1:])
        for (at, n, *_), part in zip(self.groups, parts):
            out.index_copy_(0, self.order[at: at + n], part)
        return out

    def nodes_attend_nodes(self, qk: torch.Tensor, v: torch.Tensor, heads: int, dropout: float) -> torch.Tensor:
        """qk [N, 2C] and v [N, C] -> [N, C]: each image's nodes attend to each other."""
        packed, c = self._pack((qk, v)), v.shape[1]
        parts = []
        for _, n, first, width, mask in self.groups:
            q, k, v = packed[first: first + n * width].view(n, width, 3 * c).chunk(3, -1)
            parts.append(attention(q, k, v, heads, mask, dropout).reshape(n * width, c))
        return self._unpack(parts)

    def patches_attend_nodes(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                             dropout: float) -> torch.Tensor:
        """q [B, L, C] patches, k and v [N, C] -> [B, L, C]; 0 for images without nodes."""
        packed, c, q = self._pack((k, v)), v.shape[1], self._sorted(q)
        parts = []
        for at, n, first, width, mask in self.groups:
            k, v = packed[first: first + n * width].view(n, width, 2 * c).chunk(2, -1)
            parts.append(attention(q[at: at + n], k, v, heads, mask, dropout))
        return self._unsorted(parts)

    def nodes_attend_patches(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                             dropout: float) -> torch.Tensor:
        """q [N, C] nodes, k and v [B, L, C] patches -> [N, C]."""
        packed, c, k, v = self._pack((q,)), q.shape[1], self._sorted(k), self._sorted(v)
        parts = []
        for at, n, first, width, _ in self.groups:
            parts.append(attention(packed[first: first + n * width].view(n, width, c), k[at: at + n], v[at: at + n],
                                   heads, None, dropout).reshape(n * width, c))
        return self._unpack(parts)


def rank_within(group: torch.Tensor, counts: torch.Tensor, order: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Each row's rank among the rows of its group (`counts`: rows per group), ranked in `order` (a
    permutation of the rows; default: their own order)."""
    if order is None:
        order = torch.sort(group, stable=True).indices
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.shape[0], device=group.device) - (torch.cumsum(counts, 0) - counts)[group[order]]
    return rank


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: Optional[torch.Tensor],
              dropout: float) -> torch.Tensor:
    """Multi-head scaled-dot-product attention of projected [B, Lq, C] on [B, Lk, C] -> [B, Lq, C];
    mask [B, 1, 1, Lk] True = attend."""
    b, lq, c = q.shape

    def split(t):
        return t.view(b, t.shape[1], heads, c // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=dropout, attn_mask=mask)
    return out.transpose(1, 2).reshape(b, lq, c)
