"""The boundary: the plugin never imports torch (or any ML library); the backend never imports QGIS or Qt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FORBIDDEN = {"torch", "torchvision", "timm", "torch_geometric", "segmentation_models_pytorch",
                    "transformers", "safetensors", "geolink"}
BACKEND_FORBIDDEN = {"qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip", "geolink_qgis"}


def imported_roots(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def offenders(folder: Path, forbidden: set) -> dict:
    found = {}
    for path in folder.rglob("*.py"):
        bad = imported_roots(path) & forbidden
        if bad:
            found[str(path.relative_to(ROOT))] = sorted(bad)
    return found


@pytest.mark.parametrize("folder,forbidden", [("geolink_qgis", PLUGIN_FORBIDDEN), ("backend", BACKEND_FORBIDDEN)])
def test_boundary(folder, forbidden):
    assert (ROOT / folder).is_dir()
    assert offenders(ROOT / folder, forbidden) == {}


def test_guardrail_catches_an_offender(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch.nn as nn\n    from qgis.core import QgsProject\n")
    assert imported_roots(bad) >= {"torch", "qgis"}


def test_plugin_imports_qt_only_through_qgis_pyqt():
    direct = {k: v for k, v in offenders(ROOT / "geolink_qgis", {"PyQt5", "PyQt6", "PySide2", "PySide6"}).items()}
    assert direct == {}
