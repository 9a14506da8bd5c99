"""Create the backend's virtual environment: torch, the model libraries and `geolink`.

Pure standard library, so it runs inside QGIS (the "Install backend" button), from
`make setup`, and as `python -m geolink_qgis.backend_installer` on any platform.
The venv sees the host's site-packages (GDAL's bindings, numpy), and numpy is
pinned to the host's version so GDAL and QGIS keep working.

An environment counts as installed only when its marker file says "complete": the
marker is written "installing" before pip runs and "complete" after the
verification import, so an interrupted or failed install is recognised as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .worker_client import child_env, wait_or_kill

CONSTRAINTS_FILE = "constraints.txt"  # beside pyproject.toml: the backend's version pins
TORCH_PACKAGES = ["torch", "torchvision"]
# torch's own index carries the CUDA builds for Windows; on Linux PyPI's torch is the CUDA build.
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
MIN_PYTHON = (3, 9)
MARKER = "geolink-backend.json"  # in the venv: {"status": "installing" | "complete", ...}
KILL_GRACE_S = 3.0
RETRY = "then try again."  # the dialog then names the button (Repair backend); the CLI reruns the command
VERIFY = "import geolink, torch, timm, torch_geometric; print('backend ok', torch.__version__)"

Log = Callable[[str], None]
Cancelled = Callable[[], bool]


class InstallError(RuntimeError):
    """A failure explained in words a GIS user can act on."""


class InstallCancelled(InstallError):
    """The user stopped the installation."""


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


# ------------------------------------------------------------ QGIS's own interpreter

def qgis_python(prefix: Path, executable: Path, system: str, version: Tuple[int, int]) -> Path:
    """QGIS's own Python, found from where QGIS runs, never from PATH: a pyenv or conda `python3` on PATH lacks
    QGIS's GDAL. Layouts: Linux /usr/bin/python3.X (sys.prefix /usr); Windows OSGeo4W and the standalone
    installer <root>/apps/Python3X/python.exe (sys.prefix), beside <root>/bin/qgis-bin.exe; macOS QGIS.app's
    Contents/MacOS/bin/python3 or its Python.framework. Outside QGIS (make setup, the CLI) it is this Python.
    sys.executable counts only when it lies under sys.prefix: embedded in QGIS on Linux, Python fills it in
    by searching PATH for `python3`, which finds a pyenv shim when there is one."""
    if executable.stem.lower().startswith("python") and prefix in executable.parents and executable.is_file():
        return executable
    major, minor = version
    if system == "Windows":
        names = ["python.exe", "python3.exe"]
        dirs = [prefix, executable.parent.parent / "apps" / f"Python{major}{minor}"]
    else:
        names = [f"python{major}.{minor}", "python3"]
        dirs = [prefix / "bin"]
        if system == "Darwin":
            contents = executable.parent.parent  # QGIS.app/Contents (the binary is Contents/MacOS/QGIS)
            dirs += [executable.parent / "bin",
                     contents / "Frameworks" / "Python.framework" / "Versions" / f"{major}.{minor}" / "bin"]
    for folder in dirs:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    looked = ", ".join(str(d) for d in dirs)
    raise InstallError(f"QGIS's own Python {major}.{minor} was not found (looked in {looked}). In GeoLink ▸ "
                       "Settings, choose a Backend Python that has GDAL, or reinstall QGIS.")


def host_python() -> Path:
    """The Python that QGIS runs on (inside QGIS sys.executable is the QGIS binary)."""
    return qgis_python(Path(sys.prefix), Path(sys.executable or ""), platform.system(), sys.version_info[:2])


# ------------------------------------------------------------ what gets installed, and how big it is

def nvidia_driver_present() -> bool:
    """True when `nvidia-smi` runs and lists a GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)  # nosec B603  nvidia-smi -L
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_torch_index() -> Optional[str]:
    """Where torch comes from: PyPI, except Windows with an NVIDIA driver (PyPI has CPU builds there)."""
    if platform.system() == "Windows" and nvidia_driver_present():
        return TORCH_CUDA_INDEX
    return None


def read_pins(backend_source: Path) -> Dict[str, str]:
    """The backend's exact pins from constraints.txt: {"torch": "<version>", ...}."""
    pins = {}
    path = backend_source / CONSTRAINTS_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
            if match:
                pins[_norm(match.group(1))] = match.group(2)
    return pins


