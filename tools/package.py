"""Build the installable plugin zip, install it into a QGIS profile, or link the source into one.

    python tools/package.py --out dist                       # dist/geolink_qgis.zip
    python tools/package.py --install-zip dist/geolink_qgis.zip --profile DIR
    python tools/package.py --deploy [--profile DIR]         # symlinks, for development

The zip holds one folder, `geolink_qgis/`: the plugin code, metadata.txt, resources/
(icons, styles, the embedded default model) and backend/ (the source the plugin's
installer builds the backend from). A profile folder is what QGIS calls
`.../QGIS3/profiles/<name>`; plugins go to python/plugins and are enabled in QGIS/QGIS3.ini.
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "geolink_qgis"
EXTRA = {"metadata.txt": ROOT / "metadata.txt", "resources": ROOT / "resources", "backend": ROOT / "backend",
         "LICENSE": ROOT / "LICENSE"}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def _files(base: Path):
    if base.is_file():
        yield base
        return
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if path.is_file() and not SKIP_DIRS.intersection(rel.parts) and path.suffix not in SKIP_SUFFIXES \
                and not any(part.endswith(".egg-info") for part in rel.parts):
            yield path


def build_zip(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}.zip"
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in _files(ROOT / PLUGIN):
            zf.write(path, f"{PLUGIN}/{path.relative_to(ROOT / PLUGIN).as_posix()}")
        for name, src in EXTRA.items():
            if not src.exists():
                continue
            for path in _files(src):
                rel = path.relative_to(src).as_posix() if src.is_dir() else ""
                zf.write(path, f"{PLUGIN}/{name}/{rel}".rstrip("/"))
    os.replace(tmp, target)
    return target


def default_profile() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ["APPDATA"]) / "QGIS" / "QGIS3"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3"
    else:
        base = Path.home() / ".local" / "share" / "QGIS" / "QGIS3"
    return base / "profiles" / "default"


def enable_plugin(profile: Path) -> None:
    """Mark the plugin enabled in the profile's QGIS3.ini ([PythonPlugins]), as the Plugin Manager does."""
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    if ini.exists():
        parser.read(ini, encoding="utf-8")
    if not parser.has_section("PythonPlugins"):
        parser.add_section("PythonPlugins")
    parser.set("PythonPlugins", PLUGIN, "true")
    with open(ini, "w", encoding="utf-8") as f:
        parser.write(f, space_around_delimiters=False)


def install_zip(zip_path: Path, profile: Path) -> Path:
    plugins = profile / "python" / "plugins"
    shutil.rmtree(plugins / PLUGIN, ignore_errors=True)
    plugins.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins)
    enable_plugin(profile)
    return plugins / PLUGIN


def deploy(profile: Path) -> Path:
    """A plugin folder of symlinks to the source tree, so edits show after a plugin reload."""
    target = profile / "python" / "plugins" / PLUGIN
    if target.is_symlink() or target.is_file():
        target.unlink()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in (ROOT / PLUGIN).iterdir():
        if item.name not in SKIP_DIRS:
            (target / item.name).symlink_to(item)
    for name, src in EXTRA.items():
        if src.exists():
            (target / name).symlink_to(src)
    enable_plugin(profile)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--install-zip", type=Path)
    parser.add_argument("--deploy", action="store_true")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    profile = args.profile or default_profile()
    if args.install_zip:
        print(install_zip(args.install_zip, profile))
    elif args.deploy:
        print(deploy(profile))
    else:
        print(build_zip(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
