"""The backend installer without QGIS: which interpreter it builds from, when an environment counts as complete,
pip refusing because of a constraint GeoLink did not set, and cancel (real venvs, real pip, a local wheel folder)."""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from geolink_qgis import backend_installer
from geolink_qgis.backend_installer import (
    MARKER,
    InstallCancelled,
    InstallError,
    InstallPlan,
    backend_state,
    install,
    qgis_python,
    read_marker,
    read_pins,
    run_step,
    venv_python,
    write_marker,
)

ROOT = Path(__file__).resolve().parents[1]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


# ------------------------------------------------------------ QGIS's own interpreter, on made-up trees

def test_linux_qgis_uses_its_prefix_python_not_a_shim_on_path(tmp_path, monkeypatch):
    usr = tmp_path / "usr"
    python = touch(usr / "bin" / "python3.11")
    shims = touch(tmp_path / "home" / ".pyenv" / "shims" / "python3").parent
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    assert qgis_python(usr, usr / "bin" / "qgis", "Linux", (3, 11)) == python


def test_linux_qgis_whose_sys_executable_is_a_pyenv_shim(tmp_path):
    """Seen in the real QGIS window here: embedded Python set sys.executable to ~/.pyenv/shims/python3."""
    usr = tmp_path / "usr"
    python = touch(usr / "bin" / "python3.11")
    shim = touch(tmp_path / "root" / ".pyenv" / "shims" / "python3")
    assert qgis_python(usr, shim, "Linux", (3, 11)) == python


def test_windows_osgeo4w_layout(tmp_path):
    root = tmp_path / "OSGeo4W"
    python = touch(root / "apps" / "Python312" / "python.exe")
    touch(root / "bin" / "python3.exe")  # OSGeo4W's bin also has launchers: not the interpreter QGIS runs on
    assert qgis_python(root / "apps" / "Python312", root / "bin" / "qgis-bin.exe", "Windows", (3, 12)) == python


def test_windows_standalone_installer_layout_found_from_the_qgis_binary(tmp_path):
    root = tmp_path / "Program Files" / "QGIS 3.40.4"
    python = touch(root / "apps" / "Python312" / "python.exe")
    # sys.prefix pointing elsewhere (a PYTHONHOME left over): the binary's own apps\Python312 is found
    assert qgis_python(tmp_path / "elsewhere", root / "bin" / "qgis-ltr-bin.exe", "Windows", (3, 12)) == python


def test_macos_app_bundle_layouts(tmp_path):
    contents = tmp_path / "QGIS.app" / "Contents"
    exe = touch(contents / "MacOS" / "QGIS")
    framework = touch(contents / "Frameworks" / "Python.framework" / "Versions" / "3.11" / "bin" / "python3.11")
    assert qgis_python(contents / "Resources", exe, "Darwin", (3, 11)) == framework
    bundled = touch(contents / "MacOS" / "bin" / "python3")
    assert qgis_python(contents / "Resources", exe, "Darwin", (3, 11)) == bundled


def test_outside_qgis_the_running_interpreter_is_used(tmp_path):
    python = touch(tmp_path / "venv" / "bin" / "python3")
    assert qgis_python(tmp_path / "venv", python, "Linux", (3, 11)) == python


def test_no_qgis_python_is_an_error_in_gui_words(tmp_path):
    with pytest.raises(InstallError, match="GeoLink ▸ Settings, choose a Backend Python"):
        qgis_python(tmp_path, tmp_path / "bin" / "qgis-bin.exe", "Windows", (3, 12))


# ------------------------------------------------------------ complete, incomplete, missing

def fake_venv(folder: Path) -> Path:
    touch(folder / "pyvenv.cfg")
    return touch(venv_python(folder))


def test_backend_state_follows_the_marker(tmp_path):
    managed = tmp_path / "profile" / "geolink" / "venv"
    assert backend_state("", managed).status == "missing"
    python = fake_venv(managed)
    state = backend_state("", managed)  # python exists, no marker: a failed or interrupted install
    assert state.status == "incomplete" and state.message.endswith("Open GeoLink ▸ Settings and click Repair backend.")
    write_marker(managed, "installing")
    assert backend_state(str(python), managed).status == "incomplete"
    write_marker(managed, "complete")
    assert backend_state("", managed).ready
    python.unlink()  # a complete marker but no interpreter any more: broken
    assert backend_state("", managed).status == "incomplete"


