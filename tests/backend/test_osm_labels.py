"""Training from OpenStreetMap: tag maps, OSM polygons as labels (edge margin, smaller wins, balance), the
finetune worker job with --osm-labels on the real Sentinel-2 scene, zones --compare-osm, and bad input."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import shapely
from osgeo import gdal, ogr

from geolink.config import build_config
from geolink.errors import InputError
from geolink.osm.tagmap import BUILT_IN, load_tag_map, most_common_tags, parse_tag_map
from geolink.progress import Progress
from geolink.tasks import load_task
from geolink.training.losses import IGNORE
from geolink.training.osm_labels import balance_targets, read_osm_labels
from geolink.worker import run_job

from .finetune_helpers import crop_raster
from .test_finetune_task import _tiny_package

OSM_STYLE = Path(__file__).resolve().parents[1] / "data" / "osm" / "s2_virginia_osm_style.geojson"
X, Y, SIZE = 1077, 0, 384  # lagoon, salt marsh, beach, sea, a wood and a farmland of the OSM-style layer


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("osm_labels")
    raster = crop_raster(data_dir / "s2" / "s2_rgbn.tif", tmp / "crop.tif", X, Y, SIZE)
    return {"raster": str(raster), "model": str(_tiny_package(tmp / "base.safetensors")), "dir": tmp}


def _grid(raster: str):
    ds = gdal.Open(raster)
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    return ds.GetProjection(), (x0, y0 + dy * ds.RasterYSize, x0 + dx * ds.RasterXSize, y0)


def _geojson(path: Path, features) -> str:
    """[(tags, [(lon, lat), ...])] as a GeoJSON of polygons with one column per tag key (an Overpass-like export)."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": tags,
         "geometry": {"type": "Polygon", "coordinates": [list(ring) + [ring[0]]]}} for tags, ring in features]}))
    return str(path)


def _square(lon: float, lat: float, d: float = 0.004):
    return [(lon, lat), (lon + d, lat), (lon + d, lat + d), (lon, lat + d)]


# ---------------------------------------------------------------- tag maps

def test_built_in_tag_maps_have_the_documented_classes():
    landcover = load_tag_map("landcover").class_names
    assert {"water", "wetland", "forest", "grassland", "cropland", "bare", "built-up"} <= set(landcover)
    assert load_tag_map("urban-function").class_names == [
        "water", "transportation", "institutional", "commercial", "industrial", "residential", "green space",
        "farmland", "undeveloped"]
    assert set(BUILT_IN) == {"landcover", "urban-function"}


def test_first_matching_class_wins_and_key_wildcards():
    tags = parse_tag_map({"classes": [
        {"name": "water", "color": "#1f78b4", "tags": ["natural=water"]},
        {"name": "built", "color": "#ff0000", "tags": ["building=*", "roof:shape=flat"]},
        {"name": "farm", "tags": ["landuse=farmland", "building=yes"]}]}, "test.json")
    # labels as the OSM readers make them: key:value, `yes` -> the key, ':' in keys -> ' '
    assert tags.match("landuse:farmland;natural:water") == 0  # both tags: the first class wins
    assert tags.match("building:building") == 1  # building=yes is in both built and farm: built comes first
    assert tags.match("roof shape:flat") == 1
    assert tags.match("landuse:farmland") == 2
    assert tags.match("highway:primary") == -1
    assert most_common_tags(["building:building;roof shape:flat", "building:building"])[0] == ("building=yes", 2)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"classes": []}', 'non-empty "classes"'),
    ('{"classes": [{"name": "water", "tags": ["natural:water"]}]}', "'natural:water', which is not in the form"),
    ('{"classes": [{"name": "water", "tags": ["natural=wat*"]}]}', "not in the form key=value or key=\\*"),
    ('{"classes": [{"name": "water", "tags": ["name=Lake"]}]}', "leave out"),
    ('{"classes": [{"name": "water", "color": "blue", "tags": ["natural=water"]}]}', "not #rrggbb"),
    ('{"classes": [{"name": "a", "tags": ["a=b"]}, {"name": "a", "tags": ["c=d"]}]}', "appears twice"),
])
def test_invalid_tag_maps_are_refused_in_plain_words(tmp_path, text, message):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_tag_map(str(path))


def test_unknown_tag_map_name():
    with pytest.raises(InputError, match="neither a built-in map nor a file") as info:
        load_tag_map("landuse")
    assert "landcover, urban-function" in info.value.hint


# ---------------------------------------------------------------- OSM polygons as labels

