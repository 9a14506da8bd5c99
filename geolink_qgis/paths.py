"""Where the plugin's files are: inside the installed plugin folder, or in the source tree."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    """`make package` copies resources/ and backend/ into the plugin folder; in the source tree they sit beside it."""
    inside = PLUGIN_DIR / name
    return inside if inside.exists() else PLUGIN_DIR.parent / name


def resources_dir() -> Path:
    return _bundled("resources")


def backend_source_dir() -> Path:
    return _bundled("backend")


def icon_path(name: str = "geolink.svg") -> str:
    return str(resources_dir() / "icons" / name)

