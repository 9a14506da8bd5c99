"""`geolink embed`: GeoLink encoder features as a multi-band raster at patch resolution, plus a PCA preview."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import option
from ..progress import Progress
from ..raster.options import RasterOptions

HELP = """Write the GeoLink encoder's features of a raster as a multi-band GeoTIFF, one pixel per patch.

OUT.tif has one float32 band per feature channel, one pixel per 16 x 16 input pixels (NaN = nodata);
windows overlap and their features are blended. With --osm the features are the fused image + OSM
ones, else the image encoder's. OUT_pca.tif (or --preview) is a 3-band 8-bit preview: the first three
principal components of the features, so similar places have similar colours."""

SAMPLE = 20_000  # feature vectors kept for fitting the PCA


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


class FeatureWriter:
    """Sink: blended features written strip by strip, and a fixed-size sample kept for the PCA."""

    def __init__(self, raster, seed: int = 0):
        import numpy as np

        self.raster, self.rng = raster, np.random.default_rng(seed)
        self.sample, self.seen = [], 0

    def __call__(self, row, values, valid):
        import numpy as np

        out = np.where(valid[None], values, np.nan).astype(np.float32)
        self.raster.ds.WriteArray(out, 0, row)
        vectors = values[:, valid].T
        self.seen += len(vectors)
        if len(vectors):  # keep every pixel with probability SAMPLE / (pixels so far), roughly uniform
            keep = self.rng.random(len(vectors)) < min(1.0, 4 * SAMPLE / max(self.seen, 1))
            self.sample.append(vectors[keep])
            if sum(len(s) for s in self.sample) > 4 * SAMPLE:
                pool = np.concatenate(self.sample)
                self.sample = [pool[self.rng.choice(len(pool), SAMPLE, replace=False)]]


def fit_pca(sample, k: int = 3):
    """(mean, components [k, C], low, high) of the sample; components' signs fixed so output is reproducible."""
    import numpy as np

    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    comps = vt[:k]
    if len(comps) < k:
        comps = np.vstack([comps, np.zeros((k - len(comps), sample.shape[1]), dtype=comps.dtype)])
    comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])[:, None] + (comps.sum(1) == 0)[:, None]
    proj = (sample - mean) @ comps.T
    low, high = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    return mean, comps, low, np.maximum(high, low + 1e-6)


def write_preview(features_ds, preview_ds, pca, progress: Progress, rows: int = 256) -> None:
    """Project the feature raster strip by strip onto the PCA and write bytes 1-255 (0 = nodata)."""
    import numpy as np

    mean, comps, low, high = pca
    height = features_ds.RasterYSize
    starts = range(0, height, rows)
    for r0 in progress.steps(starts, len(starts), "Writing the PCA preview"):
        block = features_ds.ReadAsArray(0, r0, None, min(rows, height - r0))
        c, h, w = block.shape
        flat = block.reshape(c, -1).T
        ok = np.isfinite(flat).all(1)
        proj = np.zeros((len(flat), 3), dtype=np.float32)
        proj[ok] = (flat[ok] - mean) @ comps.T
        scaled = np.clip((proj - low) / (high - low), 0, 1) * 254 + 1
        out = np.where(ok[:, None], scaled, 0).astype(np.uint8)
        preview_ds.WriteArray(out.T.reshape(3, h, w), 0, r0)


def default_preview(out: str) -> str:
    path = Path(out)
    return str(path.with_name(f"{path.stem}_pca{path.suffix or '.tif'}"))


def run(config: Config, progress: Progress) -> dict:
    import contextlib

    import numpy as np
    import torch

    from ..atomic import atomic_output
    from ..errors import InputError, opt
    from ..raster.pipeline import prepare, require_valid
    from ..raster.styles import rgb_qml, write_qml
    from ..raster.writer import geotiff, provenance

    if config.layer < 0:
        raise InputError(f"{opt('layer')} must be 0 (the last output) or a block number from 1, got {config.layer}.")
    job = prepare(config, progress, patch_outputs=True)
    patch = job.plan.factor
    predict = encoder_predict(job.model.module, config.layer)
    tile = job.plan.tile
    with torch.inference_mode():
        channels = int(predict(torch.zeros(1, len(job.bands), tile, tile, device=job.runtime.device), None).shape[1])
    src, plan = job.source, job.plan
    gt = list(src.geotransform)
    gt[1] *= patch
    gt[5] *= patch
    meta = provenance("embed", job.model.path, job.model.card, config.raster, config.osm,
                      {"layer": config.layer or "last", "channels": channels, "patch_size": patch},
                      osm_max_nodes=config.osm_max_nodes)
    preview = config.preview or default_preview(config.out)
    with contextlib.ExitStack() as stack:
        feats = stack.enter_context(geotiff(stack.enter_context(atomic_output(config.out)), plan.out_width,
                                            plan.out_height, channels, "float32", gt, src.wkt, float("nan"), meta,
                                            block_rows=16))
        writer = FeatureWriter(feats)
        stats = job.run(predict, channels, writer, progress.sub(5, 90), "Embedding, batch")
        require_valid(stats)
        feats.ds.FlushCache()
        sample = np.concatenate(writer.sample) if writer.sample else np.zeros((0, channels), np.float32)
        pca = fit_pca(sample.astype(np.float64))
        prev = stack.enter_context(geotiff(stack.enter_context(atomic_output(preview)), plan.out_width,
                                           plan.out_height, 3, "uint8", gt, src.wkt, 0, meta))
        write_preview(feats.ds, prev.ds, pca, progress.sub(90, 99))
    write_qml(Path(preview), rgb_qml())
    progress.update(100, "Done")
    return {"outputs": {"embeddings": config.out, "preview": preview},
            "figures": {**job.figures(stats), "channels": channels, "patch_size": patch,
                        "out_width": plan.out_width, "out_height": plan.out_height, "pca_sample": len(sample)},
            "report": f"{channels} features at {plan.out_width} x {plan.out_height} px -> {config.out}; "
                      f"PCA preview -> {preview}"}
