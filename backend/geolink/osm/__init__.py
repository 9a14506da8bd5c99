"""OSM entities to GeoLink graphs: readers, spatial index, graph builder, tag text encoders.

    index = OsmIndex.from_files(["city.osm.pbf"], raster_crs_wkt)
    encoder = get_text_encoder("minilm")
    graph = build_graph(index.query(window_bounds), window_bounds, encoder)  # HeteroData or None

Importing this package does not import torch; the graph and encoder functions do when called.
"""

from .graph import build_graph, graph_summary, load_graph, save_graph
from .read import KINDS, OsmFeatures, OsmIndex, clip_to_bounds, read_osm
from .text import CachedTextEncoder, TagWeights, TextEncoder, TransformerTextEncoder, embed_labels, get_text_encoder

__all__ = ["KINDS", "CachedTextEncoder", "OsmFeatures", "OsmIndex", "TagWeights", "TextEncoder",
           "TransformerTextEncoder", "build_graph", "clip_to_bounds", "embed_labels", "get_text_encoder",
           "graph_summary", "load_graph", "read_osm", "save_graph"]
