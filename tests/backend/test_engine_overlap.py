"""The engine's reader and writer threads (inference/overlap.py) on real rasters: the same outputs as the serial
engine, bit for bit, batches made ahead in bounded numbers and in order, errors of either thread raised as
they were, no thread left behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from osgeo import gdal

from geolink.errors import InputError
from geolink.inference import engine
from geolink.inference.engine import Runtime, run_windows
from geolink.progress import Progress
from geolink.raster.source import Source
from geolink.raster.windows import WindowPlan
from geolink.tasks import classify, embed

from .raster_helpers import osm_geojson, s2_crop, set_nodata_box
from .tiny_models import make_package

torch.set_num_threads(1)


def ours() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("geolink-")]


def pixelwise(images, graphs):
    w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.3, 0.3]]).view(2, 3, 1, 1)
    return torch.nn.functional.conv2d(images, w)


def engine_run(data_dir, tmp_path, ahead: int, monkeypatch, **kw) -> tuple:
    """run_windows over a real crop (some nodata) with recording normaliser, model and sink."""
    monkeypatch.setattr(engine.Runtime, "ahead", ahead)
    tmp_path.mkdir()
    path = s2_crop(data_dir, tmp_path / "s2.tif", size=150)
    set_nodata_box(path, 0, 0, 40, 40)
    src = Source(str(path))
    norm = src.normaliser({}, [1, 2, 3])
    log = {"prepared": 0, "ran": 0, "ahead": 0, "threads": set(), "rows": []}
    out = np.zeros((2, src.height, src.width), np.float32)

    def normalise(raw):
        log["prepared"] += 1
        log["threads"].add(("read", threading.current_thread().name))
        return norm(raw)

    def model(images, graphs):
        log["ran"] += 1
        log["ahead"] = max(log["ahead"], log["prepared"] - log["ran"])
        return pixelwise(images, graphs)

    def sink(row, values, valid):
        log["threads"].add(("write", threading.current_thread().name))
        log["rows"].append(row)
        out[:, row:row + values.shape[1]] = np.where(valid, values, -1)
    plan = WindowPlan(src.width, src.height, 32, 8)
    stats = run_windows(src, [1, 2, 3], normalise, plan, kw.get("model", model), 2, kw.get("sink", sink),
                        Runtime("cpu", 3), Progress(), kw.get("graph_for"))
    return out, log, stats


def test_threads_give_the_serial_outputs_in_order_a_bounded_number_ahead(data_dir, tmp_path, monkeypatch):
    serial, slog, sstats = engine_run(data_dir, tmp_path / "a", 0, monkeypatch)
    threaded, tlog, tstats = engine_run(data_dir, tmp_path / "b", 1, monkeypatch)
    assert np.array_equal(threaded, serial) and (serial[:, 60:, 60:] != -1).all()
    assert (tstats.windows, tstats.skipped) == (sstats.windows, sstats.skipped) and tstats.skipped > 0
    assert tlog["rows"] == slog["rows"] == sorted(slog["rows"])
    main = threading.current_thread().name
    assert slog["threads"] == {("read", main), ("write", main)}
    assert tlog["threads"] == {("read", "geolink-read"), ("write", "geolink-write")}
    assert tlog["ran"] == slog["ran"] > 10 and tlog["ahead"] <= 2  # one batch queued, one being made
    assert ours() == []


def test_errors_in_the_reader_or_the_writer_are_raised_as_they_were(data_dir, tmp_path, monkeypatch):
    calls = []

    def graph_for(bounds):
        calls.append(bounds)
        if len(calls) == 7:
            raise InputError("An OSM graph has an edge to a node it does not have.")
        return None
    with pytest.raises(InputError, match="edge to a node"):
        engine_run(data_dir, tmp_path / "a", 1, monkeypatch, graph_for=graph_for)
    assert ours() == []

    written = []

    def full_disk(row, values, valid):
        written.append(row)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space left"):
        engine_run(data_dir, tmp_path / "b", 1, monkeypatch, sink=full_disk)
    assert len(written) == 2  # nothing written after the failed call
    assert ours() == []


def test_classify_and_embed_with_osm_are_bit_identical_to_the_serial_engine(data_dir, tmp_path, monkeypatch):
    model = make_package(tmp_path / "lc.safetensors", ["water", "vegetation", "built-up"])
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=128)
    set_nodata_box(raster, 100, 0, 28, 50)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [
        ("highway:residential", [(0, 10), (128, 40)]), ("building:yes", [(5, 5), (9, 5), (9, 9), (5, 9), (5, 5)]),
        ("amenity:school", [(70, 90)]), ("waterway:river", [(20, 128), (60, 70), (128, 60)])])
    arrays, figures = {}, {}
    for ahead in (0, 1):
        monkeypatch.setattr(engine.Runtime, "ahead", ahead)
        out = tmp_path / str(ahead)
        out.mkdir()
        figures[ahead] = classify.run(classify.Config(raster=str(raster), model=str(model), out=str(out / "c.tif"),
                                                      probabilities=str(out / "p.tif"), osm=[str(osm)], device="cpu"),
                                      Progress())["figures"]
        embed.run(embed.Config(raster=str(raster), model=str(model), out=str(out / "e.tif"), osm=[str(osm)],
                               device="cpu"), Progress())
        arrays[ahead] = [gdal.Open(str(out / name)).ReadAsArray() for name in ("c.tif", "p.tif", "e.tif", "e_pca.tif")]
    assert 0 < figures[1]["windows_with_osm"] == figures[0]["windows_with_osm"] < figures[1]["windows"]
    assert figures[1]["class_shares"] == figures[0]["class_shares"]
    for threaded, serial in zip(arrays[1], arrays[0]):
        assert threaded.tobytes() == serial.tobytes()
    assert ours() == []
