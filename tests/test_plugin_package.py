"""The packaged zip against what plugins.qgis.org checks on upload.

The site's upload validator (QGIS-Plugins-Website, qgis-app/plugins/validator.py) refuses zips over 25 MB,
with `..`/absolute paths, `.pyc`, `__pycache__`, `.git` or `__MACOSX`, without a top folder holding
`__init__.py`, `metadata.txt` and `LICENSE`, or without the required metadata. Its security scan
(security_scanner.py) extracts the zip and runs `bandit -r DIR -f json -t <enabled rules>`, honouring
`# nosec`; any finding of an enabled rule marks the version BLOCKED unless the uploader skips that rule,
and some rules (B615 among them) cannot be skipped. It also flags hidden files and executable .py files.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 25_000_000  # PLUGIN_MAX_UPLOAD_SIZE
ROOM_BYTES = 2_000_000  # the default model may grow, but not to the limit
REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker",
            "repository")
CATEGORIES = {"Raster", "Vector", "Database", "Mesh", "Web"}  # QGIS's documented values (or none)
FORBIDDEN_DIRS = {"__MACOSX", ".git", "__pycache__"}
SUSPICIOUS = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd")
# bandit rules the site's rule table (bandit_rules.json) ships disabled; every other rule is enabled.
SITE_DISABLED = {"B109", "B404", "B410", "B411"}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--out", str(out)], check=True)
    return out / "geolink_qgis.zip"


@pytest.fixture(scope="module")
def extracted(package, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(package) as zf:
        zf.extractall(folder)
    return folder


def test_size_within_the_upload_limit_with_room(package):
    size = package.stat().st_size
    print(f"{package.name}: {size / 1e6:.2f} MB")
    assert size <= MAX_BYTES - ROOM_BYTES, f"{size / 1e6:.1f} MB; the site refuses over {MAX_BYTES / 1e6:.0f} MB"


def test_structure_as_the_validator_wants(package):
    with zipfile.ZipFile(package) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert {n.split("/")[0] for n in names} == {"geolink_qgis"}
    assert re.match(r"^[a-z_][a-z0-9_]*$", "geolink_qgis")
    for required in ("__init__.py", "metadata.txt", "LICENSE"):
        assert f"geolink_qgis/{required}" in names
    bad = [n for n in names if ".." in n or n.startswith("/") or ".pyc" in n
           or FORBIDDEN_DIRS & set(n.split("/")) or any(p.startswith(".") for p in n.split("/") if p)
           or n.lower().endswith(SUSPICIOUS)]
    assert bad == []
    executable_py = [i.filename for i in infos if i.filename.endswith(".py") and (i.external_attr >> 16) & 0o111]
    assert executable_py == []


def metadata(package) -> dict:
    parser = configparser.ConfigParser()
    parser.optionxform = str
    with zipfile.ZipFile(package) as zf:
        parser.read_string(zf.read("geolink_qgis/metadata.txt").decode("utf-8"))
    return dict(parser.items("general"))


def test_metadata_fields(package):
    meta = metadata(package)
    assert [f for f in REQUIRED if not meta.get(f, "").strip()] == []
    for key in ("tracker", "repository", "homepage"):
        url = urlparse(meta.get(key, ""))
        assert url.scheme in ("http", "https") and url.netloc, key
    assert "/" not in meta["author"] and "@" in meta["email"]
    assert meta.get("category", "Raster") in CATEGORIES
    with zipfile.ZipFile(package) as zf:
        assert f"geolink_qgis/{meta['icon']}" in zf.namelist()
    assert meta["changelog"].lstrip().startswith(meta["version"]), "the changelog's first entry is this version"
    for flag in ("experimental", "deprecated"):
        assert meta[flag].lower() in ("true", "false")
    assert "default.safetensors" in meta["about"] and "Python" in meta["about"]


def bandit_findings(folder: Path) -> list:
    """bandit as the site runs it: recursive, JSON, the enabled rules, `# nosec` honoured."""
    bandit = pytest.importorskip("bandit", reason="bandit is in the dev extra: pip install -e 'backend[dev]'")
    from bandit.core import extension_loader

    manager = extension_loader.MANAGER
    rules = sorted((set(manager.plugins_by_id) | set(manager.blacklist_by_id)) - SITE_DISABLED)
    out = subprocess.run([sys.executable, "-m", "bandit", "-r", str(folder), "-f", "json", "--quiet",
                          "-t", ",".join(rules)], capture_output=True, text=True, timeout=600)
    report = json.loads(out.stdout)
    assert report["metrics"]["_totals"]["loc"] > 0 and bandit.__version__
    return [f"{r['test_id']} {Path(r['filename']).relative_to(folder)}:{r['line_number']} {r['issue_text']}"
            for r in report["results"]]


def test_security_scan_finds_nothing_that_blocks(extracted):
    assert bandit_findings(extracted) == []


def test_security_scan_guardrail_catches_a_finding(tmp_path):
    (tmp_path / "bad.py").write_text("import hashlib\n\n\ndef key(b):\n    assert b\n    return hashlib.sha1(b)\n")
    found = bandit_findings(tmp_path)
    assert any(f.startswith("B324 ") for f in found) and any(f.startswith("B101 ") for f in found)
