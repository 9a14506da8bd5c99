"""Reading OSM from every layout: OSM driver, GeoLink labels, QuickOSM/Overpass columns, Geofabrik; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from osgeo import ogr, osr

from geolink.errors import InputError
from geolink.osm import OsmIndex, clip_to_bounds, read_osm
from geolink.osm.format import LINE, POINT, POLYGON
from geolink.osm.tags import MAX_VALUE_CHARS, parse_hstore

SMALL_OSM = Path(__file__).resolve().parents[1] / "data" / "osm" / "small.osm"


def write_geojson(path: Path, features: list, crs: str = "") -> str:
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": geom} for props, geom in features]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return str(path)


def square(x, y, size=1.0):
    return {"type": "Polygon", "coordinates": [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]}


def test_osm_xml_through_the_osm_driver():
    f = read_osm([str(SMALL_OSM)], "EPSG:4326")
    labels = dict(zip(f.labels, f.kinds))
    assert labels == {
        "amenity:cafe;cuisine:coffee_shop,cake": POINT,  # name dropped, ';' in a value becomes ','
        "shop:bakery;addr street:Leipäkatu": POINT,
        "amenity:bench": POINT,
        "highway:residential;oneway:oneway": LINE,  # yes -> the key, as in the original data
        "landuse:grass": POLYGON,  # a multipolygon relation with its hole
        "building:building;roof shape:flat": POLYGON,
    }  # the untagged way is dropped
    grass = f.geoms[list(f.labels).index("landuse:grass")]
    assert len(grass.interiors) == 1


def test_geolink_labels_reprojected(tmp_path):
    pitch = ({"label": "leisure:pitch;sport:soccer"}, square(2770000, 8437000, 100))
    src = write_geojson(tmp_path / "p.geojson", [pitch], crs="urn:ogc:def:crs:EPSG::3857")
    f = read_osm([src], "EPSG:4326")
    assert list(f.labels) == ["leisure:pitch;sport:soccer"] and f.kinds.tolist() == [POLYGON]
    s3857, s4326 = osr.SpatialReference(), osr.SpatialReference()
    s3857.ImportFromEPSG(3857)
    s4326.ImportFromEPSG(4326)
    s4326.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat, _ = osr.CoordinateTransformation(s3857, s4326).TransformPoint(2770000.0, 8437000.0)
    assert np.allclose(shapely.get_coordinates(f.geoms[0])[0], [lon, lat])
    assert 24 < lon < 25 and 59 < lat < 61


def test_quickosm_columns_and_collections(tmp_path):
    collection = {"type": "GeometryCollection", "geometries": [square(0, 0), {"type": "Point", "coordinates": [5, 5]}]}
    bowtie = {"type": "Polygon", "coordinates": [[[10, 0], [12, 2], [12, 0], [10, 2], [10, 0]]]}
    flat = {"type": "Polygon", "coordinates": [[[20, 0], [21, 0], [22, 0], [20, 0]]]}
    multi = {"type": "MultiLineString", "coordinates": [[[0, 10], [1, 11]], [[2, 10], [3, 11]]]}
    src = write_geojson(tmp_path / "q.geojson", [
        ({"osm_id": 1, "full_id": "w1", "natural": "wood", "name": "Metsä"}, collection),
        ({"osm_id": 2, "building": "yes"}, bowtie),
        ({"osm_id": 3, "building": "yes"}, flat),
        ({"osm_id": 4, "highway": "footway", "surface": "gravel"}, multi),
        ({"osm_id": 5, "name": "only a name"}, square(30, 30)),
    ])
    f = read_osm([src], "EPSG:4326")
    assert [(lab, int(k)) for lab, k in zip(f.labels, f.kinds)] == [
        ("natural:wood", POLYGON), ("natural:wood", POINT),  # a collection is split by part
        ("building:building", POLYGON), ("building:building", POLYGON),  # the bow-tie repaired into 2 triangles
        ("highway:footway;surface:gravel", LINE), ("highway:footway;surface:gravel", LINE),
    ]  # the zero-area polygon and the name-only feature are dropped
    assert shapely.is_valid(f.geoms).all()


def test_geofabrik_shapefiles(tmp_path):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    driver = ogr.GetDriverByName("ESRI Shapefile")
    roads = [({"fclass": "residential", "code": 5122, "oneway": "F", "bridge": "T"}, "LINESTRING (0 0, 1 1)"),
             ({"fclass": "track_grade2", "code": 5143}, "LINESTRING (0 1, 1 0)")]
    rows = {"gis_osm_roads_free_1": (ogr.wkbLineString, roads),
            "gis_osm_pois_free_1": (ogr.wkbPoint, [({"fclass": "supermarket", "code": 2501}, "POINT (0.5 0.2)"),
                                                  ({"fclass": "castle", "code": 2731}, "POINT (0.2 0.5)")]),
            "gis_osm_landuse_a_free_1": (ogr.wkbPolygon, [({"fclass": "park", "code": 7202},
                                                          "POLYGON ((0 0, 1 0, 1 1, 0 0))")])}
    paths = []
    for name, (gtype, feats) in rows.items():
        path = tmp_path / f"{name}.shp"
        ds = driver.CreateDataSource(str(path))
        layer = ds.CreateLayer(name, srs, gtype)
        for field in ("fclass", "oneway", "bridge", "name"):
            layer.CreateField(ogr.FieldDefn(field, ogr.OFTString))
        layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
        for props, wkt in feats:
            feat = ogr.Feature(layer.GetLayerDefn())
            for k, v in props.items():
                feat.SetField(k, v)
            feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
            layer.CreateFeature(feat)
        ds = None
        paths.append(str(path))
    assert list(read_osm(paths, "EPSG:4326").labels) == [
        "highway:residential;oneway:oneway;bridge:bridge", "highway:track;tracktype:grade2",
        "shop:supermarket", "historic:castle", "leisure:park"]


def test_index_queries_clip_and_keep_source_order(tmp_path):
    src = write_geojson(tmp_path / "g.geojson", [
        ({"label": "landuse:forest"}, square(-5, -5, 20)),  # covers the whole tile
        ({"label": "highway:primary"}, {"type": "LineString", "coordinates": [[-5, 5], [15, 5]]}),
        ({"label": "amenity:bench"}, {"type": "Point", "coordinates": [50, 50]}),  # outside
        ({"label": "building:building"}, square(2, 2)),
        ({"label": "building:building"}, square(10, 3)),  # only touches the tile's east edge: dropped
    ])
    index = OsmIndex.from_files([src], "EPSG:4326")
    tile = index.query((0, 0, 10, 10))
    assert list(tile.labels) == ["landuse:forest", "highway:primary", "building:building"]
    assert shapely.equals(tile.geoms[0], shapely.box(0, 0, 10, 10))
    assert shapely.get_coordinates(tile.geoms[1]).tolist() == [[0, 5], [10, 5]]
    assert len(index.query((100, 100, 110, 110))) == 0
    assert index.bounds == (-5.0, -5.0, 50.0, 50.0)


def test_unicode_and_very_long_values(tmp_path):
    src = write_geojson(tmp_path / "u.geojson", [({"amenity": "café", "description": "ä" * 5000}, square(0, 0))])
    (label,) = read_osm([src], "EPSG:4326").labels
    key_value = label.split(";")
    assert key_value[0] == "amenity:café" and key_value[1] == "description:" + "ä" * MAX_VALUE_CHARS


def test_hstore_parsing():
    text = '"name:fi"=>"Kauppa \\"A\\"","shop"=>"kiosk","note"=>"a=>b, c"'
    assert parse_hstore(text) == [("name:fi", 'Kauppa "A"'), ("shop", "kiosk"), ("note", "a=>b, c")]
    assert parse_hstore(None) == []


def test_bad_input(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(InputError, match="not a vector file"):
        read_osm([str(text)], "EPSG:4326")
    with pytest.raises(InputError, match="not found"):
        read_osm([str(tmp_path / "missing.pbf")], "EPSG:4326")
    parcels = write_geojson(tmp_path / "parcels.geojson", [({"parcel": "12-3", "area_m2": 400}, square(0, 0))])
    with pytest.raises(InputError, match="no OSM features"):
        read_osm([parcels], "EPSG:4326")
    with pytest.raises(InputError, match="Unknown CRS"):
        read_osm([str(SMALL_OSM)], "EPSG:99999999")
    empty = write_geojson(tmp_path / "empty.geojson", [])
    assert len(read_osm([empty], "EPSG:4326")) == 0  # an empty layer is not an error by itself


def test_helsinki_pbf_tiles(data_dir):
    index = OsmIndex.from_files([str(data_dir / "Helsinki.osm.pbf")], "EPSG:3067")
    assert len(index) > 10000 and set(np.unique(index.features.kinds)) == {POLYGON, LINE, POINT}
    west, south, east, north = index.bounds
    tile = index.query((west, south, west + 500, south + 500))
    assert len(tile) and shapely.covers(shapely.box(west, south, west + 500, south + 500), tile.geoms).all()
    assert len(index.query((0, 0, 1000, 1000))) == 0  # nothing in that extent
    assert len(clip_to_bounds(index.features, (0, 0, 1000, 1000))) == 0
