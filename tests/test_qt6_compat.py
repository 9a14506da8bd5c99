"""QGIS 4 runs on Qt 6 (PyQt6), which cannot be installed here: this scan fails on what Qt 6 removed or renamed,
so `qgisMaximumVersion=4.99` in metadata.txt stays honest. It reads the plugin's sources (AST) and resolves every
`Owner.Member` spelling against this QGIS's bindings: an enum member reached through its class instead of its enum
(Qt.AlignLeft rather than Qt.AlignmentFlag.AlignLeft) no longer exists in PyQt6 nor in QGIS 4's own classes."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT_BINDINGS = {"PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}  # only qgis.PyQt works on both
REMOVED = {"QRegExp", "QRegExpValidator", "QDesktopWidget", "QSound", "QMatrix", "QTextCodec", "QStringRef",
           "QGLWidget", "QLinkedList", "QtWebKit", "QtWebKitWidgets"}
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QUndoGroup", "QUndoStack",
                  "QFileSystemModel"}
REMOVED_METHODS = {"exec_": "exec()", "print_": "print()", "setMargin": "setContentsMargins()",
                   "desktop": "QScreen (QApplication.screens())"}


def _in_import_error_fallback(tree: ast.AST, node: ast.AST) -> bool:
    """True for an import in `except ImportError:` (the Qt 5 fallback after trying the Qt 6 place first)."""
    for t in ast.walk(tree):
        if isinstance(t, ast.Try):
            for handler in t.handlers:
                names = {getattr(handler.type, "id", None)} | {getattr(e, "id", None) for e in
                                                                getattr(handler.type, "elts", [])}
                if "ImportError" in names and any(node is n for h in handler.body for n in ast.walk(h)):
                    return True
    return False


def syntax_problems(source: str, name: str) -> List[str]:
    """Qt 6 removals and renames visible in the source alone."""
    tree = ast.parse(source, filename=name)
    found = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        line = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line} imports {a.name}: use qgis.PyQt" for a in node.names
                      if a.name.split(".")[0] in QT_BINDINGS]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in QT_BINDINGS:
                found.append(f"{line} imports from {node.module}: use qgis.PyQt")
            for alias in node.names:
                if alias.name in REMOVED:
                    found.append(f"{line} {alias.name} was removed in Qt 6")
                if node.module.endswith("QtWidgets") and alias.name in MOVED_TO_QTGUI \
                        and not _in_import_error_fallback(tree, node):
                    found.append(f"{line} {alias.name} is in QtGui in Qt 6 (try QtGui first)")
        elif isinstance(node, ast.Attribute):
            if node.attr in REMOVED_METHODS:
                found.append(f"{line} .{node.attr} is gone in Qt 6: use {REMOVED_METHODS[node.attr]}")
            if node.attr in REMOVED:
                found.append(f"{line} {node.attr} was removed in Qt 6")
        elif isinstance(node, ast.Name) and node.id in REMOVED:
            found.append(f"{line} {node.id} was removed in Qt 6")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "pyqtSignal":
            holder = parents.get(parents.get(node))
            if not isinstance(parents.get(node), ast.Assign) or not isinstance(holder, ast.ClassDef):
                found.append(f"{line} pyqtSignal must be a class attribute of a QObject subclass")
    return found


def _imported_objects(tree: ast.AST) -> Dict[str, object]:
    """Names bound by `from qgis... import X` / `import qgis...` to the live objects of this QGIS."""
    bound: Dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "qgis":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    bound[alias.asname or alias.name] = getattr(module, alias.name)
                else:
                    try:
                        bound[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        pass
    return bound


def _chain(node: ast.Attribute):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return (node.id, list(reversed(parts))) if isinstance(node, ast.Name) else (None, [])


def _is_enum_member(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and type(value) not in (int,) \
        and not isinstance(value, type)


def unscoped_enums(source: str, name: str) -> List[str]:
    """`Owner.Member` where Member is an enum value reached through its owner class, not through its enum."""
    tree = ast.parse(source, filename=name)
    bound = _imported_objects(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or isinstance(parents.get(node), ast.Attribute):
            continue
        root, parts = _chain(node)
        if root not in bound:
            continue
        owner, value = None, bound[root]
        for part in parts:
            owner, value = value, getattr(value, part, None)
            if value is None:
                break
        if value is not None and _is_enum_member(value) and owner is not type(value):
            scoped = f"{type(value).__name__}.{parts[-1]}"
            found.append(f"{name}:{node.lineno} {root}.{'.'.join(parts)}: write {root}.{scoped}")
    return found


def plugin_sources():
    return sorted((ROOT / "geolink_qgis").rglob("*.py"))


def test_no_qt6_removals_in_the_plugin():
    found = [p for path in plugin_sources()
             for p in syntax_problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


def test_no_unscoped_enums_in_the_plugin():
    pytest.importorskip("qgis.core", reason="QGIS's Python bindings resolve the enum spellings")
    found = [p for path in plugin_sources()
             for p in unscoped_enums(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_scan_catches_each_kind():
    bad = ("from PyQt5.QtCore import QObject\nfrom qgis.PyQt.QtWidgets import QAction, QDesktopWidget\n"
           "from qgis.PyQt.QtCore import pyqtSignal, QRegExp\nclass W(QObject):\n    def f(self):\n"
           "        sig = pyqtSignal(str)\n        self.dialog.exec_()\n        self.layout.setMargin(0)\n")
    found = " | ".join(syntax_problems(bad, "bad.py"))
    for needle in ("imports from PyQt5", "QAction is in QtGui", "QDesktopWidget was removed", "QRegExp was removed",
                   "pyqtSignal must be a class attribute", ".exec_ is gone", ".setMargin is gone"):
        assert needle in found
    good = ("try:\n    from qgis.PyQt.QtGui import QAction\nexcept ImportError:\n"
            "    from qgis.PyQt.QtWidgets import QAction\nclass W:\n    done = pyqtSignal(str)\n")
    assert syntax_problems(good, "good.py") == []


def test_the_enum_scan_catches_unscoped_spellings():
    pytest.importorskip("qgis.core", reason="QGIS's Python bindings resolve the enum spellings")
    bad = ("from qgis.PyQt.QtCore import Qt\nfrom qgis.core import QgsTask\n"
           "a = Qt.AlignLeft | Qt.AlignmentFlag.AlignTop\nb = QgsTask.CanCancel\n")
    found = sorted(unscoped_enums(bad, "bad.py"))
    assert found == ["bad.py:3 Qt.AlignLeft: write Qt.AlignmentFlag.AlignLeft",
                     "bad.py:4 QgsTask.CanCancel: write QgsTask.Flag.CanCancel"]


def test_metadata_declares_qgis_4_only_with_this_scan():
    meta = (ROOT / "metadata.txt").read_text(encoding="utf-8")
    assert "qgisMaximumVersion=4.99" in meta and "qgisMinimumVersion=3.22" in meta
