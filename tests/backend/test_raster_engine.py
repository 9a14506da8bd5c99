"""The raster engine on real Sentinel-2 crops: windows, blending, streaming, nodata, extent, bands, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from geolink.errors import Cancelled, InputError
from geolink.inference.engine import RowAccumulator, Runtime, run_windows
from geolink.progress import Progress
from geolink.raster.source import Source, parse_band_list, parse_extent
from geolink.raster.windows import WindowPlan, axis_starts, blend_weights

from .raster_helpers import s2_crop, set_nodata_box

torch.set_num_threads(1)


def pixelwise(images, graphs):
    """A per-pixel model (fixed 1x1 convolution): blending windows of it must give back exactly the
    same map as applying it to the whole raster at once."""
    w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.3, 0.3]]).view(2, 3, 1, 1)
    return torch.nn.functional.conv2d(images, w)


def collect(channels, width, height):
    out = np.full((channels, height, width), np.nan, np.float32)
    ok = np.zeros((height, width), bool)
    rows = []

    def sink(row, values, valid):
        rows.append((row, values.shape[1]))
        out[:, row:row + values.shape[1]] = np.where(valid, values, np.nan)
        ok[row:row + values.shape[1]] = valid
    return out, ok, rows, sink


def test_blend_weights_sum_to_one_across_an_overlap():
    w = blend_weights(32, 8)[16]  # a middle row
    assert w.max() == pytest.approx(1.0)
    tiled = np.zeros(56)
    tiled[:32] += w
    tiled[24:] += w
    assert np.allclose(tiled[8:48], 1.0, atol=1e-3)  # across the overlap [24, 32) and both middles


def test_window_starts_cover_the_axis_and_stay_inside():
    assert axis_starts(100, 32, 24) == [0, 24, 48, 68]
    assert axis_starts(20, 32, 24) == [0]  # smaller than a window: one padded window
    assert axis_starts(100, 32, 16, factor=16) == [0, 16, 32, 48, 64, 80]  # padded to 112, multiples of 16
    with pytest.raises(InputError):
        WindowPlan(100, 100, 32, 32)


def test_windows_blend_without_seams_and_match_the_whole_raster(data_dir, tmp_path):
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=150)))
    bands = src.choose_bands(["red", "green", "blue"], None)
    norm = src.normaliser({}, bands)
    plan = WindowPlan(src.width, src.height, 64, 16)
    out, ok, rows, sink = collect(2, src.width, src.height)
    stats = run_windows(src, bands, norm, plan, pixelwise, 2, sink, Runtime("cpu", 3), Progress())
    raw, valid = src.read(bands, 0, 0, src.width, src.height)
    expected = pixelwise(torch.from_numpy(norm(raw))[None], None)[0].numpy()
    assert valid.all() and ok.all()
    assert np.allclose(out, expected, atol=1e-4)
    assert stats.windows == len(plan) == 9 and stats.skipped == 0
    # rows were streamed out in order, in strips no taller than a window
    assert [r for r, _ in rows] == sorted(r for r, _ in rows) and max(n for _, n in rows) <= 64
    assert sum(n for _, n in rows) == src.height


def test_accumulator_holds_one_window_of_rows_whatever_the_height():
    acc = RowAccumulator(4, 64, 1000, 100_000, lambda *a: None)
    assert acc.acc.shape == (4, 64, 1000)


def test_patch_outputs_at_a_coarser_factor(data_dir, tmp_path):
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=100)))  # not a multiple of 16
    bands = [1, 2, 3]
    norm = src.normaliser({}, bands)
    plan = WindowPlan(src.width, src.height, 64, 32, factor=16)

    def pooled(images, graphs):
        return torch.nn.functional.avg_pool2d(images, 16)
    out, ok, _, sink = collect(3, plan.out_width, plan.out_height)
    run_windows(src, bands, norm, plan, pooled, 3, sink, Runtime("cpu", 4), Progress())
    assert out.shape == (3, 7, 7) and ok.all()
    raw, _ = src.read(bands, 0, 0, 96, 96)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(norm(raw))[None], 16)[0].numpy()
    assert np.allclose(out[:, :6, :6], expected, atol=1e-4)


def test_nodata_in_gives_nodata_out_and_all_nodata_windows_are_skipped(data_dir, tmp_path):
    path = s2_crop(data_dir, tmp_path / "s2.tif", size=128)
    set_nodata_box(path, 0, 0, 64, 128)  # the left half is nodata
    src = Source(str(path))
    norm = src.normaliser({}, [1, 2, 3])
    plan = WindowPlan(src.width, src.height, 32, 0)
    calls = []

    def model(images, graphs):
        calls.append(len(images))
        return pixelwise(images, graphs)
    out, ok, _, sink = collect(2, 128, 128)
    stats = run_windows(src, [1, 2, 3], norm, plan, model, 2, sink, Runtime("cpu", 4), Progress())
    assert not ok[:, :64].any() and ok[:, 64:].all()
    assert stats.skipped == 8 and sum(calls) == 8


def test_raster_smaller_than_a_window_is_padded(data_dir, tmp_path):
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=40)))
    norm = src.normaliser({}, [1, 2, 3])
    plan = WindowPlan(src.width, src.height, 64, 16)
    out, ok, _, sink = collect(2, 40, 40)
    run_windows(src, [1, 2, 3], norm, plan, pixelwise, 2, sink, Runtime("cpu", 2), Progress())
    assert len(plan) == 1 and ok.all() and np.isfinite(out).all()


def test_cancel_between_batches(data_dir, tmp_path):
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=160)))
    norm = src.normaliser({}, [1, 2, 3])
    plan = WindowPlan(src.width, src.height, 32, 0)
    cancel = threading.Event()
    batches = []

    def model(images, graphs):
        batches.append(len(images))
        if len(batches) == 2:
            cancel.set()
        return pixelwise(images, graphs)
    with pytest.raises(Cancelled):
        run_windows(src, [1, 2, 3], norm, plan, model, 2, lambda *a: None, Runtime("cpu", 4),
                    Progress(cancel=cancel))
    assert len(batches) == 2


def test_extent_cuts_on_the_pixel_grid_and_gsd_resamples(data_dir, tmp_path):
    path = s2_crop(data_dir, tmp_path / "s2.tif", size=100)
    full = Source(str(path))
    x0, _, _, y0 = full.bounds[0], None, None, full.bounds[3]
    cut = Source(str(path), extent=parse_extent(f"{x0 + 95},{y0 - 403},{x0 + 301},{y0 - 200} [EPSG:32618]"))
    assert (cut.width, cut.height) == (22, 21) and cut.geotransform[0] == x0 + 90
    coarse = Source(str(path), gsd=20.0)
    assert (coarse.width, coarse.height, coarse.pixel_size) == (50, 50, 20.0)
    assert coarse.resampled_from() == 10.0
    with pytest.raises(InputError, match="does not overlap"):
        Source(str(path), extent=(0, 0, 10, 10))


def test_band_mapping_and_mismatches(data_dir, tmp_path):
    src = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", size=32)))
    assert src.choose_bands(["red", "green", "blue"], parse_band_list("3,2,1")) == [3, 2, 1]
    assert src.choose_bands(["red", "green", "blue", "nir"], None) == [1, 2, 3, 4]
    with pytest.raises(InputError, match="model takes 5"):
        src.choose_bands(list("abcde"), None)
    with pytest.raises(InputError, match="band 7"):
        src.choose_bands(["red", "green", "blue"], [7, 2, 1])
    with pytest.raises(InputError):
        parse_band_list("4,x")


def test_out_of_memory_halves_the_batch_and_retries():
    sizes = []

    def hungry(images, graphs):
        sizes.append(len(images))
        if len(images) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (raised by the test model)")
        return images[:, :1] * 2
    warnings = []
    runtime = Runtime("cpu", 8, Progress(lambda e: warnings.append(e)))
    images = np.arange(8 * 3 * 4 * 4, dtype=np.float32).reshape(8, 3, 4, 4)
    out = runtime.run(hungry, images, None)
    assert np.allclose(out, images[:, :1] * 2)
    assert sizes[:3] == [8, 4, 2] and runtime.chunk == 2
    assert any("Out of memory" in e.get("message", "") for e in warnings)


def test_gsd_in_metres_on_a_geographic_raster(data_dir, tmp_path):
    from osgeo import gdal

    utm = s2_crop(data_dir, tmp_path / "s2.tif", size=100)
    geo = tmp_path / "geo.tif"
    gdal.Warp(str(geo), str(utm), dstSRS="EPSG:4326")
    src = Source(str(geo), gsd=20.0)
    lat = (src.bounds[1] + src.bounds[3]) / 2
    assert src.pixel_size == pytest.approx(20.0 / (111_320 * np.cos(np.radians(lat))), rel=1e-6)
    assert 45 <= src.width <= 60  # 1 km wide at 20 m
    assert -src.geotransform[5] == pytest.approx(20.0 / 111_320, rel=1e-6)  # square on the ground
    assert 45 <= src.height <= 60  # 1 km tall at 20 m


def test_a_trained_stretch_holds_for_its_data_type_only(data_dir, tmp_path):
    s2 = Source(str(s2_crop(data_dir, tmp_path / "s2.tif", 0, 0, 64)))  # UInt16 reflectance
    aerial = Source(str(data_dir / "OSBS_029.tif"))  # 8-bit RGB
    card = {"normalisation": {"scale": 255.0, "mean": 0.0, "std": 1.0, "low": [400, 600, 900],
                              "high": [1400, 1300, 1500], "low_high_dtype": "UInt16"}}
    spec = card["normalisation"]
    assert s2.dtype_name([1, 2, 3]) == "UInt16" and aerial.dtype_name([1, 2, 3]) == "Byte"
    fitted = s2.normaliser(spec, [1, 2, 3])
    assert fitted.low.tolist() == [400, 600, 900] and fitted.high.tolist() == [1400, 1300, 1500]
    byte = aerial.normaliser(spec, [1, 2, 3])  # not the UInt16 stretch, which would clip every 8-bit pixel to 0
    assert byte.low.tolist() == [0, 0, 0] and byte.high.tolist() == [255, 255, 255]