def size_estimate(torch_index: Optional[str], system: str, machine: str) -> Tuple[float, float]:
    """(download GB, GB on disk), roughly: PyTorch is most of it. Linux x86-64 gets PyPI's CUDA build (with
    NVIDIA's libraries), Windows with an NVIDIA GPU the CUDA build from torch's index, the rest CPU builds."""
    if torch_index or (system == "Linux" and machine.lower() in ("x86_64", "amd64")):
        return 3.5, 6.5
    return 0.6, 2.0


def describe_plan(plan: InstallPlan) -> str:
    """What Install backend downloads, from where, to where, and how big it is (the confirmation's text)."""
    pins = read_pins(plan.backend_source)
    torch = ", ".join(f"{p} {pins[p]}" for p in TORCH_PACKAGES if p in pins) or "torch, torchvision"
    download, disk = size_estimate(plan.torch_index, platform.system(), platform.machine())
    if plan.torch_index:
        build = "with CUDA for your NVIDIA GPU"
    elif download > 1:
        build = "with CUDA libraries"
    else:
        build = "with Metal for Apple GPUs" if platform.system() == "Darwin" else "for the CPU"
    source = "download.pytorch.org and pypi.org" if plan.torch_index else "pypi.org"
    free = _free_gb(plan.venv)
    return (f"GeoLink will download PyTorch ({torch}, {build}), timm, torch-geometric, segmentation-models-pytorch, "
            f"transformers, safetensors, shapely and scipy from {source}: about {download:.1f} GB to download "
            f"and {disk:.1f} GB on disk.\n\nPlace: {plan.venv}" + (f" ({free:.0f} GB free)" if free else "")
            + f"\nPython: {plan.base_python}\n\nThis takes several minutes; QGIS stays usable, and Stop installation "
              "ends it at any time.")


def _free_gb(path: Path) -> float:
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free / 1024**3
    return 0.0


# ------------------------------------------------------------ the marker: complete or not

def read_marker(venv: Path) -> Optional[dict]:
    try:
        return json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(venv: Path, status: str, **details: str) -> None:
    tmp = venv / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"status": status, **details}, indent=1), encoding="utf-8")
    os.replace(tmp, venv / MARKER)


@dataclass
class BackendState:
    status: str  # "ready", "missing" or "incomplete"
    python: str
    summary: str  # what is the matter, without what to click

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def button(self) -> str:
        """The settings' button that deals with this state."""
        return {"missing": "Install backend", "incomplete": "Repair backend"}.get(self.status, "Reinstall backend")

    @property
    def message(self) -> str:
        """The summary and what to click, for places outside the settings (algorithms, Check backend)."""
        return self.summary if self.ready else f"{self.summary} Open GeoLink ▸ Settings and click {self.button}."


def backend_state(python: str, managed_venv: Path) -> BackendState:
    """Whether the backend interpreter is usable. The plugin's own venv must carry a "complete" marker; an
    interpreter the user chose counts as ready unless an installer run into it did not finish."""
    path = Path(python) if python else venv_python(managed_venv)
    venv = path.parent.parent
    marker = read_marker(venv)
    if marker is not None:
        unfinished = marker.get("status") != "complete" or not path.exists()
    else:  # no marker: fine for an interpreter the user chose, not for the plugin's own venv
        unfinished = venv == managed_venv and venv.exists()
    if unfinished:
        return BackendState("incomplete", str(path), f"The GeoLink backend in {venv} is incomplete: an installation "
                                                     "did not finish.")
    if not path.exists():
        return BackendState("missing", str(path), "The GeoLink backend is not installed yet.")
    return BackendState("ready", str(path), f"Backend interpreter: {path}")


# ------------------------------------------------------------ running pip, with cancel

