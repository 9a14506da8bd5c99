"""Segmentation heads over GeoLink's feature maps: segmentation-models-pytorch's UPerNet and FPN
decoders, a linear 1x1 classifier, or "detail": FPN whose class probabilities follow the image's edges.

The ViT gives four maps at 1/16 of the input; the decoders want a pyramid at 1/4, 1/8, 1/16 and
1/32, built as in the original's UPerNet (two transposed convolutions, one, identity, max-pool).
A ViT sees 16 x 16 px patches, so heads that decode from its maps alone draw edges no finer than
a patch. The detail head upsamples FPN's class probabilities to the input's pixels with a (fast)
guided filter over the input bands, so a boundary the decoder places somewhere in a patch moves onto the
edge in the image. The filter has no weights: a learnt per-pixel path over the bands (tried first)
learnt the training polygons' colours and scored below plain FPN on held-out polygons of another part
of the scene, where the same classes look a little different. FPN and UPerNet heads may average several
decoders (members) over the one pyramid.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn

from ..errors import InputError
from .card import DECODERS, ModelCard
from .geolink import PATCH, GeoLinkModel

GUIDE_RADIUS = 2  # in FPN's output cells (4 px): the guided filter fits its linear models over 5 x 5 cells, 20 px
GUIDE_EPS = 0.02  # ridge of those fits, in (normalised band)^2: flatter windows keep the decoder's probabilities
DECODER_WIDTH = 256  # FPN's pyramid channels (its segmentation blocks have half), UPerNet's channels
# Channels in each of FPN's GroupNorm groups (smp fixes 32 groups: 4 channels at full width). Half-width members
# with 2 channels a group drew the classify windows' grid over uniform land (each window normalised on its own).
GROUP_CHANNELS = 4


def member_width(members: int) -> int:
    """Channels of each of `members` decoders: full width alone, half width together (an FPN decoder of half
    width costs about a quarter, so three cost less than one full one)."""
    return DECODER_WIDTH if members == 1 else DECODER_WIDTH // 2


def _pyramid_level(level: int, channels: int) -> nn.Module:
    if level == 0:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, 2), nn.BatchNorm2d(channels), nn.GELU(),
                             nn.ConvTranspose2d(channels, channels, 2, 2))
    if level == 1:
        return nn.ConvTranspose2d(channels, channels, 2, 2)
    return nn.Identity() if level == 2 else nn.MaxPool2d(2)


def _regroup(module: nn.Module, group_channels: int) -> None:
    """Give every GroupNorm in `module` groups of `group_channels` channels (the weights keep their shapes)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(parent, name, nn.GroupNorm(child.num_channels // group_channels, child.num_channels, child.eps))


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_upsample(p: torch.Tensor, guide: torch.Tensor, r: int = GUIDE_RADIUS,
                    eps: float = GUIDE_EPS) -> torch.Tensor:
    """Maps [B, K, h, w] -> [B, K, H, W] at the size of `guide` [B, C, H, W] (H a multiple of h), following
    the guide's edges: He and Sun's fast guided filter. In each (2r + 1)^2 window of the coarse grid the maps
    are fitted as a linear function of the guide's bands (averaged to that grid; ridge `eps`); the fits are
    averaged, upsampled bilinearly and applied to the guide's own pixels."""
    b, c = guide.shape[:2]
    k, (h, w) = p.shape[1], p.shape[-2:]
    low = F.adaptive_avg_pool2d(guide, (h, w))
    mean_i, mean_p = _box(low, r), _box(p, r)
    cov_ii = torch.stack([_box(low[:, i:i + 1] * low, r) for i in range(c)], 1)
    cov_ii = cov_ii - mean_i[:, :, None] * mean_i[:, None]
    cov_ip = torch.stack([_box(low[:, i:i + 1] * p, r) for i in range(c)], 1) - mean_i[:, :, None] * mean_p[:, None]
    sigma = cov_ii.permute(0, 3, 4, 1, 2) + eps * torch.eye(c, dtype=p.dtype, device=p.device)
    a = torch.linalg.solve(sigma, cov_ip.permute(0, 3, 4, 1, 2)).permute(0, 3, 4, 1, 2)  # [B, C, K, h, w]
    offset = mean_p - (a * mean_i[:, :, None]).sum(1)
    size = guide.shape[-2:]
    a = F.interpolate(_box(a.reshape(b, c * k, h, w), r), size=size, mode="bilinear", align_corners=False)
    offset = F.interpolate(_box(offset, r), size=size, mode="bilinear", align_corners=False)
    return (a.reshape(b, c, k, *size) * guide[:, :, None]).sum(1) + offset


def guided_log_probabilities(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Coarse logits [B, K, h, w] -> log-probabilities [B, K, H, W] at the images' size, guided by their bands
    (computed in float32 whatever the autocast, returned in the logits' dtype)."""
    with torch.autocast(logits.device.type, enabled=False):
        prob = guided_upsample(logits.float().softmax(1), images.float()).clamp_min(1e-4)
        return (prob / prob.sum(1, keepdim=True)).log().to(logits.dtype)


class _Decoder(nn.Module):
    """One FPN or UPerNet decoder and its 1 x 1 classifier: the pyramid's maps -> class logits at 1/4."""

    def __init__(self, decoder: str, channels: Sequence[int], num_classes: int, width: int,
                 group_channels: Optional[int]):
        super().__init__()
        encoder_channels = [0, 0, *channels]  # smp's layout: [1, 1/2, 1/4, 1/8, 1/16, 1/32]; the first two unused
        if decoder == "upernet":
            self.decoder = UPerNetDecoder(encoder_channels, encoder_depth=5, decoder_channels=width)
            out = width
        else:
            self.decoder = FPNDecoder(encoder_channels, encoder_depth=5, pyramid_channels=width,
                                      segmentation_channels=width // 2)
            out = self.decoder.out_channels
            if group_channels:  # None: smp's 32 groups, as packages written before GROUP_CHANNELS
                _regroup(self.decoder, group_channels)
        self.classifier = nn.Conv2d(out, num_classes, 1)

    def forward(self, pyramid: List[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.decoder([None, None, *pyramid]))


def mean_log_probabilities(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The log of the members' mean class probabilities (in float32, returned in the logits' dtype); one
    member's logits pass through as they are (the same up to a constant per pixel, which softmax drops)."""
    if len(logits) == 1:
        return logits[0]
    with torch.autocast(logits[0].device.type, enabled=False):
        mean = torch.stack([x.float().softmax(1) for x in logits]).mean(0)
        return mean.clamp_min(1e-6).log().to(logits[0].dtype)


class SegmentationHead(nn.Module):
    """Feature maps [B, C_i, h, w] (+ the input bands [B, bands, 16h, 16w] for the detail head)
    -> logits [B, K, 16h, 16w] (the detail head's are log-probabilities).

    `members` decoders of `width` channels, trained side by side from different initial weights, each with
    its own loss (in training the head returns each member's logits), predict together by averaging their
    class probabilities: with a few dozen labelled polygons one decoder's map depends on its initial weights
    (balanced accuracy from 0.85 to 0.94 by seed on the benchmark scene), the average much less."""

    def __init__(self, decoder: str, channels: Sequence[int], num_classes: int, members: int = 1,
                 width: Optional[int] = None, group_channels: Optional[int] = GROUP_CHANNELS):
        super().__init__()
        if decoder not in DECODERS:
            raise InputError(f"Unknown head {decoder!r}; choose one of {', '.join(DECODERS)}.")
        if decoder != "linear" and len(channels) != 4:
            raise InputError(f"The {decoder} head needs 4 feature maps, got {len(channels)} layers.")
        self.decoder_name, self.width, self.group_channels = decoder, width or member_width(members), group_channels
        if decoder == "linear":
            self.classifier = nn.Conv2d(sum(channels), num_classes, 1)
            self.members = nn.ModuleList()
            return
        self.pyramid = nn.ModuleList([_pyramid_level(i, c) for i, c in enumerate(channels)])
        self.members = nn.ModuleList([_Decoder(decoder, channels, num_classes, self.width, group_channels)
                                      for _ in range(members)])

    @property
    def needs_images(self) -> bool:
        return self.decoder_name == "detail"

    def forward(self, features: List[torch.Tensor], images: Optional[torch.Tensor] = None):
        size = (features[-1].shape[-2] * PATCH, features[-1].shape[-1] * PATCH)
        if self.decoder_name == "linear":
            outputs = [self.classifier(torch.cat(list(features), 1))]
        else:
            pyramid = [m(f) for m, f in zip(self.pyramid, features)]
            outputs = [member(pyramid) for member in self.members]
        if not (self.training and len(outputs) > 1):
            outputs = [mean_log_probabilities(outputs)]
        if self.needs_images:
            if images is None or tuple(images.shape[-2:]) != size:
                raise InputError(f"The detail head needs the input bands at {size}, beside the feature maps.")
            outputs = [guided_log_probabilities(x, images) for x in outputs]
        else:
            outputs = [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in outputs]
        return tuple(outputs) if len(outputs) > 1 else outputs[0]


class GeoLinkSegmenter(nn.Module):
    """A GeoLink encoder with a segmentation head: forward(images, graphs) -> logits [B, K, H, W]."""

    def __init__(self, encoder: GeoLinkModel, decoder: str, num_classes: int, layers: Optional[Sequence[int]] = None,
                 classes: Optional[Sequence[dict]] = None, members: int = 1, width: Optional[int] = None,
                 group_channels: Optional[int] = GROUP_CHANNELS):
        super().__init__()
        if num_classes < 1:
            raise InputError("A segmentation head needs at least one class.")
        self.encoder = encoder
        self.layers = encoder._check_layers(layers)
        self.num_classes = num_classes
        self.classes = [dict(c) for c in classes] if classes else [
            {"name": f"class {i}", "color": None} for i in range(num_classes)]
        if len(self.classes) != num_classes:
            raise InputError(f"{len(self.classes)} class names for {num_classes} classes.")
        self.head = SegmentationHead(decoder, encoder.out_channels(self.layers), num_classes, members, width,
                                     group_channels)

    def head_card(self) -> dict:
        return {"type": "segmentation", "decoder": self.head.decoder_name, "layers": list(self.layers),
                "members": max(len(self.head.members), 1), "width": self.head.width,
                "group_channels": self.head.group_channels, "num_classes": self.num_classes,
                "classes": self.classes}

    @property
    def card(self) -> ModelCard:
        return self.encoder.card.replace(head=self.head_card())

    @card.setter
    def card(self, value: ModelCard) -> None:
        self.encoder.card = value.replace(head=None)

    def encode(self, images: torch.Tensor, graphs=None) -> List[torch.Tensor]:
        return self.encoder.encode(images, graphs, self.layers)

    def forward(self, images: torch.Tensor, graphs=None) -> torch.Tensor:
        return self.head(self.encode(images, graphs), images)


def build_segmenter(encoder: torch.nn.Module, head_type: str, num_classes: int, layers: Optional[Sequence[int]] = None,
                    classes: Optional[Sequence[dict]] = None, members: int = 1, width: Optional[int] = None,
                    group_channels: Optional[int] = GROUP_CHANNELS) -> GeoLinkSegmenter:
    """A segmenter with a new `head_type` head (one of DECODERS; `members` decoders of `width` channels, by
    default member_width's, normalised in groups of `group_channels`) on `encoder` (a GeoLinkModel, or a
    segmenter whose encoder is reused)."""
    if isinstance(encoder, GeoLinkSegmenter):
        encoder = encoder.encoder
    return GeoLinkSegmenter(encoder, head_type, num_classes, layers, classes, members, width, group_channels)


def unfreeze_last_blocks(segmenter: GeoLinkSegmenter, n: int) -> None:
    """Freeze the encoder except its last `n` used ViT blocks and (for n > 0) the fusion parts; the head trains."""
    enc = segmenter.encoder
    for p in enc.parameters():
        p.requires_grad_(False)
    last = segmenter.layers[-1]
    trainable = list(enc.img_encoder.blocks[max(0, last + 1 - n): last + 1]) if n > 0 else []
    if n > 0 and enc.has_osm:
        trainable += [enc.img_norm, enc.img_fusion_mlp, enc.osm_encoder, enc.osm_norm, enc.osm_node_fusion_mlp,
                      enc.osm_cross_modal_encoder]
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)
    for p in segmenter.head.parameters():
        p.requires_grad_(True)
