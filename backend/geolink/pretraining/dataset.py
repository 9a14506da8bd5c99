"""Prepared image/graph pairs as a dataset, with reproducible per-step sampling for training and resume."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from ..osm.graph_edit import empty_graph, from_plain
from .augment import PairAugment
from .images import normalise


class PairsDataset:
    """Samples are dicts {"name", "image": uint8 [3,H,W], "graph": plain graph dict or None}."""

    def __init__(self, samples: List[dict], text_dim: int, augment: PairAugment, seed: int = 0):
        self.samples = samples
        self.text_dim = text_dim
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def graph(self, index: int):
        plain = self.samples[index].get("graph")
        return from_plain(plain) if plain is not None else empty_graph(self.text_dim)

    def item(self, index: int, draw: int = 0) -> Tuple[torch.Tensor, object]:
        """(normalised image [3,S,S], graph); `draw` selects the augmentation's random draw."""
        image, graph = self.samples[index]["image"], self.graph(index)
        gen = torch.Generator().manual_seed(hash((self.seed, index, draw)) & 0x7FFFFFFF)
        image, graph = self.augment(image, graph, gen)
        return normalise(image[None])[0], graph

    def batch(self, indices: Sequence[int], draw: int = 0) -> Tuple[torch.Tensor, list]:
        items = [self.item(i, draw * 1_000_003 + k) for k, i in enumerate(indices)]
        return torch.stack([im for im, _ in items]), [g for _, g in items]


def step_indices(n: int, step: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0) -> List[int]:
    """The sample indices of one rank at one step: epochs are seeded permutations, walked in global batches.

    A pure function of its arguments, so a resumed run sees exactly the batches it would have seen.
    """
    global_batch = batch_size * world
    per_epoch = max(1, -(-n // global_batch))
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    start = k * global_batch + rank * batch_size
    return [int(order[(start + j) % n]) for j in range(batch_size)]
