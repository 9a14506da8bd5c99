"""`geolink cluster`: an unsupervised map: k-means over the GeoLink embeddings of a raster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import option
from ..inference.options import RasterOptions
from ..progress import Progress

HELP = """Group the places of a raster into K clusters of alike GeoLink embeddings (k-means), without labels.

k-means (k-means++ seeding, cosine geometry: unit-length features) is fitted on a sample of the
features, drawn as whole windows at random (--sample), then every location is assigned window by
window: distances to the cluster centres at patch resolution are interpolated bilinearly to the
raster's resolution, and the nearest centre wins. OUT.tif is a paletted GeoTIFF with the legend
"cluster 1..K" (cluster 1 the largest in the sample; 255 = nodata) and OUT.qml beside it. The same
inputs and --seed give the same map. --embeddings E.tif reuses the features 'geolink embed' wrote
(same model, raster, OSM); without it the raster is encoded first."""


@dataclass
class Config(RasterOptions):
    out: str = option(flag="--out", required=True, metavar="C.tif", help="output cluster raster (GeoTIFF)")
    k: int = option(8, flag="--k", metavar="K", help="number of clusters, 2 to 254")
    seed: int = option(0, flag="--seed", metavar="N", help="random seed of the sample and the k-means seeding")
    sample: int = option(20000, flag="--sample", metavar="N", help="feature vectors the k-means is fitted on")
    embeddings: Optional[str] = option(None, flag="--embeddings", metavar="E.tif", role="input",
                                       help="features written by 'geolink embed' with the same model (skips encoding)")


def run(config: Config, progress: Progress) -> dict:
    import contextlib
    from pathlib import Path

    import numpy as np

    from ..atomic import OutputSet
    from ..config import paths_with_role
    from ..errors import InputError
    from ..explore.embeddings import embeddings_for
    from ..explore.vectors import kmeans, squared_distances, unit_rows
    from ..inference.sinks import NODATA, ClassWriter
    from ..raster.styles import palette, paletted_qml, write_qml
    from ..raster.writer import geotiff, provenance, set_classes

    if not 2 <= config.k < NODATA:
        raise InputError(f"--k must be from 2 to {NODATA - 1}, got {config.k}.")
    if config.sample < config.k:
        raise InputError(f"--sample ({config.sample}) must be at least --k ({config.k}).")
    classes = [{"name": f"cluster {i + 1}", "color": c} for i, c in enumerate(palette(config.k))]
    with contextlib.ExitStack() as stack:
        outputs = stack.enter_context(OutputSet({"out": config.out}, progress.log, paths_with_role(config, "input")))
        emb, src, bands, model_path, card = stack.enter_context(embeddings_for(config, config.embeddings,
                                                                               progress.sub(0, 80)))
        progress.update(80, f"Fitting {config.k} clusters")
        sample = unit_rows(emb.sample(config.sample, config.seed))
        distinct = len(np.unique(sample, axis=0))
        if distinct < config.k:
            raise InputError(f"--k {config.k} is more than the {distinct} distinct locations with data the raster "
                             f"has at the model's patch resolution (one per {emb.patch} x {emb.patch} pixels).",
                             hint=f"Use --k {max(distinct, 2)} or less, or a larger raster.")
        centroids = kmeans(sample, config.k, config.seed)
        progress.check_cancelled()
        meta = provenance("cluster", model_path, card, src.path, config.osm,
                          {"k": config.k, "seed": config.seed, "sample": len(sample),
                           "embeddings": Path(emb.path).name})
        out = stack.enter_context(geotiff(outputs.partial(config.out), src.width, src.height, 1,
                                          "uint8", src.geotransform, src.wkt, NODATA, meta))
        set_classes(out.ds.GetRasterBand(1), classes, NODATA)
        writer = ClassWriter(out)
        emb.map_to_pixels(src, bands, lambda v: -squared_distances(unit_rows(v), centroids), config.k, writer,
                          progress.sub(82, 99), "Assigning clusters, strip")
        style = write_qml(outputs, config.out, paletted_qml(classes))
    progress.update(100, "Done")
    return {"outputs": {"clusters": config.out, "style": style},
            "figures": {"k": config.k, "sample": len(sample), "seed": config.seed,
                        "width": src.width, "height": src.height, "class_shares": writer.shares(classes)},
            "report": f"{config.k} clusters ({src.width} x {src.height} px) -> {config.out}"}
