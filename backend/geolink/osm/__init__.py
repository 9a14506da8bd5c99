"""OSM entities to GeoLink graphs: readers, spatial index, graph builder, tag text encoders.

    index = OsmIndex.from_files(["city.osm.pbf"], raster_crs_wkt)
    encoder = get_text_encoder("minilm")
    prime_encoder(index.features.labels, encoder)  # optional: all distinct tags in a few big batches
    graph = build_graph(index.query(window_bounds), window_bounds, encoder)  # HeteroData or None

Importing this package does not import torch; the graph and encoder functions do when called.
"""

from .graph import build_graph, graph_summary, load_graph, save_graph
from .read import KINDS, OsmFeatures, OsmIndex, clip_to_bounds, read_osm
from .text import CachedTextEncoder, TagWeights, TextEncoder, embed_labels, get_text_encoder, prime_encoder

__all__ = ["KINDS", "CachedTextEncoder", "OsmFeatures", "OsmIndex", "TagWeights", "TextEncoder", "build_graph",
           "clip_to_bounds", "embed_labels", "get_text_encoder", "graph_summary", "load_graph", "prime_encoder",
           "read_osm", "save_graph"]
