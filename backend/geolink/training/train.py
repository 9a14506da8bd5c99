"""Training the segmenter on the prepared data: a new head on the base model, what trains (the head on cached
encoder features, or the last encoder blocks too), the fit (trainer.py) and the scores on the held-out polygons."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..progress import Progress
from .metrics import scores
from .prepare import TrainingData
from .split import TEST, TRAIN
from .trainer import Checkpoint, FitResult, TrainSettings, evaluate, fit


@dataclass
class Trained:
    """The trained segmenter, its fit (best epoch, history) and its scores."""

    segmenter: object
    fit: FitResult
    validation: dict  # on the validation polygons, or on the training ones when none was held out
    test: Optional[dict]
    seconds: float  # the fit's

    @property
    def scored_on(self) -> str:
        return "test" if self.test else "validation"

    @property
    def final(self) -> dict:
        """The scores users see: the test polygons' when there are any."""
        return self.test or self.validation


def train(config, base, data: TrainingData, device, checkpoint: Checkpoint, progress: Progress) -> Trained:
    """A new `config.head` head on `base`, trained on `data` (resumed from `checkpoint` when it matches) and scored."""
    import torch

    from .. import models

    labels, part = data.labels, data.part
    torch.manual_seed(config.seed)
    segmenter = models.build_segmenter(base, config.head, len(labels.classes), classes=labels.classes,
                                       members=config.members).to(device)
    module, forward, cache = trainable(config, segmenter, data, device, progress.sub(0, 30))
    settings = TrainSettings(epochs=config.epochs, batch_size=config.batch_size, patience=config.patience,
                             seed=config.seed, patch_mix=config.patch_mix, patch=base.card.patch_size)
    t0 = time.monotonic()
    try:
        result = fit(module, forward, data.samples, settings, device, progress.sub(30 if cache else 0, 100),
                     checkpoint, labels.class_names)
        seconds = time.monotonic() - t0
        validation = result.validation
        if validation is None:
            progress.warn("No polygon was held out: the report scores the training pixels, which overstates "
                          "accuracy.")
            validation = _score(module, forward, data, part == TRAIN, config.batch_size)
        test = _score(module, forward, data, part == TEST, config.batch_size) if (part == TEST).any() else None
    finally:
        if cache is not None:
            cache.close()
    return Trained(segmenter, result, validation, test, seconds)


def trainable(config, segmenter, data: TrainingData, device, progress: Progress):
    """(module whose parameters train, forward(sample indices, PatchMix or None) -> logits, feature cache or None).

    Frozen encoder: its features are cached once and only the head trains (the detail head's guided upsampling
    reads the window's bands as well, which are in memory anyway). --unfreeze K: the last K
    blocks train too, so every step runs the encoder on the (transformed) window pixels. Mixing pastes blocks
    of the encoder's feature maps (and of the bands), so both ways train the head alike."""
    from .. import models

    head = segmenter.head
    if config.unfreeze:
        models.unfreeze_last_blocks(segmenter, config.unfreeze)
        module, cache = segmenter, None
    else:
        from .cache import build_cache

        segmenter.encoder.eval()
        for p in segmenter.encoder.parameters():
            p.requires_grad_(False)
        cache = build_cache(lambda idx: segmenter.encode(data.batch_images(idx, device), data.batch_graphs(idx)),
                            len(data.sample_win), config.batch_size, progress)
        module = head

    def forward(idx, mix=None):
        # the detail head follows the window's bands, read beside the cached features
        images = data.batch_images(idx, device) if cache is None or head.needs_images else None
        feats = cache.get(idx, device) if cache is not None else segmenter.encode(images, data.batch_graphs(idx))
        if mix is not None:
            feats = [mix(f) for f in feats]
            images = mix(images) if head.needs_images else None
        return head(feats, images)

    return module, forward, cache


def _score(module, forward, data: TrainingData, polygons: np.ndarray, batch_size: int) -> dict:
    """Scores of the trained model on the pixels of `polygons`."""
    targets = data.scoring_targets(polygons)
    index = np.flatnonzero((targets.reshape(len(targets), -1) >= 0).any(1))
    return scores(evaluate(module, forward, data.samples.n_classes, index, targets, batch_size),
                  data.labels.class_names)
