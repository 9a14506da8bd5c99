"""The head trainer on real pixels: it learns, early-stops, checkpoints, resumes to the same result, cancels."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from geolink.errors import Cancelled
from geolink.progress import Progress
from geolink.raster.source import Source
from geolink.training.cache import FeatureCache, build_cache
from geolink.training.dataset import label_windows, read_windows
from geolink.training.labels import read_labels
from geolink.training.sampling import spatial_split
from geolink.training.trainer import Checkpoint, Samples, TrainSettings, fit

from .finetune_helpers import crop_raster, labels_in_crop

X, Y, SIZE, WIN = 192, 1152, 384, 64


@pytest.fixture(scope="module")
def problem(data_dir, tmp_path_factory):
    """Samples and 'features' (the pixels pooled 4x4) for the forest/cropland/built-up crop."""
    tmp = tmp_path_factory.mktemp("trainer")
    grid = Source(str(crop_raster(data_dir / "s2" / "s2_rgbn.tif", tmp / "c.tif", X, Y, SIZE)))
    labels = read_labels(str(labels_in_crop(tmp / "l.geojson", X, Y, SIZE)), "class", grid.wkt, grid.bounds)
    wins = label_windows(labels, grid, WIN, 0)
    pixels = wins.polygon_pixels(len(labels.geometries)).astype(float)
    held = spatial_split(labels.class_ids, labels.centroids, pixels, 0.3, WIN * 10, seed=0)
    train_t, val_t = wins.targets(labels.class_ids, ~held, False), wins.targets(labels.class_ids, held, True)
    images, valid = read_windows(grid, wins.positions, WIN, [1, 2, 3, 4], lambda a: (a - 1000) / 500, Progress())
    assert valid.all()
    samples = Samples(train_labels=train_t, val_labels=val_t, n_classes=len(labels.classes))
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(images), 4)
    cache = build_cache(lambda idx: [pooled[idx]], len(images), 4, Progress())
    return samples, cache, labels.class_names


def _head(n_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, n_classes, 1))


def _run(problem, epochs, checkpoint=None, progress=None, patience=50):
    samples, cache, names = problem
    head = _head(samples.n_classes)
    settings = TrainSettings(epochs=epochs, batch_size=4, lr=1e-2, patience=patience, seed=1)
    return head, fit(head, lambda idx, mix=None: head(cache.get(idx, "cpu")[0]), samples, settings, "cpu",
                     progress or Progress(), checkpoint, names)


def test_head_learns_and_reports_validation(problem):
    _, result = _run(problem, 12)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8
    v = result.validation
    assert v["pixels"] > 0 and v["overall_accuracy"] > 0.5  # 3 classes: chance is about 0.33
    assert result.best_epoch == max(result.history, key=lambda h: h["val_mean_iou"])["epoch"]


def test_resume_gives_the_same_model(problem, tmp_path):
    head_a, full = _run(problem, 6)
    ck = Checkpoint(tmp_path / "m.finetune-state.safetensors", key="k1")
    _run(problem, 3, ck)
    assert ck.path.exists()
    head_b, resumed = _run(problem, 6, ck)
    assert resumed.resumed_from == 3 and len(resumed.history) == 6
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    for a, b in zip(head_a.state_dict().values(), head_b.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    other = Checkpoint(ck.path, key="another config")
    assert other.load() is None  # a checkpoint of another configuration is not resumed


def test_early_stopping(problem):
    _, result = _run(problem, 60, patience=2)
    assert len(result.history) < 60
    assert len(result.history) - result.best_epoch <= 3


def test_cancel_between_batches_keeps_the_checkpoint(problem, tmp_path):
    cancel = threading.Event()
    seen = []

    def sink(event):
        seen.append(event)
        if event.get("event") == "log" and "epoch 2" in event["message"]:
            cancel.set()

    ck = Checkpoint(tmp_path / "c.safetensors", key="k")
    with pytest.raises(Cancelled):
        _run(problem, 10, ck, Progress(sink, cancel))
    assert ck.load()["meta"]["epoch"] == 2


def test_feature_cache_spills_to_disk():
    cache = FeatureCache([(3, 2, 2)], 5, memory_limit=10)
    assert cache.on_disk
    cache.put(0, [torch.arange(5 * 12, dtype=torch.float32).reshape(5, 3, 2, 2)])
    got = cache.get(np.array([1, 4]), "cpu")[0]
    assert got.dtype == torch.float32 and got[1, 0, 0, 0] == 48
    cache.close()


def test_patch_mixing_reaches_forward_in_training_only(problem):
    samples, cache, names = problem
    head = _head(samples.n_classes)
    calls = []

    def forward(idx, mix=None):
        calls.append((head.training and len(idx) > 1, mix is not None))  # a batch of one is never mixed
        features = cache.get(idx, "cpu")[0]
        return head(features if mix is None else mix(features))

    settings = TrainSettings(epochs=20, batch_size=4, lr=1e-2, patience=50, seed=1, patch_mix=0.5, patch=4)
    result = fit(head, forward, samples, settings, "cpu", Progress(), None, names)
    mixed = [m for mixable, m in calls if mixable]
    assert len(mixed) >= 20 and 0.25 < sum(mixed) / len(mixed) < 0.75
    assert not any(m for mixable, m in calls if not mixable)  # validation sees the windows as they are
    assert result.validation["overall_accuracy"] > 0.5
