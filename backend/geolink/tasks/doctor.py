"""`geolink doctor`: what the backend runs on, and the models it can see."""

from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass
from typing import List

from ..config import option
from ..progress import Progress

HELP = """Report the backend: interpreter, library versions, compute devices and model packages.

Use it first when something does not work: it says which GPU is usable and why not."""

LIBRARIES = ["torch", "torchvision", "timm", "torch_geometric", "segmentation_models_pytorch",
             "transformers", "shapely", "numpy"]


@dataclass
class Config:
    model_dirs: List[str] = option(default_factory=list, flag="--model-dir",
                                   help="extra folders to look for model packages in")


def library_versions() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception as exc:  # a broken install must still be reported, not crash the report
            versions[name] = f"missing ({type(exc).__name__}: {exc})"
    try:
        from osgeo import gdal

        versions["gdal"] = gdal.__version__
    except ImportError as exc:
        versions["gdal"] = f"missing ({exc})"
    return versions


def run(config: Config, progress: Progress) -> dict:
    from .. import __version__
    from ..devices import describe_devices
    from ..model_store import list_models

    progress.update(10, "Checking libraries")
    versions = library_versions()
    progress.update(50, "Checking devices")
    devices = describe_devices()
    progress.update(80, "Looking for models")
    models = list_models(config.model_dirs)
    lines = [f"GeoLink backend {__version__}",
             f"Python {platform.python_version()} at {sys.executable}",
             "Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
             f"torch CUDA build: {devices['cuda_build'] or 'none (CPU build)'}",
             "Devices: " + "; ".join(
                 f"{d['device']} {d['name']}" + (f" {d['memory_gb']} GB" if "memory_gb" in d else "")
                 for d in devices["devices"])]
    lines += [f"Note: {n}" for n in devices["notes"]]
    lines.append(f"Models ({len(models)}): " + (", ".join(m["name"] for m in models) or "none found"))
    progress.update(100, "Done")
    return {"report": "\n".join(lines), "outputs": {},
            "figures": {"python": sys.executable, "versions": versions, "devices": devices, "models": models}}
