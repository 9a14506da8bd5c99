"""Hostile inputs and faults through the `geolink` CLI (issue #15): a full disk, a read-only folder, an output
that is an input, an existing output, a killed run's partial files, garbled and out-of-range inputs, runaway
jobs and cancel. After each: the input unchanged, nothing under the output's name unless whole and readable,
no partial files, one plain message and no traceback."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from osgeo import gdal, ogr

from geolink.cli import main
from geolink.worker import run_job

from .finetune_helpers import box, write_polygons
from .raster_helpers import osm_geojson, partials, s2_crop
from .tiny_models import make_package

CLASSES = ["water", "vegetation", "built-up"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "lc.safetensors", CLASSES)


def geolink(capsys, *args) -> tuple:
    """(exit status, stderr, stdout) of the CLI run in this process."""
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.err, captured.out


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(status: int, err: str, *words: str) -> None:
    """One plain error (exit 1) holding `words`, no traceback."""
    assert status == 1, err
    assert "Traceback" not in err and err.count("error: ") == 1, err
    for w in words:
        assert w in err, err


def whole_or_absent(*paths: Path) -> None:
    """Each output is absent, or opens and reads in full; no partial file beside it."""
    for path in paths:
        if path.suffix == ".gpkg" and path.exists():
            ds = ogr.Open(str(path))
            assert ds is not None and ds.GetLayerByName("zones").GetFeatureCount() > 0
        elif path.exists():
            ds = gdal.Open(str(path))
            for b in range(1, ds.RasterCount + 1):
                ds.GetRasterBand(b).Checksum()
        assert partials(path.parent) == []


def test_disk_full_while_writing_rasters_leaves_the_old_outputs(model, data_dir, tmp_path, capsys, small_disk):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=160)
    before = digest(raster)
    disk = small_disk("512k")
    out, prob = disk / "o.tif", disk / "p.tif"
    status, err, _ = geolink(capsys, "--quiet", "classify", "--raster", raster, "--model", model, "--out", out,
                             "--probabilities", prob, "--device", "cpu")
    assert status == 0, err
    old = {p.name: digest(p) for p in disk.iterdir()}
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(os.urandom(free - 24 * 1024))  # 24 KB left: above the estimate, below the need
    status, err, _ = geolink(capsys, "--quiet", "classify", "--raster", raster, "--model", model, "--out", out,
                             "--probabilities", prob, "--device", "cpu")
    refused(status, err, "is full", str(disk))
    assert {p.name: digest(p) for p in disk.iterdir() if p.name != "filler"} == old  # the old set, untouched
    assert digest(raster) == before
    whole_or_absent(out, prob)


def test_disk_full_while_writing_zones(model, data_dir, tmp_path, capsys, small_disk):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("highway:primary", [(-5, 30), (70, 34)]),
                                                         ("highway:residential", [(30, -5), (28, 70)])])
    disk = small_disk("48k")  # a GeoPackage alone takes about 100 KB
    status, err, out = geolink(capsys, "--quiet", "zones", "--raster", raster, "--osm", osm, "--model", model,
                               "--out", disk / "z.gpkg", "--device", "cpu")
    refused(status, err, "is full", "z.gpkg")
    assert "zones ->" not in out and sorted(os.listdir(disk)) == []


def test_output_that_is_an_input_is_refused(model, data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    before = digest(raster)
    os.link(raster, tmp_path / "hardlink.tif")
    for task, flag, target in (("classify", "--out", raster), ("classify", "--out", tmp_path / "hardlink.tif"),
                               ("classify", "--out", tmp_path / "." / ".." / tmp_path.name / "s2.tif"),
                               ("classify", "--probabilities", raster), ("embed", "--preview", raster)):
        args = ["--out", tmp_path / "o.tif", flag, target] if flag != "--out" else ["--out", target]
        status, err, _ = geolink(capsys, task, "--raster", raster, "--model", model, *args)
        refused(status, err, "is the input given as --raster", f"another file for {flag}")
    emitted = []
    job = {"task": "classify", "config": {"raster": str(raster), "model": str(model), "out": str(raster)}}
    assert run_job(job, emitted.append, threading.Event()) == 1
    assert emitted[-1]["type"] == "InputError" and emitted[-1]["option"] == "out"
    assert digest(raster) == before and not (tmp_path / "o.tif").exists() and partials(tmp_path) == []


def test_existing_output_is_replaced_with_its_sidecars_as_one_unit(model, data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=48)
    out = tmp_path / "o.tif"
    status, err, _ = geolink(capsys, "--quiet", "classify", "--raster", raster, "--model", model, "--out", out,
                             "--device", "cpu")
    assert status == 0 and (tmp_path / "o.qml").exists() and (tmp_path / "o.tif.aux.xml").exists(), err
    encoder = make_package(tmp_path / "enc.safetensors", None)
    status, err, stdout = geolink(capsys, "embed", "--raster", raster, "--model", encoder, "--out", out,
                                  "--device", "cpu")
    assert status == 0, err
    assert f"Replaced the existing {out} and removed its old o.tif.aux.xml, o.qml." in err
    assert "(replaced the existing files)" in stdout
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 64 and ds.GetRasterBand(1).GetCategoryNames() is None
    assert not (tmp_path / "o.qml").exists()  # the land-cover style would misrender the features
    assert not (tmp_path / "o.tif.aux.xml").exists() or "water" not in (tmp_path / "o.tif.aux.xml").read_text()
    whole_or_absent(out, tmp_path / "o_pca.tif")


def test_partials_of_a_killed_run_are_removed_by_the_next_run(model, data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", col=0, row=0, size=1900)  # ~6,000 windows: seconds to kill in
    outdir = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "geolink.cli", "--quiet", "classify", "--raster", str(raster),
                            "--model", str(model), "--out", str(outdir / "o.tif"), "--device", "cpu"],
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # the output's partial (not the folder's write probe, .geolink.partial-<pid>-probe, gone at once)
    while not (outdir.exists() and any(n.startswith("o.partial-") for n in partials(outdir))) \
            and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    assert run.poll() is None, "the run ended before its partial file was seen"
    run.send_signal(signal.SIGKILL)
    run.communicate()
    left = partials(outdir)
    assert left and all(f".partial-{run.pid}-" in name for name in left)
    mine = outdir / f"other.partial-{os.getpid()}-0.tif"  # a live process's partial file stays
    mine.write_bytes(b"being written")
    small = s2_crop(data_dir, tmp_path / "small.tif", size=32)
    status, err, _ = geolink(capsys, "classify", "--raster", small, "--model", model, "--out", outdir / "o.tif",
                             "--device", "cpu")
    assert status == 0 and f"partial file(s) left in {outdir} by a stopped run: {left[0]}" in err, err
    assert partials(outdir) == [mine.name]
    mine.unlink()
    whole_or_absent(outdir / "o.tif")


def test_read_only_folder(model, data_dir, tmp_path, capsys, small_disk):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    disk = small_disk("64k", read_only=True)
    status, err, _ = geolink(capsys, "classify", "--raster", raster, "--model", model, "--out", disk / "o.tif")
    refused(status, err, f"the folder {disk} is read-only or write-protected", "Choose an output folder")
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("highway:primary", [(0, 3), (30, 4)])])
    status, err, _ = geolink(capsys, "osm-graph", "--osm", osm, "--bounds=-180,-85,180,85",
                             "--out", disk / "sub" / "g.pt")
    refused(status, err, "read-only or write-protected")
    assert os.listdir(disk) == []


def test_garbled_tiff_header(model, data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    data = bytearray(raster.read_bytes())
    data[4:16] = b"\xff" * 12
    garbled = tmp_path / "garbled.tif"
    garbled.write_bytes(bytes(data))
    status, err, _ = geolink(capsys, "classify", "--raster", garbled, "--model", model, "--out", tmp_path / "o.tif")
    refused(status, err, "Cannot read the raster garbled.tif", "damaged")
    assert garbled.read_bytes() == bytes(data) and not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("task,args,words", [
    ("classify", ["--batch-size", "-3"], ["--batch-size must be from 0 to 4096, got -3"]),
    ("classify", ["--gsd", "-10"], ["--gsd must be 0 or more, got -10"]),
    ("classify", ["--gsd", "nan"], ["--gsd must be a finite number, got nan"]),
    ("classify", ["--gsd", "100000"], ["--gsd 100000 m is coarser than the raster", "below 320 m"]),
    ("classify", ["--gsd", "0.006"], ["This is a large job", "more than 2 gigapixels", "--yes"]),
    ("embed", ["--layer", "99"], ["--layer 99 is past the model's last block", "numbered 1 to 2"]),
])
def test_out_of_range_options(model, data_dir, tmp_path, capsys, task, args, words):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    status, err, _ = geolink(capsys, task, "--raster", raster, "--model", model, "--out", tmp_path / "o.tif",
                             "--device", "cpu", *args)
    refused(status, err, *words)
    assert os.listdir(tmp_path) == ["s2.tif"]


def test_worker_job_with_nan_gsd(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    job = json.loads(json.dumps({"task": "classify", "config": {"raster": str(raster), "model": str(model),
                                                                 "out": str(tmp_path / "o.tif"), "gsd": math.nan}}))
    emitted = []
    assert run_job(job, emitted.append, threading.Event()) == 1
    assert emitted[-1]["message"] == "--gsd must be a finite number, got nan." and emitted[-1]["option"] == "gsd"


def test_runaway_raster_asks_for_yes_and_refuses_what_cannot_fit(model, data_dir, tmp_path, capsys, small_disk):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    huge = tmp_path / "huge.vrt"
    gdal.Translate(str(huge), str(raster), format="VRT", width=100_000, height=100_000)
    status, err, _ = geolink(capsys, "classify", "--raster", huge, "--model", model, "--out", tmp_path / "o.tif",
                             "--device", "cpu")
    refused(status, err, "This is a large job", "100,000 x 100,000 px", "Run it again with --yes")
    disk = small_disk("1m")
    status, err, _ = geolink(capsys, "classify", "--raster", huge, "--model", model, "--out", disk / "o.tif",
                             "--device", "cpu", "--yes")
    refused(status, err, "need about 1.0 GB but the disk holding", "free")
    assert os.listdir(disk) == [] and not (tmp_path / "o.tif").exists()


def default_sigint() -> None:
    """Ctrl-C's default action in the child: a shell that started this suite in the background (`cmd &`) hands
    its children SIGINT ignored, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cancel_takes_effect_within_2s_on_a_wide_raster(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    gt = gdal.Open(str(raster)).GetGeoTransform()
    extent = f"{gt[0]},{gt[3] - 50},{gt[0] + 640},{gt[3]}"  # at 5 mm: rows of windows 128,000 px wide
    run = subprocess.Popen([sys.executable, "-m", "geolink.cli", "classify", "--raster", str(raster), "--model",
                            str(model), "--out", str(tmp_path / "o.tif"), "--device", "cpu", "--gsd", "0.005",
                            "--extent", extent, "--yes"], stderr=subprocess.PIPE, preexec_fn=default_sigint)
    seen = {}

    def read():
        text = b""
        for chunk in iter(lambda: run.stderr.read1(4096), b""):
            text += chunk
            if b"Classifying, batch 2/" in text and "started" not in seen:
                seen["started"] = time.monotonic()
            if b"Cancelled." in text and "cancelled" not in seen:
                seen["cancelled"] = time.monotonic()
        seen["text"] = text.decode(errors="replace")
    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while "started" not in seen and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert "started" in seen, seen
        sent = time.monotonic()
        run.send_signal(signal.SIGINT)
        assert run.wait(60) == 130
    finally:
        run.kill()  # no classify left running for hours after a failure
        reader.join()
    assert seen["cancelled"] - sent < 2.0, seen["text"][-2000:]
    assert "Traceback" not in seen["text"] and not (tmp_path / "o.tif").exists() and partials(tmp_path) == []


def test_untrusted_checkpoint_in_a_pretraining_folder(data_dir, tmp_path, capsys):
    import torch

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    out = tmp_path / "pretrain"
    out.mkdir()
    torch.save({"model": Payload()}, out / "checkpoint.pt")
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    status, err, _ = geolink(capsys, "--quiet", "pretrain", "--out", out, "--raster", raster, "--tile-size", "32",
                             "--image-size", "32", "--steps", "1", "--batch-size", "2", "--device", "cpu")
    refused(status, err, f"The pretraining checkpoint {out / 'checkpoint.pt'} cannot be read safely, so it was not",
            "posix.system", "delete it")
    assert "weights_only" not in err and "trusted source" not in err
    assert not (tmp_path / "ran").exists() and (out / "checkpoint.pt").exists()


def test_float_class_field_with_one_value_per_polygon(data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)  # UTM 18N, write_polygons' CRS
    gt = gdal.Open(str(raster)).GetGeoTransform()
    x0, y0 = gt[0], gt[3]
    measured = [(1234.5 + i * 17.25, box(x0 + 10 + i * 70, y0 - 10, x0 + 70 + i * 70, y0 - 310))
                for i in range(8)]  # a measurement, different for every polygon
    labels = write_polygons(tmp_path / "labels.gpkg", measured, field_type=ogr.OFTReal, field="area")
    encoder = make_package(tmp_path / "enc.safetensors", None)
    status, err, _ = geolink(capsys, "finetune", "--raster", raster, "--labels", labels, "--class-field", "area",
                             "--model", encoder, "--out", tmp_path / "m.safetensors", "--device", "cpu")
    refused(status, err, "The class field 'area' is a decimal-number field with 8 different values for 8 polygons")
    assert not (tmp_path / "m.safetensors").exists()


def test_osm_beside_the_raster_gives_both_extents(model, data_dir, tmp_path, capsys):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=32)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("highway:primary", [(2000, 2000), (2100, 2010)])])
    status, err, _ = geolink(capsys, "classify", "--raster", raster, "--osm", osm, "--model", model,
                             "--out", tmp_path / "o.tif", "--device", "cpu")
    assert status == 0, err
    warning = next(line for line in err.splitlines() if line.startswith("warning: The OSM files hold no feature"))
    gt = gdal.Open(str(raster)).GetGeoTransform()
    assert f"the raster ({gt[0]:.6g}, " in warning and "they cover (" in warning
    assert "xmin, ymin, xmax, ymax in the raster's CRS" in warning
