"""Segmentation heads over GeoLink's feature maps: segmentation-models-pytorch's UPerNet and FPN
decoders, a linear 1x1 classifier, or "detail": FPN plus a full-resolution path over the input bands.

The ViT gives four maps at 1/16 of the input; the decoders want a pyramid at 1/4, 1/8, 1/16 and
1/32, built as in the original's UPerNet (two transposed convolutions, one, identity, max-pool).
A ViT sees 16 x 16 px patches, so heads that decode from its maps alone draw edges no finer than
a patch; the detail head runs a light convolutional stem over the input bands at their own
resolution and fuses it with the upsampled FPN features, so each pixel is decided from its own
values and its neighbours' as well as from the context the encoder gives.
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

DETAIL_WIDTH = 16  # channels of the full-resolution path: its cost grows with the square of this
# The detail head's FPN is narrower than smp's default (256 / 128 channels): the full-resolution path adds
# the resolution, and the narrower decoder pays for that path, keeping the head about as fast as plain FPN.
DETAIL_FPN = {"pyramid_channels": 128, "segmentation_channels": 64}


def _pyramid_level(level: int, channels: int) -> nn.Module:
    if level == 0:
        return nn.Sequential(nn.ConvTranspose2d(channels, channels, 2, 2), nn.BatchNorm2d(channels), nn.GELU(),
                             nn.ConvTranspose2d(channels, channels, 2, 2))
    if level == 1:
        return nn.ConvTranspose2d(channels, channels, 2, 2)
    return nn.Identity() if level == 2 else nn.MaxPool2d(2)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DetailPath(nn.Module):
    """Coarse decoder features [B, C, H/4, W/4] + the input bands [B, bands, H, W] -> logits [B, K, H, W]:
    two 3x3 convolutions over the bands, concatenated with the upsampled (1x1-reduced) decoder
    features, one 3x3 convolution over both, a 1x1 classifier."""

    def __init__(self, coarse_channels: int, bands: int, num_classes: int, width: int = DETAIL_WIDTH):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(bands, width), _conv_bn(width, width))
        self.reduce = nn.Sequential(nn.Conv2d(coarse_channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                    nn.ReLU(inplace=True))
        self.fuse = _conv_bn(2 * width, width)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, coarse: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(coarse), size=images.shape[-2:], mode="bilinear", align_corners=False)
        detail = self.stem(images.to(up.dtype))
        return self.classifier(self.fuse(torch.cat([detail, up], 1)))


class SegmentationHead(nn.Module):
    """Feature maps [B, C_i, h, w] (+ the input bands [B, bands, 16h, 16w] for the detail head)
    -> logits [B, K, 16h, 16w]."""

    def __init__(self, decoder: str, channels: Sequence[int], num_classes: int, bands: int = 3):
        super().__init__()
        if decoder not in DECODERS:
            raise InputError(f"Unknown head {decoder!r}; choose one of {', '.join(DECODERS)}.")
        if decoder != "linear" and len(channels) != 4:
            raise InputError(f"The {decoder} head needs 4 feature maps, got {len(channels)} layers.")
        self.decoder_name = decoder
        if decoder == "linear":
            self.classifier = nn.Conv2d(sum(channels), num_classes, 1)
            return
        self.pyramid = nn.ModuleList([_pyramid_level(i, c) for i, c in enumerate(channels)])
        encoder_channels = [0, 0, *channels]  # smp's layout: [1, 1/2, 1/4, 1/8, 1/16, 1/32]; the first two unused
        if decoder == "upernet":
            self.decoder = UPerNetDecoder(encoder_channels, encoder_depth=5, decoder_channels=256)
            width = 256
        else:
            self.decoder = FPNDecoder(encoder_channels, encoder_depth=5, **(DETAIL_FPN if decoder == "detail" else {}))
            width = self.decoder.out_channels
        if decoder == "detail":
            self.detail = DetailPath(width, bands, num_classes)
        else:
            self.classifier = nn.Conv2d(width, num_classes, 1)

    @property
    def needs_images(self) -> bool:
        return self.decoder_name == "detail"

    def forward(self, features: List[torch.Tensor], images: Optional[torch.Tensor] = None) -> torch.Tensor:
        size = (features[-1].shape[-2] * PATCH, features[-1].shape[-1] * PATCH)
        if self.decoder_name == "linear":
            x = torch.cat(list(features), 1)
        else:
            x = self.decoder([None, None, *(m(f) for m, f in zip(self.pyramid, features))])
        if self.needs_images:
            if images is None or tuple(images.shape[-2:]) != size:
                raise InputError(f"The detail head needs the input bands at {size}, beside the feature maps.")
            return self.detail(x, images)
        return F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)


class GeoLinkSegmenter(nn.Module):
    """A GeoLink encoder with a segmentation head: forward(images, graphs) -> logits [B, K, H, W]."""

    def __init__(self, encoder: GeoLinkModel, decoder: str, num_classes: int, layers: Optional[Sequence[int]] = None,
                 classes: Optional[Sequence[dict]] = None):
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
        self.head = SegmentationHead(decoder, encoder.out_channels(self.layers), num_classes, encoder.config.in_chans)

    def head_card(self) -> dict:
        return {"type": "segmentation", "decoder": self.head.decoder_name, "layers": list(self.layers),
                "num_classes": self.num_classes, "classes": self.classes}

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
                    classes: Optional[Sequence[dict]] = None) -> GeoLinkSegmenter:
    """A segmenter with a new `head_type` head (one of DECODERS) on `encoder` (a GeoLinkModel,
    or a segmenter whose encoder is reused)."""
    if isinstance(encoder, GeoLinkSegmenter):
        encoder = encoder.encoder
    return GeoLinkSegmenter(encoder, head_type, num_classes, layers, classes)


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
