"""OSM tags to GeoLink labels (`key:value;key:value`), from every source layout we read.

The label rule follows what the original GeoLink data shows (`building:building`, `oneway:oneway`,
`roof shape:gabled` in its key-frequency table):
- a `:` inside a key becomes a space (`roof:shape` -> `roof shape`), so `key:value` stays splittable;
- the value `yes` becomes the key itself (`building=yes` -> `building:building`);
- a `;` inside a value becomes `,` (it would split the label); values are cut to MAX_VALUE_CHARS;
- names, addresses' numbers, references, sources, contacts and other identifiers carry no land-use
  meaning and are left out (DROP_KEYS, DROP_PREFIXES); so is a relation's structural `type`
  (`type=multipolygon`, `type=route`, ...).
A feature left with no tag at all is dropped.

Geofabrik shapefiles hold one `fclass` per feature: the key comes from the layer
(`gis_osm_roads_free_1` -> `highway`, see LAYER_KEYS), from the POI code range for the POI
layers (POI_CODE_KEYS) or from FCLASS_KEYS for values filed under another key in OSM
(`park` in landuse -> `leisure:park`). Roads also give `oneway`, `bridge` and `tunnel` flags.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

MAX_VALUE_CHARS = 200

DROP_KEYS = {
    "name", "alt_name", "old_name", "official_name", "short_name", "loc_name", "int_name", "reg_name",
    "nat_name", "name_1", "source", "created_by", "wikidata", "wikipedia", "wikimedia_commons", "website",
    "url", "email", "phone", "fax", "image", "opening_hours", "check_date", "survey:date", "start_date",
    "addr:housenumber", "addr:postcode", "addr:unit", "addr:flats", "addr:door", "addr:floor", "ref",
    "fixme", "FIXME", "osm_id", "osm_way_id", "osm_type", "full_id", "id", "fid", "ogc_fid", "z_order",
    "other_tags", "timestamp", "version", "changeset", "user", "uid", "all_tags", "from", "to", "via",
    "operator", "brand", "network", "addr:city", "addr:country", "addr:place", "addr:suburb", "ele",
    "public_transport:version",
}
RELATION_TYPES = {"multipolygon", "route", "route_master", "boundary", "site", "public_transport"}
DROP_PREFIXES = ("name:", "alt_name:", "old_name:", "official_name:", "source:", "wikipedia:", "wikidata:",
                 "contact:", "ref:", "check_date:", "@", "not:name", "brand:", "operator:", "short_name:", "from:",
                 "to:", "via:", "headway")


def _drop(key: str, value: str) -> bool:
    return key in DROP_KEYS or key.startswith(DROP_PREFIXES) or (key == "type" and value in RELATION_TYPES)


def tag_piece(key: str, value: str) -> Optional[str]:
    """One `key:value` label piece for an OSM tag, or None for a tag that carries no meaning here."""
    key, value = key.strip(), str(value).strip()
    if not key or not value or _drop(key, value):
        return None
    key = key.replace(":", " ").replace(";", ",")
    value = key if value == "yes" else value.replace(";", ",")[:MAX_VALUE_CHARS]
    return f"{key}:{value}"


def label_from_tags(tags: Iterable[Tuple[str, str]]) -> str:
    """Tags -> `key:value;key:value` (source order, duplicates removed); '' when nothing is left."""
    pieces: List[str] = []
    for key, value in tags:
        piece = tag_piece(key, value)
        if piece is not None and piece not in pieces:
            pieces.append(piece)
    return ";".join(pieces)


def label_pieces(label: str) -> List[str]:
    """A GeoLink label split into its `key:value` pieces (blank pieces removed)."""
    return [p.strip() for p in str(label).split(";") if p.strip()]


def piece_key(piece: str) -> str:
    return piece.split(":", 1)[0]


_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=>\s*(?:"((?:[^"\\]|\\.)*)"|NULL)')
_UNESCAPE = re.compile(r"\\(.)")


def parse_hstore(text: Optional[str]) -> List[Tuple[str, str]]:
    """GDAL OSM driver's `other_tags` (`"k"=>"v","k2"=>"v2"`) -> [(k, v), ...]."""
    if not text:
        return []
    return [(_UNESCAPE.sub(r"\1", k), _UNESCAPE.sub(r"\1", v or "")) for k, v in _HSTORE.findall(text)]


