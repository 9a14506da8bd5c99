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
    out: str = option(flag="--out", required=True, metavar="OUT.tif", role="output",
                      help="output feature raster (GeoTIFF)")
    layer: int = option(0, flag="--layer", metavar="N", minimum=0,
                        help="transformer block whose output to write, from 1 (0: the model's last, fused output)")
    preview: Optional[str] = option(None, flag="--preview", metavar="PCA.tif", role="output",
                                    help="the 3-band PCA preview (default: OUT_pca.tif)")


def encoder_of(module):
    """A segmentation package's encoder (used without its head), else the module itself."""
    return getattr(module, "encoder", module)


def encoder_predict(module, layer: int):
    """Features [B, C, H/16, W/16] of block `layer` (from 1) or of the model's last layer; on a model with OSM
    the map asked for is the fused one."""
    encoder = encoder_of(module)

    def predict(images, graphs):
        maps = encoder.encode(images, graphs, layers=[layer - 1] if layer else None)
        return maps[-1]
    return predict


def default_preview(out: str) -> str:
    path = Path(out)
    return str(path.with_name(f"{path.stem}_pca{path.suffix or '.tif'}"))


def check_layer(layer: int, encoder) -> None:
    """Refuse a block number the encoder does not have, in the user's numbering (from 1; 0: the last)."""
    from ..errors import InputError, opt

    depth = int(getattr(encoder, "depth", 0) or 0)
    if layer < 0 or (depth and layer > depth):
        where = "is past the model's last block" if layer > 0 else "is not a block number"
        raise InputError(f"{opt('layer')} {layer} {where}: the model has {depth} blocks, numbered 1 to {depth} "
                         "(0: the last, fused output).", option="layer")


def run(config: Config, progress: Progress) -> dict:
    import contextlib

    import numpy as np
    import torch

    from ..atomic import OutputSet
    from ..config import paths_with_role
    from ..inference import budget
    from ..inference.job import prepare
    from ..inference.pca import fit_pca, write_preview
    from ..inference.sinks import FeatureWriter
    from ..raster.styles import rgb_qml, write_qml

    preview = config.preview or default_preview(config.out)
    with OutputSet({"out": config.out, "preview": preview}, progress.log,
                   paths_with_role(config, "input")) as outputs:
        job = prepare(config, progress, patch_outputs=True)
        patch, plan = job.plan.factor, job.plan
        check_layer(config.layer, encoder_of(job.model.module))
        predict = encoder_predict(job.model.module, config.layer)
        with torch.inference_mode():
            channels = int(predict(torch.zeros(1, len(job.bands), plan.tile, plan.tile, device=job.runtime.device),
                                   None).shape[1])
        budget.check(job, predict, outputs, [budget.Band(plan.out_width, plan.out_height, channels, "float32"),
                                             budget.Band(plan.out_width, plan.out_height, 3, "uint8")],
                     config.yes, progress)
        meta = job.provenance("embed", layer=config.layer or "last", channels=channels, patch_size=patch)
        with contextlib.ExitStack() as stack:
            feats = stack.enter_context(job.output_raster(config.out, channels, "float32", float("nan"), meta,
                                                          block_rows=16, outputs=outputs))
            writer = FeatureWriter(feats)
            stats = job.run(predict, channels, writer, progress.sub(5, 90), "Embedding, batch")
            feats.ds.FlushCache()
            sample = np.concatenate(writer.sample) if writer.sample else np.zeros((0, channels), np.float32)
            pca = fit_pca(sample.astype(np.float64))
            prev = stack.enter_context(job.output_raster(preview, 3, "uint8", 0, meta, outputs=outputs))
            write_preview(feats.ds, prev.ds, pca, progress.sub(90, 99))
        write_qml(outputs, preview, rgb_qml())
    progress.update(100, "Done")
    return {"outputs": {EMBEDDINGS: config.out, PREVIEW: preview},
            "figures": {**job.figures(stats), "channels": channels, "patch_size": patch,
                        "out_width": plan.out_width, "out_height": plan.out_height, "pca_sample": len(sample)},
            "report": f"{channels} features at {plan.out_width} x {plan.out_height} px -> {config.out}; "
                      f"PCA preview -> {preview}" + (" (replaced the existing files)" if outputs.replaced else "")}
