"""`geolink pretrain`: GeoLink self-supervised pretraining on imagery paired with OSM."""

from __future__ import annotations

import contextlib
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..config import option
from ..devices import DEVICE_CHOICES
from ..errors import opt
from ..progress import Progress

HELP = """Pretrain a GeoLink encoder on imagery paired with OpenStreetMap (masked image reconstruction,
image/graph contrast, masked OSM-node reconstruction; weights 1 / 0.01 / 0.01).

Data: --pairs DIR in the original GeoLink example layout, or --raster FILE... with --osm FILE...
(tiled automatically; rasters without OSM train the image objective only). Continue from an official
checkpoint or a model package with --init. Several GPUs or nodes: run under torchrun. The output
folder holds model.safetensors (a model package), losses.csv and checkpoint.pt (resumed automatically)."""


@dataclass
class Config:
    out: str = option(flag="--out", required=True, help="output folder (package, losses.csv, checkpoint)")
    pairs: Optional[str] = option(flag="--pairs", help="folder of pairs in the original GeoLink layout")
    raster: List[str] = option(default_factory=list, flag="--raster", help="rasters to tile into training images")
    osm: List[str] = option(default_factory=list, flag="--osm", help="OSM files (PBF, GeoJSON, GPKG...) for --raster")
    bands: List[int] = option(default_factory=lambda: [1, 2, 3], flag="--bands",
                              help="raster bands used as red, green, blue (default: 1 2 3)")
    tile_size: int = option(224, flag="--tile-size", minimum=16, help="raster tile size in pixels")
    tile_stride: Optional[int] = option(flag="--tile-stride", help="tile step in pixels (default: the tile size)")
    image_size: int = option(224, flag="--image-size", minimum=16, help="model input size in pixels (multiple of 16)")
    arch: str = option("vit_tiny_patch16_224", flag="--arch", help="timm ViT name (patch 16)")
    init: Optional[str] = option(flag="--init", help="start from an official GeoLink checkpoint or a model package")
    text_encoder: str = option("minilm", flag="--text-encoder", help="tag text encoder for new graphs")
    steps: int = option(1000, flag="--steps", minimum=1, help="optimiser steps")
    batch_size: int = option(32, flag="--batch-size", minimum=1, maximum=65536, help="images per step per process")
    lr: Optional[float] = option(flag="--lr", help="peak learning rate (default: 1.5e-4 x global batch / 256)")
    warmup: Optional[int] = option(flag="--warmup", help="warm-up steps (default: 5 percent of --steps)")
    mask_ratio: float = option(0.75, flag="--mask-ratio", minimum=0, maximum=0.99, help="share of image patches masked")
    osm_mask_ratio: float = option(0.2, flag="--osm-mask-ratio", minimum=0, maximum=0.99,
                                   help="share of OSM nodes masked")
    checkpoint_every: int = option(100, flag="--checkpoint-every", minimum=1, help="steps between checkpoints")
    resume: bool = option(True, flag="--resume", help="continue from OUT/checkpoint.pt when present")
    cache_dir: Optional[str] = option(flag="--cache-dir", help="prepared-pairs cache (default: OUT/cache)")
    device: str = option("auto", flag="--device", choices=DEVICE_CHOICES, help="compute device")
    seed: int = option(0, flag="--seed", help="random seed")
    threads: Optional[int] = option(flag="--threads", help="CPU threads for torch")


def run(config: Config, progress: Progress) -> dict:
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    with _stop_on_sigterm(progress):
        return _run(config, progress)


def _run(config: Config, progress: Progress) -> dict:
    import torch

    from ..devices import select_device
    from ..pretraining.augment import PairAugment
    from ..pretraining.dataset import PairsDataset
    from ..pretraining.images import STRETCH
    from ..pretraining.model import build_model, model_info, write_package
    from ..pretraining.prepare import DataSpec, prepare
    from ..pretraining.train import DistributedContext, TrainSettings, pretrain

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = DistributedContext(select_device(config.device))
    if not ctx.main:
        progress = Progress(cancel=progress.cancel_event)
    spec = DataSpec(pairs=config.pairs, rasters=list(config.raster), osm=list(config.osm), bands=list(config.bands),
                    tile_size=config.tile_size, tile_stride=config.tile_stride, text_encoder=config.text_encoder)
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / "cache"
    if ctx.main:
        samples = prepare(spec, cache_dir, progress.sub(0, 10))
    ctx.barrier()
    if not ctx.main:
        samples = prepare(spec, cache_dir, progress.sub(0, 10))
    with_osm = sum(1 for s in samples if s["graph"] is not None)
    progress.log(f"{len(samples)} training images, {with_osm} with OSM graphs")
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.init, spec.text_encoder, config.image_size)
    text_dim, native = model_info(model)
    if config.init and native != config.image_size:
        progress.warn(f"{opt('init')} model was pretrained at {native} px; training at "
                      f"{opt('image_size', config.image_size)}.")
    dataset = PairsDataset(samples, text_dim, PairAugment(size=config.image_size), seed=config.seed)
    settings = TrainSettings(steps=config.steps, batch_size=config.batch_size, lr=config.lr, warmup=config.warmup,
                             mask_ratio=config.mask_ratio, osm_mask_ratio=config.osm_mask_ratio,
                             checkpoint_every=config.checkpoint_every, seed=config.seed)
    try:
        figures = pretrain(model, dataset, settings, out, ctx, progress.sub(10, 98), resume=config.resume)
    finally:
        ctx.close()
    figures.update({"images": len(samples), "images_with_osm": with_osm})
    outputs = {"losses": str(out / "losses.csv"), "checkpoint": str(out / "checkpoint.pt")}
    if ctx.main:
        provenance = {"task": "pretrain", "date": datetime.date.today().isoformat(), "arch": config.arch,
                      "init": config.init, "data": {"pairs": config.pairs, "rasters": config.raster,
                                                    "osm": config.osm, "bands": config.bands,
                                                    "tile_size": config.tile_size, "stretch": STRETCH},
                      "settings": json.loads(json.dumps(settings.__dict__, default=list)),
                      "device": str(ctx.device), "world_size": ctx.world, "figures": figures}
        outputs["model"] = str(write_package(model, out / "model.safetensors", provenance))
    progress.update(100, "Done")
    return {"outputs": outputs, "figures": figures}


@contextlib.contextmanager
def _stop_on_sigterm(progress: Progress):
    """While a run lasts, `kill PID` stops it like a cancel: after the current step, with a checkpoint."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: progress.cancel_event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
