"""OSM entities to GeoLink graphs: readers, spatial index, graph format and builder, tag text encoders.

    graphs = WindowGraphs.from_files(["city.osm.pbf"], raster_crs_wkt, raster_bounds, "minilm")
    graph = graphs(window_bounds)  # HeteroData or None: the features meeting the window, as a graph

format.py says what a graph holds; graph.py builds one from a tile's features; window_graphs.py does so for
each window of an area; graph_edit.py works on built graphs. Importing this package does not import torch;
the graph and encoder functions do when called (graph_edit.py imports it).
"""

from .format import KINDS
from .graph import build_graph, graph_summary, load_graph, save_graph
from .read import OsmFeatures, OsmIndex, clip_to_bounds, read_osm
from .text import CachedTextEncoder, TagWeights, TextEncoder, embed_labels, get_text_encoder, prime_encoder
from .window_graphs import WindowGraphs

__all__ = ["KINDS", "CachedTextEncoder", "OsmFeatures", "OsmIndex", "TagWeights", "TextEncoder", "WindowGraphs",
           "build_graph", "clip_to_bounds", "embed_labels", "get_text_encoder", "graph_summary", "load_graph",
           "prime_encoder", "read_osm", "save_graph"]
