"""`geolink classify`: a land-cover map from a raster (and OSM) with a segmentation model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import option
from ..inference.options import RasterOptions
from ..progress import Progress

HELP = """Classify every pixel of a raster with a GeoLink model that has a segmentation head.

Writes OUT.tif: a tiled, compressed GeoTIFF of class numbers with a colour table and class names
(QGIS shows a named legend) and OUT.qml beside it; nodata where the input is nodata (value 255).
--probabilities P.tif adds one band per class: the probability in percent (0-100, 255 = nodata).
Windows of the model's size overlap and their logits are blended, so no seams show; with --osm each
window is fused with the graph of the OSM features inside it. Outputs appear only when complete."""

@dataclass
class Config(RasterOptions):
    out: str = option(flag="--out", required=True, metavar="OUT.tif", role="output",
                      help="output class raster (GeoTIFF)")
    probabilities: Optional[str] = option(None, flag="--probabilities", metavar="P.tif", role="output",
                                          help="also write per-class probabilities (percent) to this GeoTIFF")


def run(config: Config, progress: Progress) -> dict:
    import contextlib

    from ..atomic import OutputSet
    from ..config import paths_with_role
    from ..inference import budget
    from ..inference.job import prepare
    from ..inference.sinks import NODATA, ClassWriter
    from ..raster.styles import class_table, paletted_qml, write_qml
    from ..raster.writer import set_classes

    with OutputSet({"out": config.out, "probabilities": config.probabilities}, progress.log,
                   paths_with_role(config, "input")) as outputs:
        job = prepare(config, progress)
        classes = class_table(job.classes)
        src = job.source
        rasters = [budget.Band(src.width, src.height, 1, "uint8")]
        if config.probabilities:
            rasters.append(budget.Band(src.width, src.height, len(classes), "uint8"))
        budget.check(job, job.model.module, outputs, rasters, config.yes, progress)
        meta = job.provenance("classify", classes=";".join(c["name"] for c in classes), pixel_size=src.pixel_size)
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(job.output_raster(config.out, 1, "uint8", NODATA, meta, outputs=outputs))
            set_classes(out.ds.GetRasterBand(1), classes, NODATA)
            prob = None
            if config.probabilities:
                prob = stack.enter_context(job.output_raster(config.probabilities, len(classes), "uint8", NODATA,
                                                             meta, outputs=outputs))
                for i, c in enumerate(classes):
                    prob.ds.GetRasterBand(i + 1).SetDescription(c["name"])
                    prob.ds.GetRasterBand(i + 1).SetScale(0.01)
            writer = ClassWriter(out, prob)
            stats = job.run(job.model.module, len(classes), writer, progress.sub(5, 98), "Classifying, batch")
        style = write_qml(outputs, config.out, paletted_qml(classes))
    result = {"classes": config.out, "style": style}
    if config.probabilities:
        result["probabilities"] = config.probabilities
    progress.update(100, "Done")
    return {"outputs": result,
            "figures": {**job.figures(stats), "class_shares": writer.shares(classes)},
            "report": f"{stats.windows} windows ({stats.skipped} all nodata) in {stats.seconds:.1f} s "
                      f"-> {config.out}" + (" (replaced the existing file)" if outputs.replaced else "")}
