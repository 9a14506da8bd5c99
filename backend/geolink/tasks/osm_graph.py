"""`geolink osm-graph`: one tile's OSM entities as a GeoLink graph (.pt)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..config import option
from ..errors import InputError, opt
from ..progress import Progress

HELP = """Build the GeoLink graph of the OSM entities inside one tile.

Reads OSM from .osm/.pbf, GeoLink GeoJSON/GPKG/SHP (`label` column), QuickOSM/Overpass exports or Geofabrik
shapefiles, clips it to --bounds and writes a torch_geometric HeteroData in the original GeoLink input format
(node x = tag text embedding + positions; 9 relation types), loadable with torch.load(weights_only=True)
through geolink.osm.load_graph."""


@dataclass
class Config:
    osm: List[str] = option(default_factory=list, flag="--osm", required=True, metavar="FILE", role="input",
                            help="OSM files (.osm, .pbf, GeoJSON, GPKG, SHP)")
    bounds: str = option(flag="--bounds", required=True, metavar="W,S,E,N",
                         help="the tile: west,south,east,north (write --bounds=-9.2,38.7,... when west < 0)")
    bounds_crs: str = option("EPSG:4326", flag="--bounds-crs", metavar="CRS",
                             help="CRS of --bounds; the graph is built in it")
    text_encoder: str = option("minilm", flag="--text-encoder", metavar="NAME",
                               help="tag text encoder: minilm (offline, 384-d), clip (HF cache, 512-d) or a folder")
    tag_frequency: Optional[str] = option(None, flag="--tag-frequency", metavar="PATH", role="input",
                                          help="JSON key -> frequency table for the ln(frequency) tag weights "
                                               "(default: the table shipped with geolink)")
    seed: int = option(0, flag="--seed", help="seed of the polygons' inner sample points")
    device: str = option("cpu", flag="--device", help="device for the text encoder (cpu, cuda)")
    out: str = option(flag="--out", required=True, metavar="graph.pt", role="output", help="output graph file")


def parse_bounds(text: str) -> Tuple[float, float, float, float]:
    """'W,S,E,N' (commas or spaces) -> floats, refusing anything else or an empty box."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError(f"{opt('bounds')} must be four numbers W,S,E,N, got {text!r}.")
    west, south, east, north = values
    if not (west < east and south < north):
        raise InputError(f"{opt('bounds')} {text!r} is empty: need west < east and south < north.")
    return values


def run(config: Config, progress: Progress) -> dict:
    from ..osm import build_graph, clip_to_bounds, get_text_encoder, graph_summary, read_osm, save_graph
    from ..osm.text import TagWeights

    t0 = time.monotonic()
    bounds = parse_bounds(config.bounds)
    weights = TagWeights.from_json(config.tag_frequency)
    features = read_osm(config.osm, config.bounds_crs, progress.sub(0, 50))
    if not len(features):
        raise InputError("The OSM files hold no tagged feature.",
                         hint=f"Check the files and layers given to {opt('osm')}.")
    tile = clip_to_bounds(features, bounds)
    if not len(tile):
        import shapely

        extent = ", ".join(f"{v:.6g}" for v in shapely.total_bounds(features.geoms))
        raise InputError(f"No OSM feature inside {opt('bounds')} {config.bounds} ({config.bounds_crs}).",
                         hint=f"The data covers {extent} in that CRS.")
    progress.update(55, "Loading the tag text encoder")
    encoder = get_text_encoder(config.text_encoder, device=config.device)
    progress.update(65, f"Building the graph of {len(tile)} features")
    data = build_graph(tile, bounds, encoder, weights, seed=config.seed)
    progress.update(95, "Writing")
    save_graph(data, config.out)
    summary = graph_summary(data)
    progress.update(100, "Done")
    nodes = summary["nodes"]
    return {"outputs": {"graph": config.out},
            "figures": {**{f"{k}_nodes": v for k, v in nodes.items()}, "edges": summary["edges"],
                        "features_read": len(features), "text_encoder": encoder.name, "text_dim": encoder.dim,
                        "seconds": round(time.monotonic() - t0, 3)},
            "report": f"{sum(nodes.values())} nodes ({nodes['polygon']} polygons, {nodes['line']} lines, "
                      f"{nodes['point']} points), {summary['edges']} edges -> {config.out}"}
