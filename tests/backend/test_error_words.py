"""Messages that name options and tasks: one text, said in the CLI's words (flags) by the backend."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from geolink.errors import CommandLineWords, InputError, cmd, opt, parts, render
from geolink.tasks import TASKS, load_task

from .raster_helpers import s2_crop

BACKEND = Path(__file__).resolve().parents[2] / "backend" / "geolink"


def test_markers_split_into_parts_and_render_as_flags():
    text = f"Map bands with {opt('bands')} (e.g. {opt('bands', '1,1,1')}); see {cmd('finetune')}. {{'bbox': 1}}"
    assert parts(text) == [{"text": "Map bands with "}, {"option": "bands"}, {"text": " (e.g. "},
                           {"option": "bands", "value": "1,1,1"}, {"text": "); see "}, {"command": "finetune"},
                           {"text": ". {'bbox': 1}"}]
    assert render(text) == "Map bands with --bands (e.g. --bands 1,1,1); see geolink finetune. {'bbox': 1}"
    assert str(InputError(f"{opt('tile_size')} must be a multiple of 16.")) == "--tile-size must be a multiple of 16."


def test_cli_words_use_each_tasks_declared_flags_and_positionals():
    words = CommandLineWords(load_task("import-checkpoint").Config)
    assert render(f"{opt('src')} and {opt('out', 'x.safetensors')}", words) == "SRC and --out x.safetensors"


def _marker_keys():
    """Every opt('key') / cmd('name') written in the backend's source."""
    options, commands = set(), set()
    for path in BACKEND.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("opt", "cmd") \
                    and node.args and isinstance(node.args[0], ast.Constant):
                (options if node.func.id == "opt" else commands).add((node.args[0].value, path.name))
    return options, commands


def test_every_named_option_and_task_exists():
    import dataclasses

    fields = {f.name for name in TASKS for f in dataclasses.fields(load_task(name).Config)}
    options, commands = _marker_keys()
    assert options and commands
    assert {key for key, _ in options} - fields == set(), "opt() names an option no task has"
    assert {name for name, _ in commands} - set(TASKS) == set(), "cmd() names an unknown task"


def test_worker_sends_parts_and_the_cli_says_flags(data_dir, tmp_path):
    grey = s2_crop(data_dir, tmp_path / "grey.tif", size=64, bands=[1])
    job = {"task": "classify", "config": {"raster": str(grey), "out": str(tmp_path / "out.tif")}}
    proc = subprocess.run([sys.executable, "-m", "geolink.worker"], input=json.dumps(job) + "\n",
                          capture_output=True, text=True, timeout=300)
    error = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 1 and error["event"] == "error"
    assert {"option": "bands", "value": "1,1,1"} in error["hint_parts"]
    assert "--bands 1,1,1" in error["hint"]
    cli = subprocess.run([sys.executable, "-m", "geolink.cli", "--quiet", "classify", "--raster", str(grey),
                          "--out", str(tmp_path / "out.tif")], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1
    assert "hint: Map bands with --bands (e.g. --bands 1,1,1 for a grey image)" in cli.stderr
    assert "{opt:" not in cli.stderr and not (tmp_path / "out.tif").exists()


def test_a_model_in_two_folders_is_listed_once_as_the_one_used(tmp_path, monkeypatch):
    """`geolink doctor` (Check GeoLink backend) listed `default` twice: the plugin's copy and the backend's."""
    import shutil

    from geolink.model_store import SOURCE_MODELS, list_models, resolve_model

    default = SOURCE_MODELS / "default.safetensors"
    if not default.exists():
        pytest.skip("the embedded default model is not in this checkout")
    first = tmp_path / "plugin-models"
    first.mkdir()
    shutil.copy(default, first / "default.safetensors")
    monkeypatch.delenv("GEOLINK_MODEL_DIRS", raising=False)
    listed = [m for m in list_models([str(first)]) if m["name"] == "default"]
    assert [m["path"] for m in listed] == [str(resolve_model("default", [str(first)]))] == [
        str(first / "default.safetensors")]
