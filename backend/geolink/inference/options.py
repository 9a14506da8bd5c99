"""The options every raster task (classify, embed, zones) takes, declared once for the CLI and the worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..config import option
from ..devices import DEVICE_CHOICES


@dataclass
class RasterOptions:
    raster: str = option(flag="--raster", required=True, metavar="RASTER", role="input",
                         help="input raster (any GDAL format, north-up, with a CRS)")
    osm: List[str] = option(default_factory=list, flag="--osm", metavar="FILE", role="input",
                            help="OSM files (.osm/.pbf, GeoJSON/GPKG/SHP with OSM tags), reprojected to the raster's "
                                 "CRS; each window gets the graph of the features inside it (none: image only)")
    osm_max_nodes: int = option(0, flag="--osm-max-nodes", metavar="N", minimum=0,
                                help="at most N OSM entities of each window enter the image-OSM fusion, an evenly "
                                     "spaced deterministic subset (0: all). The fusion's time grows with the square "
                                     "of their number: this bounds it in dense city windows")
    model: str = option("default", flag="--model", metavar="MODEL", role="input",
                        help="model package: 'default', an installed model's name or a .safetensors path")
    device: str = option("auto", flag="--device", choices=DEVICE_CHOICES,
                         help="auto: CUDA, then MPS, then CPU")
    tile_size: int = option(0, flag="--tile-size", metavar="PX", minimum=0, maximum=8192,
                            help="window size in pixels (0: the model's)")
    overlap: int = option(-1, flag="--overlap", metavar="PX", minimum=-1,
                          help="overlap between windows in pixels, blended (-1: a quarter of the window)")
    batch_size: int = option(0, flag="--batch-size", metavar="N", minimum=0, maximum=4096,
                             help="windows per batch (0: 16 on a GPU, 4 on the CPU; halved on out-of-memory)")
    gsd: float = option(0.0, flag="--gsd", metavar="METRES", minimum=0,
                        help="ground sample distance to process at (0: the model card's, or native if it has none)")
    native: bool = option(False, flag="--native", help="process at the raster's own resolution, ignoring the card")
    extent: Optional[str] = option(None, flag="--extent", metavar="XMIN,YMIN,XMAX,YMAX",
                                   help="processing extent in the raster's CRS (default: the whole raster)")
    bands: Optional[str] = option(None, flag="--bands", metavar="B1,B2,...",
                                  help="raster band numbers (from 1) feeding the model's bands in the card's order, "
                                       "e.g. 4,3,2 for red, green, blue of a Sentinel-2 stack (default: by colour "
                                       "interpretation, else the first bands)")
    yes: bool = option(False, flag="--yes",
                       help="go ahead with a large job without asking: one estimated to take more than "
                            "an hour, to write more than 20 GB or to cover more than 2 gigapixels")