def test_osm_style_layer_becomes_labels_with_margin_and_smaller_polygons_winning(inputs, tmp_path):
    wkt, bounds = _grid(inputs["raster"])
    tag_map = load_tag_map("landcover")
    labels, report = read_osm_labels([str(OSM_STYLE)], tag_map, wkt, bounds, margin=0)
    assert labels.class_names == ["water", "wetland", "bare", "forest", "cropland"]
    assert report["classes_without_polygons"] == ["snow and ice", "built-up", "grassland"]
    assert report["dropped"]["points and lines (no area to label)"] == 1  # the road
    assert report["dropped"]["polygons outside the raster"] > 0
    eroded, report20 = read_osm_labels([str(OSM_STYLE)], tag_map, wkt, bounds, margin=20)
    for name in labels.class_names:  # every class loses its edges: less area, never more
        assert report20["classes"][name]["area_km2"] < report["classes"][name]["area_km2"]
    # a farmland with a wood inside: the farmland keeps a 2 x 20 m gap around the wood (20 m off each)
    nested = tmp_path / "nested.geojson"
    nested.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::32618"}}, "features": [
        {"type": "Feature", "properties": tags, "geometry": {"type": "Polygon", "coordinates": [
            [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
        for tags, (x0, y0, x1, y1) in [({"landuse": "farmland"}, (447000, 4176000, 448000, 4177000)),
                                       ({"natural": "wood"}, (447300, 4176300, 447600, 4176600))]]}))
    nest, _ = read_osm_labels([str(nested)], tag_map, wkt, bounds, margin=20)
    farm, wood = (shapely.from_wkb(g) for g in nest.geometries)
    assert nest.class_names == ["forest", "cropland"] and list(nest.class_ids) == [1, 0]
    assert np.isclose(wood.area, 260 * 260) and np.isclose(farm.distance(wood), 40)
    assert np.isclose(farm.area, 960 * 960 - 340 * 340, rtol=1e-3)  # the band has rounded corners
    # polygons are cut into window-sized pieces so a big one can be held out in part
    cut, _ = read_osm_labels([str(OSM_STYLE)], tag_map, wkt, bounds, margin=0, cell=640.0)
    assert len(cut.geometries) > len(labels.geometries)
    assert np.isclose(sum(shapely.from_wkb(g).area for g in cut.geometries),
                      sum(shapely.from_wkb(g).area for g in labels.geometries))


def test_balance_caps_the_big_classes_at_random():
    targets = np.full((4, 10, 10), IGNORE, dtype=np.int64)
    targets[0] = 0  # 100 px
    targets[1, :5] = 1  # 50 px
    targets[2, :1] = 2  # 10 px
    out, before, after = balance_targets(targets, 3, seed=0)
    assert before == [100, 50, 10]
    assert after == [50, 50, 10]  # at most the median class (50), or 3x the rarest (30) when more
    assert ((out == IGNORE) | (out == targets)).all()


def test_bad_osm_is_refused_with_what_was_seen(inputs, tmp_path):
    wkt, bounds = _grid(inputs["raster"])
    landcover = load_tag_map("landcover")
    shops = _geojson(tmp_path / "shops.geojson", [({"shop": "bakery"}, _square(-75.6, 37.75)),
                                                   ({"shop": "bakery"}, _square(-75.61, 37.75)),
                                                   ({"amenity": "school"}, _square(-75.62, 37.75))])
    with pytest.raises(InputError, match=r"No OSM polygon matches.*shop=bakery \(2\), amenity=school \(1\)"):
        read_osm_labels([shops], landcover, wkt, bounds)
    one = _geojson(tmp_path / "one.geojson", [({"natural": "water"}, _square(-75.58, 37.74))])
    with pytest.raises(InputError, match="Only one class of the tag map \\('water'\\)"):
        read_osm_labels([one], landcover, wkt, bounds)
    away = _geojson(tmp_path / "away.geojson", [({"natural": "water"}, _square(24.9, 60.1)),
                                                 ({"landuse": "forest"}, _square(24.91, 60.1))])
    with pytest.raises(InputError, match="lies over the raster") as info:
        read_osm_labels([away], landcover, wkt, bounds)
    assert "give OSM of the raster's area" in info.value.hint


# ---------------------------------------------------------------- the worker job, classify, zones --compare-osm