def _spawn(cmd: List[str]) -> subprocess.Popen:
    """A child in its own process group, so cancel can stop pip and everything it started."""
    extra: dict = {"start_new_session": True}
    if os.name == "nt":
        extra = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,  # nosec B603  the interpreter or pip, fixed argv
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                            errors="replace", env=child_env(), **extra)


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop a child and its children: the process group on POSIX, taskkill /T on Windows."""
    if os.name == "nt":
        taskkill = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "taskkill.exe"
        subprocess.run([str(taskkill), "/T", "/F", "/PID", str(proc.pid)],  # nosec B603  taskkill, our child's pid
                       capture_output=True)
    else:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # SIGKILL: whatever of the group outlived the grace time
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
    wait_or_kill(proc, KILL_GRACE_S)


def _pump(stream, sink: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)
    sink.put(None)


def run_step(cmd: List[str], log: Log, what: str, cancelled: Cancelled = lambda: False,
             pins: Optional[Path] = None) -> None:
    """Run one install step, streaming its output to `log`; raise InstallCancelled or InstallError with advice."""
    log("$ " + " ".join(cmd))
    try:
        proc = _spawn(cmd)
    except OSError as exc:
        raise InstallError(f"{what} failed: {cmd[0]} could not be started ({exc}).") from None
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    tail: List[str] = []
    while True:
        if cancelled():
            kill_tree(proc)
            raise InstallCancelled(f"{what} was cancelled.")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        line = line.rstrip()
        log(line)
        tail = (tail + [line])[-60:]
    if proc.wait() != 0:
        raise InstallError(explain_failure(what, "\n".join(tail), cmd[0], pins))


def explain_failure(what: str, output: str, python: str = "", pins: Optional[Path] = None) -> str:
    """Turn pip's last words into advice."""
    low = output.lower()
    unresolved = "resolutionimpossible" in low or "conflicting dependencies" in low
    foreign = foreign_constraint_advice(output, python, pins) if unresolved or "(constraint)" in low else ""
    if foreign:
        return f"{what} failed: {foreign}"
    if any(s in low for s in ("connection", "network is unreachable", "name resolution", "timed out",
                              "proxyerror", "max retries exceeded")):
        return (f"{what} failed: the Python package index (pypi.org) could not be reached. "
                f"Check your internet connection or proxy settings, {RETRY}")
    if unresolved:  # nothing contradicts the pins, so the index offered no version of them at all
        return (f"{what} failed: pip found no version of the pinned packages it could install. Check the internet "
                "connection, and any package index or proxy set in your pip configuration (`pip config list`), "
                f"{RETRY}")
    if "no space left" in low or "errno 28" in low:
        return f"{what} failed: the disk is full. Free at least 7 GB, {RETRY}"
    if "no matching distribution" in low or "could not find a version" in low:
        return (f"{what} failed: no build of a required package exists for this Python "
                f"({platform.python_version()}, {platform.machine()}). Use a 64-bit QGIS with Python 3.9-3.13.")
    return f"{what} failed. The last lines of the log:\n" + "\n".join(output.splitlines()[-8:])


# ------------------------------------------------------------ constraints that are not ours

def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_constraint_sources(python: str) -> List[Tuple[str, Path]]:
    """(where it is set, constraint file) for each pip constraint in the configuration: PIP_CONSTRAINT and the
    `constraint =` lines of pip.conf / pip.ini files, as `pip config debug` lists them."""
    sources = [("the environment variable PIP_CONSTRAINT", Path(p))
               for p in os.environ.get("PIP_CONSTRAINT", "").split()]
    try:
        out = subprocess.run([python, "-m", "pip", "config", "debug"],  # nosec B603  pip config debug, fixed argv
                             capture_output=True, text=True, timeout=60, env=child_env()).stdout
    except (OSError, subprocess.SubprocessError):
        return sources
    current = ""
    for line in out.splitlines():
        file_line = re.match(r"^\s{2}(\S.*), exists: True$", line)
        if file_line:
            current = file_line.group(1)
            continue
        value = re.match(r"^\s{4}(?:global|install)\.constraint:\s*(.+)$", line)
        if value and current:
            sources += [(f"the pip configuration file {current}", Path(p)) for p in value.group(1).split()]
    return sources


