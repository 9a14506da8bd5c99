"""`geolink zones`: zone polygons bounded by OSM ways, each with its majority class, class shares, confidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..config import option
from ..inference.options import RasterOptions
from ..progress import Progress

HELP = """Cut the raster's extent into zones along the OSM ways and give each zone its class.

Zones are the pieces of the extent between roads, railways and waterways (footpaths and service roads
do not cut); where the OSM has no such way, they are the regions of the predicted class map after a
sieve. Every pixel is classified by the model (fused with each window's OSM graph); each zone gets
its majority class (class, class_name, color), the share of every class (share_<name>), a confidence
(mean top probability of its pixels), its majority share, pixel count and area. Written as a
GeoPackage layer 'zones' in the raster's CRS with a QML style beside it, once complete. With a model
fine-tuned on urban function classes this maps urban function zones; with a land-cover model it
gives land-use parcels.

--compare-osm adds to each zone the class OSM's tags give it (osm_class, through the tag map the model was
trained with or --tag-map), the share of the zone OSM classes (osm_share) and osm_review: 'missing in OSM'
(less than half of the zone has a classed OSM polygon), 'agrees' or 'disagrees' with the predicted class;
the style beside the GeoPackage makes the two review categories stand out. A review queue for OSM mappers."""


@dataclass
class Config(RasterOptions):
    osm: List[str] = option(default_factory=list, flag="--osm", required=True, metavar="FILE", role="input",
                            help="OSM files (.osm/.pbf, GeoJSON/GPKG/SHP with OSM tags) covering the raster")
    out: str = option(flag="--out", required=True, metavar="ZONES.gpkg", role="output", help="output GeoPackage")
    min_area: float = option(0.0, flag="--min-area", metavar="M2", minimum=0,
                             help="smallest zone kept, in square metres (0: 16 pixels)")
    sieve: int = option(0, flag="--sieve", metavar="PIXELS", minimum=0,
                        help="without ways: class regions smaller than this many pixels are merged (0: 64)")
    compare_osm: bool = option(False, flag="--compare-osm",
                               help="add each zone's OSM class and whether OSM agrees, disagrees or is missing")
    tag_map: Optional[str] = option(None, flag="--tag-map", metavar="NAME|FILE.json",
                                    help="for --compare-osm: OSM tags -> classes (default: the model's own)")


def run(config: Config, progress: Progress) -> dict:
    import contextlib
    import tempfile
    from pathlib import Path

    from ..atomic import OutputSet
    from ..config import paths_with_role
    from ..errors import InputError, opt
    from ..inference import budget
    from ..inference import zones as z
    from ..inference.job import prepare
    from ..inference.sinks import NODATA, ClassWriter
    from ..osm import review
    from ..raster.crs import metres_per_unit
    from ..raster.styles import categorized_qml, class_table, write_qml

    if Path(config.out).suffix.lower() != ".gpkg":
        raise InputError(f"Zones are written as a GeoPackage; give an {opt('out')} ending in .gpkg, not {config.out}.",
                         option="out")
    with OutputSet({"out": config.out}, progress.log, paths_with_role(config, "input")) as outputs:
        job = prepare(config, progress)
        classes = class_table(job.classes)
        tag_map = review.tag_map_for(job.model.card, config.tag_map) if config.compare_osm else None
        unknown = [n for n in (tag_map.class_names if tag_map else []) if n not in {c["name"] for c in classes}]
        if unknown:
            progress.warn("Tag-map classes the model does not know: " + ", ".join(unknown) + "; zones OSM gives "
                          "these classes are always marked 'disagrees'.")
        src = job.source
        budget.check(job, job.model.module, outputs, [], config.yes, progress)  # the zones themselves are small
        meta = job.provenance("zones", classes=";".join(c["name"] for c in classes))
        with tempfile.TemporaryDirectory(prefix="geolink-zones-") as tmp:
            tmp = Path(tmp)
            with contextlib.ExitStack() as stack:
                cls_ds = stack.enter_context(job.output_raster(tmp / "classes.tif", 1, "uint8", NODATA))
                conf_ds = stack.enter_context(job.output_raster(tmp / "confidence.tif", 1, "float32"))
                writer = ClassWriter(cls_ds, confidence=conf_ds)
                stats = job.run(job.model.module, len(classes), writer, progress.sub(5, 85), "Classifying, batch")
            progress.update(86, "Cutting zones along the OSM ways")
            pixel = src.pixel_size
            unit_x, unit_y = metres_per_unit(src.wkt, (src.bounds[1] + src.bounds[3]) / 2)
            min_area = (config.min_area / (unit_x * unit_y)) if config.min_area else 16 * pixel * pixel
            polys, origin = [], "osm_block"
            if job.graphs is not None:
                feats = job.graphs.inside
                ways = z.way_lines(feats.labels, feats.kinds, feats.geoms)
                polys = z.blocks(ways, src.bounds, pixel, min_area)
                progress.log(f"{len(ways)} OSM ways cut the extent into {len(polys)} zones.")
            if not polys:
                progress.warn("No OSM road, railway or waterway crosses the raster: zones are sieved class regions.")
                polys, origin = z.class_regions(tmp / "classes.tif", tmp / "sieved.tif", config.sieve or 64), \
                    "class_region"
            progress.update(90, f"Class shares of {len(polys)} zones")
            progress.check_cancelled()
            from osgeo import gdal

            z.rasterise_zones(polys, tmp / "zones.tif", gdal.Open(str(tmp / "classes.tif")))
            zstats = z.zone_stats(tmp / "zones.tif", tmp / "classes.tif", tmp / "confidence.tif", len(polys),
                                  len(classes), NODATA)
            if tag_map is not None:
                review.burn_osm_classes(job.graphs.inside, tag_map, gdal.Open(str(tmp / "classes.tif")),
                                        tmp / "osm.tif")
                osm_counts = z.zone_stats(tmp / "zones.tif", tmp / "osm.tif", tmp / "confidence.tif", len(polys),
                                          len(tag_map.classes), review.NODATA).counts
            progress.update(96, "Writing the zones")
            progress.check_cancelled()
            written = z.write_zones_gpkg(outputs.partial(config.out), polys, zstats, classes, src.wkt, origin, meta)
            tally = None
            if tag_map is not None:
                tally = review.add_review_fields(outputs.partial(config.out), osm_counts, tag_map.class_names)
                progress.log("OSM review: " + ", ".join(f"{n} {k}" for k, n in tally.items()) + ".")
        qml = write_qml(outputs, config.out, review.review_style() if tally is not None
                        else categorized_qml("class_name", classes))
    progress.update(100, "Done")
    return {"outputs": {"zones": config.out, "style": qml},
            "figures": {**job.figures(stats), "zones": written, "zone_origin": origin,
                        "class_shares": writer.shares(classes), **({"osm_review": tally} if tally else {})},
            "report": f"{written} zones ({origin}) -> {config.out}" + (" (replaced the existing file)"
                                                                       if outputs.replaced else "")}