def test_worker_job_trains_from_osm_and_zones_compares_with_osm(inputs, tmp_path):
    from geolink.models import GeoLinkSegmenter, load_package

    out = tmp_path / "osm.safetensors"
    events = []
    config = {"raster": inputs["raster"], "osm_labels": [str(OSM_STYLE)], "tag_map": "landcover",
              "model": inputs["model"], "out": str(out), "epochs": 2, "augment": 1}
    assert run_job({"task": "finetune", "config": config}, events.append, threading.Event()) == 0
    result = events[-1]
    assert result["event"] == "result", result
    model = load_package(out)
    assert isinstance(model, GeoLinkSegmenter)
    names = [c["name"] for c in model.card.head["classes"]]
    assert names == ["water", "wetland", "bare", "forest", "cropland"]
    assert model.card.head["classes"][0]["color"] == "#1f78b4"  # the tag map's colour
    assert model.card.provenance["tag_map"]["source"] == "landcover"
    report = json.loads(Path(result["outputs"]["report_json"]).read_text())
    osm = report["osm_labels"]
    assert set(osm["classes"]) == set(names) and all(v["area_km2"] > 0 for v in osm["classes"].values())
    assert osm["dropped"] and osm["balance"]
    assert "OSM label area" in report["summary"] and "OSM left out" in report["summary"]
    kept = {n: after for n, (before, after) in osm["balance"].items()}
    assert max(kept.values()) < max(b for b, _ in osm["balance"].values())  # the sea was cut down
    # the polygons were cut into pieces, so most classes got validation pieces apart from their training ones
    assert len(report["validation"]["classes"]) == len(names)

    zones_path = tmp_path / "zones.gpkg"
    zones = load_task("zones")
    res = zones.run(build_config(zones.Config, {"raster": inputs["raster"], "osm": [str(OSM_STYLE)],
                                                "model": str(out), "out": str(zones_path), "compare_osm": True}),
                    Progress())
    tally = res["figures"]["osm_review"]
    assert sum(tally.values()) == res["figures"]["zones"] > 0
    ds = ogr.Open(str(zones_path))
    rows = [(f.GetField("class_name"), f.GetField("osm_class"), f.GetField("osm_share"), f.GetField("osm_review"))
            for f in ds.GetLayer(0)]
    for predicted, osm_class, share, verdict in rows:
        if verdict == "missing in OSM":
            assert osm_class is None and share < 0.5
        else:
            assert osm_class in load_tag_map("landcover").class_names and share >= 0.5
            assert (verdict == "agrees") == (osm_class == predicted)
    assert "osm_review" in zones_path.with_suffix(".qml").read_text()


def test_compare_osm_needs_a_tag_map_for_models_not_trained_from_osm(inputs, tmp_path):
    zones = load_task("zones")
    with pytest.raises(InputError, match="not trained from OSM"):
        zones.run(build_config(zones.Config, {"raster": inputs["raster"], "osm": [str(OSM_STYLE)],
                                              "model": "default", "out": str(tmp_path / "z.gpkg"),
                                              "compare_osm": True}), Progress())
    assert not (tmp_path / "z.gpkg").exists()


def test_labels_or_osm_labels(inputs, tmp_path):
    finetune = load_task("finetune")
    with pytest.raises(InputError, match="either --labels .* or --osm-labels"):
        finetune.run(build_config(finetune.Config, {"raster": inputs["raster"], "model": inputs["model"],
                                                    "out": str(tmp_path / "a.safetensors")}), Progress())


def test_readme_table_of_built_in_tag_maps_is_the_data():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for name in BUILT_IN:
        section = readme.split(f"`{name}`:\n\n", 1)[1].split("\n\n", 1)[0]
        rows = [line.split(" | ") for line in section.splitlines()[2:]]
        documented = [(r[0].strip("| "), r[1].strip("`"), [t.strip("` |") for t in r[2].split(", ")]) for r in rows]
        assert documented == [(c["name"], c["color"], c["tags"]) for c in load_tag_map(name).classes]


def test_cli_says_what_is_wrong_with_a_tag_map(inputs, tmp_path, capsys):
    from geolink.cli import main

    bad = tmp_path / "map.json"
    bad.write_text('{"classes": [{"name": "water", "tags": ["natural:water"]}]}')
    out = tmp_path / "m.safetensors"
    rc = main(["--quiet", "finetune", "--raster", inputs["raster"], "--osm-labels", str(OSM_STYLE), "--tag-map",
               str(bad), "--model", inputs["model"], "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "error: The tag map map.json: class 'water' has the tag 'natural:water'" in err
    assert 'hint: Write OSM tags as "natural=water"' in err and not out.exists()


def test_paper_example_osm_in_the_label_layout_gives_urban_function_labels(shared_dir, tmp_path):
    """The paper's NAIP sample (a school among houses): its GeoLink-format OSM, real imagery georeferenced from
    the bbox in its pickle (read with the safe unpickler)."""
    from geolink.pretraining.safe_pickle import read_bbox

    sample = shared_dir / "geolink-examples" / "osm2graph_example" / "a702502933_US_21"
    west, south, east, north = read_bbox(sample / "a702502933_US_21.pickle")
    raster = tmp_path / "naip.tif"
    gdal.Translate(str(raster), str(sample / "a702502933_US_21.jpg"), outputSRS="EPSG:4326",
                   outputBounds=[west, north, east, south])
    wkt, bounds = _grid(str(raster))
    osm = [str(p) for p in sorted(sample.glob("*.geojson"))]
    labels, report = read_osm_labels(osm, load_tag_map("urban-function"), wkt, bounds, margin=2)
    area = {n: v["area_km2"] for n, v in report["classes"].items()}
    assert set(area) == {"institutional", "residential", "green space"}
    assert max(area, key=area.get) == "institutional"  # the school grounds
    assert report["dropped"]["points and lines (no area to label)"] > 0