def test_an_interpreter_the_user_chose_needs_no_marker(tmp_path):
    own = fake_venv(tmp_path / "my-env")
    assert backend_state(str(own), tmp_path / "managed").ready
    write_marker(tmp_path / "my-env", "installing")  # but an install into it that did not finish is seen
    assert backend_state(str(own), tmp_path / "managed").status == "incomplete"


# ------------------------------------------------------------ real pip, local wheels

def make_wheel(folder: Path, name: str, version: str, requires: tuple = ()) -> None:
    """A minimal valid pure-Python wheel, so pip resolves and installs without any download."""
    dist = f"{name}-{version}.dist-info"
    needs = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}/__init__.py": f"__version__ = '{version}'\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{needs}",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)


@pytest.fixture
def local_index(tmp_path, monkeypatch, stand_in_install_size):
    """pip sees only a folder of tiny wheels (torch 2.14.1 and 9.0, torchvision 0.29.1): nothing is downloaded."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, version in (("torch", "2.14.1"), ("torch", "9.0"), ("torchvision", "0.29.1")):
        make_wheel(wheels, name, version)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.delenv("PIP_CONSTRAINT", raising=False)
    return wheels


def backend_source(tmp_path: Path, torch_pin: str) -> Path:
    source = tmp_path / "backend"
    source.mkdir()
    (source / "constraints.txt").write_text(f"torch=={torch_pin}\ntorchvision==0.29.1\n")
    return source


def test_too_little_disk_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    free = shutil.disk_usage(tmp_path).free / 1024**3
    monkeypatch.setattr(backend_installer, "size_estimate", lambda *args: (1.0, free + 100))
    plan = InstallPlan(venv=tmp_path / "profile" / "venv", backend_source=backend_source(tmp_path, "2.14.1"),
                       base_python=Path(sys.executable))
    with pytest.raises(InstallError, match=r"^Only [\d.]+ GB free on the disk of .*profile; the backend .* needs "
                                           r"about \d+ GB\. Free some space and try again\.$"):
        install(plan, log=lambda line: None)
    assert not plan.venv.exists()


def test_a_foreign_pip_constraint_is_named_with_its_file_and_package(tmp_path, local_index, monkeypatch):
    foreign = tmp_path / "corporate-constraints.txt"
    foreign.write_text("# managed by IT\ntorch<=2.14.1\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nconstraint = {foreign}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    plan = InstallPlan(venv=tmp_path / "venv", backend_source=backend_source(tmp_path, "9.0"),
                       base_python=Path(sys.executable))
    with pytest.raises(InstallError) as failure:
        install(plan, log=lambda line: None)
    message = str(failure.value)
    assert f"The pip configuration file {conf}" in message and str(foreign) in message
    assert "allows only torch<=2.14.1" in message and "GeoLink needs torch==9.0" in message
    assert "Change or remove that line" in message and message.endswith("then try again.")
    assert read_marker(tmp_path / "venv")["status"] == "installing"  # a failed install is not complete
    assert backend_state(str(venv_python(tmp_path / "venv")), tmp_path / "venv").status == "incomplete"


def test_repair_finishes_what_a_refused_install_left(tmp_path, local_index, monkeypatch):
    """A whole install() on tiny stand-ins (torch, torchvision, timm, torch_geometric wheels and a `geolink` source
    folder): refused by a foreign constraint, then repaired once it is lifted; complete only after the import."""
    for name in ("timm", "torch_geometric"):
        make_wheel(local_index, name, "1.0")
    source = backend_source(tmp_path, "9.0")
    # an in-tree build backend with no requirements, so pip builds `geolink` without downloading setuptools
    (source / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\n'
                                           'backend-path = ["."]\n')
    (source / "tiny_backend.py").write_text(
        "import base64, hashlib, zipfile\nfrom pathlib import Path\n\n" + inspect.getsource(make_wheel)
        + "\n\ndef build_wheel(folder, config_settings=None, metadata_directory=None):\n"
          "    make_wheel(Path(folder), 'geolink', '0.0.1', ('timm', 'torch_geometric'))\n"
          "    return 'geolink-0.0.1-py3-none-any.whl'\n")
    foreign = tmp_path / "cap.txt"
    foreign.write_text("torch<=2.14.1\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_CONSTRAINT", str(foreign))
    venv = tmp_path / "profile" / "venv"
    plan = InstallPlan(venv=venv, backend_source=source, base_python=Path(sys.executable))
    with pytest.raises(InstallError, match="PIP_CONSTRAINT"):
        install(plan, log=lambda line: None)
    assert backend_state("", venv).status == "incomplete"
    monkeypatch.delenv("PIP_CONSTRAINT")
    lines = []
    assert install(plan, log=lines.append) == venv_python(venv)
    assert not any(line.startswith("Creating the backend environment") for line in lines)  # the venv was reused
    assert any(line.startswith("backend ok 9.0") for line in lines)
    assert read_marker(venv)["status"] == "complete" and backend_state("", venv).ready


def test_pip_constraint_from_the_environment_variable(tmp_path, local_index, monkeypatch):
    foreign = tmp_path / "pins.txt"
    foreign.write_text("torch==2.14.1\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_CONSTRAINT", str(foreign))
    pins = backend_source(tmp_path, "9.0") / "constraints.txt"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "-c", str(pins), "torch"]
    with pytest.raises(InstallError, match=r"The environment variable PIP_CONSTRAINT applies the constraint file "
                                           + r".*pins\.txt, which allows only torch==2\.14\.1"):
        run_step(cmd, lambda line: None, "Installing PyTorch", pins=pins)


def test_our_pins_install_when_no_constraint_contradicts_them(tmp_path, local_index, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    pins = backend_source(tmp_path, "2.14.1") / "constraints.txt"
    seen = []
    run_step([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-c", str(pins),
              "torch", "torchvision"],
             seen.append, "Installing PyTorch", pins=pins)
    assert any("Would install torch-2.14.1 torchvision-0.29.1" in line for line in seen)


def test_offline_is_said_in_plain_words(tmp_path, monkeypatch):
    for key in ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # a closed port: no network
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    pins = backend_source(tmp_path, "2.14.1") / "constraints.txt"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-c", str(pins), "torch"]
    with pytest.raises(InstallError, match=r"package index \(pypi.org\) could not be reached.*then try again"):
        run_step(cmd, lambda line: None, "Installing PyTorch", pins=pins)


# ------------------------------------------------------------ cancel

@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process check (taskkill /T is the Windows path)")
def test_cancel_stops_the_whole_process_tree_within_seconds(tmp_path):
    pids = tmp_path / "pids"
    child = "import os, subprocess, sys, time; " \
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); " \
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}'); print('started', flush=True); " \
            "time.sleep(120)"
    seen, stopped = [], []

    def cancelled() -> bool:  # once both processes run (a loaded machine can take seconds to start them)
        if "started" in seen and not stopped:
            stopped.append(time.monotonic())
        return bool(stopped)

    with pytest.raises(InstallCancelled):
        run_step([sys.executable, "-c", child], seen.append, "Installing PyTorch", cancelled)
    assert time.monotonic() - stopped[0] < 8
    for pid in map(int, pids.read_text().split()):  # gone, or a zombie waiting for its reaper: not running
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_cancelled_install_removes_the_half_made_environment(tmp_path, local_index, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    plan = InstallPlan(venv=tmp_path / "venv", backend_source=backend_source(tmp_path, "2.14.1"),
                       base_python=Path(sys.executable))
    lines = []
    with pytest.raises(InstallCancelled):
        install(plan, log=lines.append, cancelled=lambda: any(line.startswith("Installing PyTorch") for line in lines))
    assert any(line.startswith("Creating the backend environment") for line in lines)
    assert not plan.venv.exists() and not (tmp_path / "venv" / MARKER).exists()


def test_the_pins_live_in_one_file(repo_root):
    """backend/constraints.txt holds the one copy of the pins; the installer reads it (no copy in code)."""
    pins = read_pins(repo_root / "backend")
    assert set(pins) >= {"torch", "torchvision"}
    code = (repo_root / "geolink_qgis" / "backend_installer.py").read_text()
    assert not [version for version in pins.values() if version in code]
