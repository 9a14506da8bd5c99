"""Create the backend's virtual environment: torch, the model libraries and `geolink`.

Pure standard library, so it runs inside QGIS (the "Install backend" button), from
`make setup`, and as `python -m geolink_qgis.backend_installer` on any platform.
The venv sees the host's site-packages (GDAL's bindings, numpy), and numpy is
pinned to the host's version so GDAL and QGIS keep working.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

CONSTRAINTS_FILE = "constraints.txt"  # beside pyproject.toml: the backend's version pins
TORCH_PACKAGES = ["torch", "torchvision"]
# torch's own index carries the CUDA builds for Windows; on Linux PyPI's torch is the CUDA build.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
MIN_FREE_BYTES = 7 * 1024**3
MIN_PYTHON = (3, 9)

Log = Callable[[str], None]


class InstallError(RuntimeError):
    """A failure explained in words a GIS user can act on."""


@dataclass
class InstallPlan:
    venv: Path
    backend_source: Path
    base_python: Path
    editable: bool = False
    extras: List[str] = field(default_factory=list)
    torch_index: Optional[str] = None  # None: PyPI


def venv_python(venv: Path) -> Path:
    """The interpreter inside a venv, on Windows or POSIX."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def host_python() -> Path:
    """The Python that QGIS runs on (inside QGIS sys.executable is the QGIS binary)."""
    exe = Path(sys.executable)
    if exe.stem.lower().startswith("python"):
        return exe
    names = ["python.exe", "python3.exe"] if os.name == "nt" else ["python3", "python"]
    for base in (Path(sys.prefix), Path(sys.prefix) / "bin", Path(sys.exec_prefix) / "bin"):
        for name in names:
            if (base / name).exists():
                return base / name
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise InstallError("Could not find QGIS's Python interpreter to build the backend with.")
    return Path(found)


def nvidia_driver_present() -> bool:
    """True when `nvidia-smi` runs and lists a GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_torch_index() -> Optional[str]:
    """Where torch comes from: PyPI, except Windows with an NVIDIA driver (PyPI has CPU builds there)."""
    if platform.system() == "Windows" and nvidia_driver_present():
        return TORCH_CUDA_INDEX
    return None


def _run(cmd: List[str], log: Log, what: str) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace")
    tail: List[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        log(line)
        tail = (tail + [line])[-40:]
    if proc.wait() != 0:
        raise InstallError(explain_failure(what, "\n".join(tail)))


def explain_failure(what: str, output: str) -> str:
    """Turn pip's last words into advice."""
    low = output.lower()
    if any(s in low for s in ("connection", "network is unreachable", "name resolution", "timed out",
                              "proxyerror", "max retries exceeded")):
        return (f"{what} failed: the Python package index (pypi.org) could not be reached. "
                "Check your internet connection or proxy settings and try again.")
    if "no space left" in low or "errno 28" in low:
        return f"{what} failed: the disk is full. Free at least 7 GB and try again."
    if "no matching distribution" in low or "could not find a version" in low:
        return (f"{what} failed: no build of a required package exists for this Python "
                f"({platform.python_version()}, {platform.machine()}). Use a 64-bit QGIS with Python 3.9-3.13.")
    return f"{what} failed. The last lines of the log:\n" + "\n".join(output.splitlines()[-8:])


def host_numpy_version(base_python: Path) -> Optional[str]:
    out = subprocess.run([str(base_python), "-c", "import numpy; print(numpy.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def write_constraints(venv: Path, numpy_version: Optional[str]) -> Path:
    """Pin numpy to the host's (GDAL and QGIS are built against it)."""
    lines = []
    if numpy_version:
        lines.append(f"numpy=={numpy_version}")
        major, minor = (int(p) for p in numpy_version.split(".")[:2])
        if (major, minor) < (1, 26):
            lines.append("shapely>=2.0,<2.1")  # shapely 2.1 needs numpy >= 1.26
    path = venv / "geolink-constraints.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def install(plan: InstallPlan, log: Log = print) -> Path:
    """Create or update the venv; return its interpreter. Raises InstallError with advice."""
    try:
        check = subprocess.run([str(plan.base_python), "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
    except OSError:
        check = None
    if check is None or check.returncode != 0:
        raise InstallError(f"The Python at {plan.base_python} does not run; set the right one in the settings.")
    version = tuple(int(v) for v in check.stdout.strip("()\n ").split(","))
    if version < MIN_PYTHON:
        raise InstallError(f"The backend needs Python 3.9 or newer; {plan.base_python} is {version}. "
                           "Use QGIS 3.22 or newer.")
    plan.venv.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(plan.venv.parent).free
    if free < MIN_FREE_BYTES and not venv_python(plan.venv).exists():
        raise InstallError(f"Only {free / 1024**3:.1f} GB free on the disk of {plan.venv.parent}; "
                           "the backend (PyTorch and its libraries) needs about 7 GB.")
    py = venv_python(plan.venv)
    if not py.exists():
        log(f"Creating the backend environment in {plan.venv}")
        _run([str(plan.base_python), "-m", "venv", "--system-site-packages", str(plan.venv)], log,
             "Creating the Python environment")
    constraints = write_constraints(plan.venv, host_numpy_version(plan.base_python))
    pins = plan.backend_source / CONSTRAINTS_FILE
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-c", str(pins), "-c", str(constraints)]
    torch_cmd = pip + TORCH_PACKAGES
    if plan.torch_index:
        torch_cmd += ["--index-url", plan.torch_index, "--extra-index-url", "https://pypi.org/simple"]
    log("Installing PyTorch (a large download, several minutes)")
    _run(torch_cmd, log, "Installing PyTorch")
    target = str(plan.backend_source)
    if plan.extras:
        target += "[" + ",".join(plan.extras) + "]"
    log("Installing the GeoLink backend and its libraries")
    _run(pip + (["-e", target] if plan.editable else [target]), log, "Installing the GeoLink backend")
    _run([str(py), "-c", "import geolink, torch, timm, torch_geometric; print('backend ok', torch.__version__)"],
         log, "Checking the backend")
    return py


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="folder of the environment to create")
    parser.add_argument("--backend", type=Path, required=True, help="the backend source folder (has pyproject.toml)")
    parser.add_argument("--python", type=Path, help="base interpreter (default: this one)")
    parser.add_argument("--editable", action="store_true", help="install the backend in development mode")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. dev")
    args = parser.parse_args(argv)
    plan = InstallPlan(venv=args.venv.resolve(), backend_source=args.backend.resolve(),
                       base_python=args.python or host_python(), editable=args.editable,
                       extras=[e for e in args.extras.split(",") if e], torch_index=choose_torch_index())
    try:
        install(plan)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
