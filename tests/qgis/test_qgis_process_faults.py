"""Issue #15's data-safety faults through qgis_process.bin with the packaged plugin: a full disk, a read-only
folder, an output that is the input, an existing output with its sidecars. After each: the input unchanged,
nothing under the output's name unless whole and readable, no partial files, a message and no traceback."""

from __future__ import annotations

import hashlib
from pathlib import Path

from osgeo import gdal

from .conftest import qgis_process
from .geodata import require_task, s2_crop


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(env: dict, alg: str, **params):
    out = qgis_process(env, "run", f"geolink:{alg}", "--", *[f"{k}={v}" for k, v in params.items()])
    return out.returncode, out.stdout + out.stderr


def refused(code: int, text: str, *words: str) -> None:
    assert code != 0, text[-3000:]
    assert "Traceback" not in text and "Internal error" not in text, text[-3000:]
    for w in words:
        assert w in text, text[-3000:]


def no_partials(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if ".partial-" in p.name] == []


def test_disk_full(installed_profile, data_dir, tmp_path, tiny_models, small_disk):
    require_task("classify")
    raster = s2_crop(data_dir, tmp_path / "in.tif", size=160)
    before = digest(raster)
    disk = small_disk("24k")  # above the estimate's lower bound, below what the outputs take
    code, text = run(installed_profile, "classify", INPUT=raster, MODEL=tiny_models["segmentation"],
                     OUTPUT=disk / "o.tif", PROBABILITIES=disk / "p.tif")
    refused(code, text, "is full", str(disk))
    assert list(disk.iterdir()) == [] and digest(raster) == before


def test_read_only_folder(installed_profile, data_dir, tmp_path, tiny_models, small_disk):
    require_task("classify")
    raster = s2_crop(data_dir, tmp_path / "in.tif", size=32)
    disk = small_disk("64k", read_only=True)
    code, text = run(installed_profile, "classify", INPUT=raster, MODEL=tiny_models["segmentation"],
                     OUTPUT=disk / "o.tif")
    refused(code, text, f"the folder {disk} is read-only or write-protected")
    assert list(disk.iterdir()) == []


def test_output_is_the_input(installed_profile, data_dir, tmp_path, tiny_models):
    require_task("classify")
    raster = s2_crop(data_dir, tmp_path / "in.tif", size=32)
    before = digest(raster)
    code, text = run(installed_profile, "classify", INPUT=raster, MODEL=tiny_models["segmentation"], OUTPUT=raster)
    refused(code, text, "is the input given as “Input raster”", "Choose another file for “Land cover”")
    assert digest(raster) == before
    no_partials(tmp_path)


def test_existing_output_is_replaced_with_its_sidecars(installed_profile, data_dir, tmp_path, tiny_models):
    require_task("embed")
    raster = s2_crop(data_dir, tmp_path / "in.tif", size=32)
    out = tmp_path / "o.tif"
    code, text = run(installed_profile, "classify", INPUT=raster, MODEL=tiny_models["segmentation"], OUTPUT=out)
    assert code == 0 and (tmp_path / "o.qml").exists(), text[-3000:]
    code, text = run(installed_profile, "embed", INPUT=raster, MODEL=tiny_models["encoder"], OUTPUT=out)
    assert code == 0, text[-3000:]
    assert f"Replaced the existing {out} and removed its old o.tif.aux.xml, o.qml." in text
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 64 and ds.GetRasterBand(1).GetCategoryNames() is None
    assert not (tmp_path / "o.qml").exists()
    no_partials(tmp_path)
