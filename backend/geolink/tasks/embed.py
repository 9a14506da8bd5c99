"""`geolink embed`: GeoLink encoder features as a multi-band raster at patch resolution, plus a PCA preview."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import option
from ..inference.options import RasterOptions
from ..progress import Progress

HELP = """Write the GeoLink encoder's features of a raster as a multi-band GeoTIFF, one pixel per patch.

OUT.tif has one float32 band per feature channel, one pixel per 16 x 16 input pixels (NaN = nodata);
windows overlap and their features are blended. With --osm the features are the fused image + OSM
ones, else the image encoder's. OUT_pca.tif (or --preview) is a 3-band 8-bit preview: the first three
principal components of the features, so similar places have similar colours."""

EMBEDDINGS, PREVIEW = "embeddings", "preview"  # the keys of the result's outputs (the plugin reads them)


@dataclass
class Config(RasterOptions):
    out: str = option(flag="--out", required=True, metavar="OUT.tif", help="output feature raster (GeoTIFF)")
    layer: int = option(0, flag="--layer", metavar="N",
                        help="transformer block whose output to write, from 1 (0: the model's last, fused output)")
    preview: Optional[str] = option(None, flag="--preview", metavar="PCA.tif",
                                    help="the 3-band PCA preview (default: OUT_pca.tif)")


def encoder_predict(module, layer: int):
    """Features [B, C, H/16, W/16] of block `layer` (from 1) or of the model's last layer; on a model with OSM
    the map asked for is the fused one. A segmentation package's encoder is used without its head."""
    encoder = getattr(module, "encoder", module)

    def predict(images, graphs):
        maps = encoder.encode(images, graphs, layers=[layer - 1] if layer else None)
        return maps[-1]
    return predict


def default_preview(out: str) -> str:
    path = Path(out)
    return str(path.with_name(f"{path.stem}_pca{path.suffix or '.tif'}"))


def run(config: Config, progress: Progress) -> dict:
    import contextlib

    import numpy as np
    import torch

    from ..errors import InputError
    from ..inference.job import prepare
    from ..inference.pca import fit_pca, write_preview
    from ..inference.sinks import FeatureWriter
    from ..raster.styles import rgb_qml, write_qml

    if config.layer < 0:
        raise InputError(f"--layer must be 0 (the last output) or a block number from 1, got {config.layer}.")
    job = prepare(config, progress, patch_outputs=True)
    patch, plan = job.plan.factor, job.plan
    predict = encoder_predict(job.model.module, config.layer)
    with torch.inference_mode():
        channels = int(predict(torch.zeros(1, len(job.bands), plan.tile, plan.tile, device=job.runtime.device),
                               None).shape[1])
    meta = job.provenance("embed", layer=config.layer or "last", channels=channels, patch_size=patch)
    preview = config.preview or default_preview(config.out)
    with contextlib.ExitStack() as stack:
        feats = stack.enter_context(job.output_raster(config.out, channels, "float32", float("nan"), meta,
                                                      block_rows=16))
        writer = FeatureWriter(feats)
        stats = job.run(predict, channels, writer, progress.sub(5, 90), "Embedding, batch")
        feats.ds.FlushCache()
        sample = np.concatenate(writer.sample) if writer.sample else np.zeros((0, channels), np.float32)
        pca = fit_pca(sample.astype(np.float64))
        prev = stack.enter_context(job.output_raster(preview, 3, "uint8", 0, meta))
        write_preview(feats.ds, prev.ds, pca, progress.sub(90, 99))
    write_qml(Path(preview), rgb_qml())
    progress.update(100, "Done")
    return {"outputs": {EMBEDDINGS: config.out, PREVIEW: preview},
            "figures": {**job.figures(stats), "channels": channels, "patch_size": patch,
                        "out_width": plan.out_width, "out_height": plan.out_height, "pca_sample": len(sample)},
            "report": f"{channels} features at {plan.out_width} x {plan.out_height} px -> {config.out}; "
                      f"PCA preview -> {preview}"}
