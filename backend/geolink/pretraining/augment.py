"""Pretraining augmentations that move the OSM graph with the image.

As in GeoLink: a random crop keeps the nodes whose anchor point (a polygon's first point, a line's
centroid, a point) falls inside it, grows the crop to hold every position of the kept nodes, and
re-expresses all positions in the crop's frame; flips mirror the positions; colour jitter touches
only the image. Every random draw comes from the generator passed in, so a sample is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from ..osm.graph_edit import node_count, positions, set_positions, subgraph

Box = Tuple[float, float, float, float]


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def crop_pair(image: torch.Tensor, graph, box: Box, margin: float = 0.005):
    """Crop `image` [C,H,W] and `graph` to `box` = (x0, y0, x1, y1) in tile fractions (y down).

    Returns (image, graph, box actually used). When the graph has nodes but none is inside the box,
    the pair is returned unchanged (a crop must not turn an OSM pair into an image-only one).
    """
    x0, y0, x1, y1 = box
    if node_count(graph):
        keep, kept_pos = {}, []
        for t in graph.node_types:
            anchor = positions(graph, t)[:, 0]
            keep[t] = (anchor[:, 0] >= x0) & (anchor[:, 0] <= x1) & (anchor[:, 1] >= y0) & (anchor[:, 1] <= y1)
            kept_pos.append(positions(graph, t)[keep[t]].reshape(-1, 2))
        kept_pos = torch.cat(kept_pos)
        if kept_pos.shape[0] == 0:
            return image, graph, (0.0, 0.0, 1.0, 1.0)
        lo = torch.minimum(kept_pos.min(0).values - margin, torch.tensor([x0, y0])).clamp(min=0.0)
        hi = torch.maximum(kept_pos.max(0).values + margin, torch.tensor([x1, y1])).clamp(max=1.0)
        x0, y0, x1, y1 = float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
        graph = subgraph(graph, keep)
        scale = torch.tensor([x1 - x0, y1 - y0])
        for t in graph.node_types:
            set_positions(graph, t, (positions(graph, t) - torch.tensor([x0, y0])) / scale)
    h, w = image.shape[-2:]
    c0, r0 = int(round(x0 * w)), int(round(y0 * h))
    c1, r1 = max(int(round(x1 * w)), c0 + 1), max(int(round(y1 * h)), r0 + 1)
    return image[..., r0:r1, c0:c1], graph, (x0, y0, x1, y1)


def flip_pair(image: torch.Tensor, graph, horizontal: bool = True):
    """Mirror left-right (horizontal) or top-bottom, with the node positions."""
    image = image.flip(-1 if horizontal else -2)
    axis = 0 if horizontal else 1
    for t in graph.node_types:
        pos = positions(graph, t).clone()
        pos[..., axis] = 1.0 - pos[..., axis]
        set_positions(graph, t, pos)
    return image, graph


def colour_jitter(image: torch.Tensor, gen: torch.Generator, strength: float = 0.4, hue: float = 0.1) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter of a [C,H,W] image in [0, 1] (hue/saturation on RGB only)."""
    from torchvision.transforms import functional as TF

    image = TF.adjust_brightness(image, _uniform(gen, 1 - strength, 1 + strength))
    if image.shape[0] == 3:
        image = TF.adjust_contrast(image, _uniform(gen, 1 - strength, 1 + strength))
        image = TF.adjust_saturation(image, _uniform(gen, 1 - strength, 1 + strength))
        image = TF.adjust_hue(image, _uniform(gen, -hue, hue))
    else:
        mean = image.mean(dim=(-2, -1), keepdim=True)
        image = (image - mean) * _uniform(gen, 1 - strength, 1 + strength) + mean
    return image.clamp(0.0, 1.0)


@dataclass
class PairAugment:
    """The pretraining recipe: random crop (area 0.4-0.9 of the tile), resize, flips, colour jitter (p=0.5)."""

    size: int = 224
    crop_area: Tuple[float, float] = (0.4, 0.9)
    aspect: Tuple[float, float] = (3 / 4, 4 / 3)
    vertical_flips: bool = True
    jitter_p: float = 0.5

    def __call__(self, image: torch.Tensor, graph, gen: torch.Generator):
        """image: [C,H,W] uint8 or float in [0, 1]; graph: HeteroData (modified copy returned)."""
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        graph = graph.clone()
        area = _uniform(gen, *self.crop_area)
        aspect = math.exp(_uniform(gen, math.log(self.aspect[0]), math.log(self.aspect[1])))
        w, h = min(math.sqrt(area * aspect), 1.0), min(math.sqrt(area / aspect), 1.0)
        x0, y0 = _uniform(gen, 0, 1 - w), _uniform(gen, 0, 1 - h)
        image, graph, _ = crop_pair(image, graph, (x0, y0, x0 + w, y0 + h))
        image = resize(image, self.size)
        if float(torch.rand((), generator=gen)) < 0.5:
            image, graph = flip_pair(image, graph, horizontal=True)
        if self.vertical_flips and float(torch.rand((), generator=gen)) < 0.5:
            image, graph = flip_pair(image, graph, horizontal=False)
        if float(torch.rand((), generator=gen)) < self.jitter_p:
            image = colour_jitter(image, gen)
        return image, graph


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """[C,H,W] float -> [C,size,size] (bicubic, antialiased, clamped to [0, 1])."""
    if image.shape[-2:] == (size, size):
        return image
    out = F.interpolate(image[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0]
    return out.clamp(0.0, 1.0)
