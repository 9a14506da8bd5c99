"""`geolink osm-graph` end to end: CLI, output format, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geolink.cli import main
from geolink.errors import InputError
from geolink.osm import load_graph
from geolink.progress import Progress
from geolink.tasks import osm_graph

SMALL_OSM = Path(__file__).resolve().parents[1] / "data" / "osm" / "small.osm"
TILE = "24.936,60.1675,24.944,60.172"


@pytest.fixture(autouse=True)
def text_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLINK_CACHE", str(tmp_path / "cache"))


def test_cli_writes_a_graph(tmp_path, capsys):
    out = tmp_path / "tile" / "graph.pt"
    code = main(["--quiet", "--json", "osm-graph", "--osm", str(SMALL_OSM), "--bounds", TILE, "--out", str(out)])
    assert code == 0
    data = load_graph(str(out))
    assert (data["polygon"].num_nodes, data["line"].num_nodes, data["point"].num_nodes) == (2, 1, 2)
    assert data["polygon"].x.shape[1] == 384 + 8 and data["point"].x.shape[1] == 384 + 2
    assert data["point", "to", "polygon"].edge_index.tolist() == [[0], [1]]  # the café is inside the building
    assert "polygon_nodes" in capsys.readouterr().out


def test_a_repeated_list_option_adds_up():
    """`--osm a --osm b` gives both files (argparse's nargs="+" alone keeps only the last)."""
    from geolink.cli import build_parser

    parser = build_parser()
    for argv in (["--osm", "a.pbf", "--osm", "b.geojson", "c.gpkg"], ["--osm", "a.pbf", "b.geojson", "c.gpkg"]):
        args = parser.parse_args(["classify", "--raster", "r.tif", "--out", "o.tif", *argv])
        assert args.osm == ["a.pbf", "b.geojson", "c.gpkg"]
    assert parser.parse_args(["classify", "--raster", "r.tif", "--out", "o.tif"]).osm is None


def test_bounds_in_another_crs(tmp_path):
    out = tmp_path / "g.pt"
    # the same tile in EPSG:3067 (ETRS-TM35FIN) metres
    config = osm_graph.Config(osm=[str(SMALL_OSM)], bounds="385470,6671856,385929,6672342", bounds_crs="EPSG:3067",
                              out=str(out))
    result = osm_graph.run(config, Progress())
    graph = load_graph(str(out))  # keep the graph alive: its node stores refer back to it weakly
    assert result["figures"]["polygon_nodes"] == 2 and graph["line"].num_nodes == 1


@pytest.mark.parametrize("bounds, message", [("1,2,3", "four numbers"), ("5,0,1,1", "empty"),
                                             ("a,b,c,d", "four numbers"), ("0,0,1,1", "No OSM feature inside")])
def test_refusals(tmp_path, bounds, message):
    config = osm_graph.Config(osm=[str(SMALL_OSM)], bounds=bounds, out=str(tmp_path / "g.pt"))
    with pytest.raises(InputError, match=message):
        osm_graph.run(config, Progress())
    assert not list(tmp_path.glob("g*"))


def test_tag_frequency_option(tmp_path):
    table = tmp_path / "freq.json"
    table.write_text(json.dumps({"building": 1000, "amenity": 10}))
    config = osm_graph.Config(osm=[str(SMALL_OSM)], bounds=TILE, tag_frequency=str(table), out=str(tmp_path / "g.pt"))
    assert osm_graph.run(config, Progress())["outputs"]["graph"] == str(tmp_path / "g.pt")
    osm_graph.run(osm_graph.Config(osm=[str(SMALL_OSM)], bounds=TILE, out=str(tmp_path / "d.pt")), Progress())
    custom, default = load_graph(str(tmp_path / "g.pt")), load_graph(str(tmp_path / "d.pt"))
    # the café's label has several keys (amenity, shop, ...): the table weighs them otherwise; positions stay
    assert not torch.allclose(custom["point"].x[:, :384], default["point"].x[:, :384], atol=1e-4)
    assert torch.equal(custom["point"].x[:, 384:], default["point"].x[:, 384:])