def _constraint_lines(path: Path) -> Dict[str, str]:
    """{normalised name: "name<=1.2, name!=1.1"} for the version constraints in a constraints file."""
    found: Dict[str, List[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*[<>=!~]", line)
        if match:
            found.setdefault(_norm(match.group(1)), []).append(line.split("#")[0].strip())
    return {name: ", ".join(lines) for name, lines in found.items()}


def foreign_constraint_advice(output: str, python: str, pins: Optional[Path]) -> str:
    """When pip refused because of a constraint GeoLink did not give: which file, which package, what to do."""
    conflicted = {_norm(m) for m in re.findall(r"\(constraint\)\s+([A-Za-z0-9][A-Za-z0-9_.-]*)", output)}
    conflicted |= {_norm(m) for m in re.findall(r"Cannot install ([A-Za-z0-9][A-Za-z0-9_.-]*)", output)}
    ours = read_pins(pins.parent) if pins else {}
    for where, path in pip_constraint_sources(python):
        lines = _constraint_lines(path)
        for name in sorted(conflicted & set(lines)):
            need = f"{name}=={ours[name]}" if name in ours else name
            return (f"a pip setting on this computer, not GeoLink, forbids the version GeoLink needs. "
                    f"{where[0].upper()}{where[1:]} applies the constraint file {path}, which allows only "
                    f"{lines[name]}; GeoLink needs {need} (pinned in {pins or CONSTRAINTS_FILE}). "
                    f"Change or remove that line in {path}, or the constraint setting itself (ask your IT "
                    f"department if they manage it), {RETRY}")
    return ""


# ------------------------------------------------------------ the installation

def host_numpy_version(base_python: Path) -> Optional[str]:
    out = subprocess.run([str(base_python), "-c", "import numpy; print(numpy.__version__)"],  # nosec B603  fixed argv
                         capture_output=True, text=True, env=child_env())
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


def _python_version(python: Path) -> Optional[Tuple[int, int]]:
    try:
        out = subprocess.run([str(python), "-c", "import sys; print(*sys.version_info[:2])"],  # nosec B603  fixed argv
                             capture_output=True, text=True, timeout=60, env=child_env())
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def remove_env(venv: Path) -> None:
    """Delete a half-made environment (retrying briefly: Windows holds files of a just-killed process)."""
    for _ in range(10):
        shutil.rmtree(venv, ignore_errors=True)
        if not venv.exists():
            return
        time.sleep(0.5)


def install(plan: InstallPlan, log: Log = print, cancelled: Cancelled = lambda: False) -> Path:
    """Create, complete or repair the venv; return its interpreter. Raises InstallError with advice, or
    InstallCancelled, after which an environment this call created is gone."""
    version = _python_version(plan.base_python)
    if version is None:
        raise InstallError(f"The Python at {plan.base_python} does not run. In GeoLink ▸ Settings, choose "
                           "another Backend Python.")
    if version < MIN_PYTHON:
        raise InstallError(f"The backend needs Python 3.9 or newer; {plan.base_python} is "
                           f"{version[0]}.{version[1]}. Use QGIS 3.22 or newer.")
    plan.venv.parent.mkdir(parents=True, exist_ok=True)
    py = venv_python(plan.venv)
    created = not plan.venv.exists()
    _, disk = size_estimate(plan.torch_index, platform.system(), platform.machine())
    free = _free_gb(plan.venv)
    if free < disk and not py.exists():
        raise InstallError(f"Only {free:.1f} GB free on the disk of {plan.venv.parent}; the backend (PyTorch and "
                           f"its libraries) needs about {disk:.0f} GB. Free some space and try again.")
    try:
        if py.exists() and _python_version(py) is None:
            log(f"The environment in {plan.venv} is broken; building it again")
            remove_env(plan.venv)
        if not py.exists():
            log(f"Creating the backend environment in {plan.venv}")
            run_step([str(plan.base_python), "-m", "venv", "--system-site-packages", str(plan.venv)], log,
                     "Creating the Python environment", cancelled)
        write_marker(plan.venv, "installing", python=str(plan.base_python))
        constraints = write_constraints(plan.venv, host_numpy_version(plan.base_python))
        pins = plan.backend_source / CONSTRAINTS_FILE
        pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-c", str(pins),
               "-c", str(constraints)]
        torch_cmd = pip + TORCH_PACKAGES
        if plan.torch_index:
            torch_cmd += ["--index-url", plan.torch_index, "--extra-index-url", "https://pypi.org/simple"]
        log("Installing PyTorch (a large download, several minutes)")
        run_step(torch_cmd, log, "Installing PyTorch", cancelled, pins)
        target = str(plan.backend_source)
        if plan.extras:
            target += "[" + ",".join(plan.extras) + "]"
        log("Installing the GeoLink backend and its libraries")
        run_step(pip + (["-e", target] if plan.editable else [target]), log, "Installing the GeoLink backend",
                 cancelled, pins)
        run_step([str(py), "-c", VERIFY], log, "Checking the backend", cancelled)
        write_marker(plan.venv, "complete", python=str(plan.base_python),
                     date=time.strftime("%Y-%m-%d %H:%M:%S"))  # last: only now is the backend installed
    except InstallCancelled:
        if created:
            log(f"Removing the unfinished environment {plan.venv}")
            remove_env(plan.venv)
        raise
    return py


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="folder of the environment to create")
    parser.add_argument("--backend", type=Path, required=True, help="the backend source folder (has pyproject.toml)")
    parser.add_argument("--python", type=Path, help="base interpreter (default: this one)")
    parser.add_argument("--editable", action="store_true", help="install the backend in development mode")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. dev")
    args = parser.parse_args(argv)
    try:
        plan = InstallPlan(venv=args.venv.resolve(), backend_source=args.backend.resolve(),
                           base_python=args.python or host_python(), editable=args.editable,
                           extras=[e for e in args.extras.split(",") if e], torch_index=choose_torch_index())
        install(plan)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
