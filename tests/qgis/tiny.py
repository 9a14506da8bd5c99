"""Tiny real model packages for the plugin's end-to-end tests, made with the backend's own API."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

CLASSES = ["water", "vegetation", "built-up"]


def packages(folder: Path) -> Dict[str, str]:
    """{"encoder": path, "segmentation": path}: a ViT-Tiny-sized GeoLink and one with a 3-class head."""
    pytest.skip("the backend's model API has not landed yet")