# ---- Geofabrik shapefiles -------------------------------------------------------------------------

LAYER_KEYS = {"roads": "highway", "railways": "railway", "waterways": "waterway", "buildings": "building",
              "landuse": "landuse", "natural": "natural", "places": "place", "water": "natural",
              "traffic": "highway", "transport": "public_transport", "pofw": "amenity"}
# POI code ranges (first two digits of `code`) -> key.
POI_CODE_KEYS = {"20": "amenity", "21": "amenity", "22": "leisure", "23": "amenity", "24": "tourism",
                 "25": "shop", "26": "amenity", "27": "tourism", "29": "amenity", "52": "amenity"}
FCLASS_KEYS = {
    "park": "leisure", "nature_reserve": "leisure", "recreation_ground": "landuse", "heath": "natural",
    "scrub": "natural", "river": "waterway", "reservoir": "landuse", "wetland": "natural", "dock": "waterway",
    "glacier": "natural", "theatre": "amenity", "nightclub": "amenity", "cinema": "amenity",
    "arts_centre": "amenity", "shelter": "amenity", "monument": "historic", "memorial": "historic",
    "castle": "historic", "ruins": "historic", "archaeological": "historic", "wayside_cross": "historic",
    "wayside_shrine": "historic", "battlefield": "historic", "fort": "historic", "tower": "man_made",
    "comms_tower": "man_made", "water_tower": "man_made", "observation_tower": "man_made",
    "windmill": "man_made", "lighthouse": "man_made", "wastewater_plant": "man_made", "water_well": "man_made",
    "water_mill": "man_made", "water_works": "man_made", "camera_surveillance": "man_made", "pier": "man_made",
    "level_crossing": "railway", "dam": "waterway", "weir": "waterway", "waterfall": "waterway",
    "lock_gate": "waterway", "slipway": "leisure", "marina": "leisure", "railway_station": "railway",
    "railway_halt": "railway", "tram_stop": "railway", "bus_stop": "highway", "bus_station": "amenity",
    "taxi": "amenity", "airport": "aeroway", "airfield": "aeroway", "helipad": "aeroway", "apron": "aeroway",
    "ferry_terminal": "amenity", "aerialway_station": "aerialway",
}
FCLASS_VALUES = {"railway_station": "station", "railway_halt": "halt", "aerialway_station": "station",
                 "airport": "aerodrome", "river": "riverbank", "camera_surveillance": "surveillance",
                 "unknown": "road"}


def geofabrik_layer_key(layer_name: str) -> Optional[str]:
    """`gis_osm_roads_free_1` -> 'roads' key 'highway'; None for the POI layers (keyed by code)."""
    match = re.match(r"gis_osm_([a-z]+?)(?:_a)?_free", layer_name.lower())
    name = match.group(1) if match else layer_name.lower()
    return LAYER_KEYS.get(name)


def geofabrik_tags(layer_name: str, row: Mapping[str, object]) -> List[Tuple[str, str]]:
    """Tags of one Geofabrik feature from its `fclass` (and `code`, `type`, road flags)."""
    fclass = str(row.get("fclass") or "").strip()
    if not fclass:
        return []
    layer = layer_name.lower()
    key = FCLASS_KEYS.get(fclass) or geofabrik_layer_key(layer)
    if key is None:
        key = POI_CODE_KEYS.get(str(row.get("code") or "")[:2], "amenity")
    if "buildings" in layer:
        return [("building", str(row.get("type") or "yes"))]
    if "pofw" in layer:
        return [("amenity", "place_of_worship"), ("religion", fclass.split("_")[0])]
    tags: List[Tuple[str, str]] = []
    if fclass.startswith("track_grade"):
        tags += [("highway", "track"), ("tracktype", fclass[len("track_"):])]
    else:
        tags.append((key, FCLASS_VALUES.get(fclass, fclass)))
    if "roads" in layer:
        flags: Dict[str, str] = {"oneway": "yes" if row.get("oneway") in ("F", "T") else "",
                                 "bridge": "yes" if row.get("bridge") == "T" else "",
                                 "tunnel": "yes" if row.get("tunnel") == "T" else ""}
        tags += [(k, v) for k, v in flags.items() if v]
    return tags
