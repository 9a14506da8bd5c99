"""`geolink batch`: real crops of the Sentinel-2 scene (and the paper's NAIP samples) through the local process
pool and through a real two-node Ray cluster on loopback, outputs compared with single-raster runs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from geolink.errors import Cancelled, InputError
from geolink.progress import Progress
from geolink.tasks import batch, classify

from .raster_helpers import partials, s2_crop
from .tiny_models import make_package

HAS_RAY = importlib.util.find_spec("ray") is not None
TIME_STAMPS = {"GEOLINK_CREATED"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "tiny-batch.safetensors", ["water", "green", "built"])


def crops(data_dir: Path, folder: Path, n: int, size: int = 64) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    return [s2_crop(data_dir, folder / f"s2_{i}.tif", col=300 + 150 * i, row=900, size=size) for i in range(n)]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geolink.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def single(model: Path, raster: Path, out: Path, **options) -> Path:
    classify.run(classify.Config(raster=str(raster), out=str(out), model=str(model), device="cpu", **options),
                 Progress())
    return out


def assert_same_output(a: Path, b: Path) -> None:
    """Pixels, colour table, class names and metadata (but the time stamp) equal; the QGIS styles equal."""
    da, db = gdal.Open(str(a)), gdal.Open(str(b))
    assert da.RasterCount == db.RasterCount and da.GetGeoTransform() == db.GetGeoTransform()
    for k in range(1, da.RasterCount + 1):
        ba, bb = da.GetRasterBand(k), db.GetRasterBand(k)
        np.testing.assert_array_equal(ba.ReadAsArray(), bb.ReadAsArray())
        assert ba.GetCategoryNames() == bb.GetCategoryNames()
        ta, tb = ba.GetColorTable(), bb.GetColorTable()
        assert (ta is None) == (tb is None)
        if ta is not None:
            assert [ta.GetColorEntry(i) for i in range(ta.GetCount())] == \
                   [tb.GetColorEntry(i) for i in range(tb.GetCount())]
    meta_a = {k: v for k, v in da.GetMetadata().items() if k not in TIME_STAMPS}
    meta_b = {k: v for k, v in db.GetMetadata().items() if k not in TIME_STAMPS}
    assert meta_a == meta_b and "GEOLINK_MODEL_SHA256" in meta_a
    assert a.with_suffix(".qml").read_text() == b.with_suffix(".qml").read_text()


def report(out_dir: Path) -> dict:
    return json.loads((out_dir / "batch-report.json").read_text())


def test_local_batch_equals_single_runs_reports_a_damaged_raster_and_builds_a_mosaic(model, data_dir, tmp_path):
    rasters = crops(data_dir, tmp_path / "in", 3)
    damaged = tmp_path / "in" / "damaged.tif"
    damaged.write_bytes(rasters[0].read_bytes()[:3000])
    out = tmp_path / "out"
    res = cli("--quiet", "batch", "classify", "--rasters", str(tmp_path / "in" / "*.tif"), "--out-dir", str(out),
              "--model", str(model), "--device", "cpu", "--workers", "2")
    assert res.returncode == 1, res.stderr  # a script learns the batch is not whole; the other outputs stay
    assert "3 done, 0 skipped, 1 failed" in res.stdout
    assert "error: 1 of 4 rasters failed (their errors are in" in res.stderr and "again redoes only those" in res.stderr
    assert "damaged.tif failed" in res.stderr and "Traceback" not in res.stderr
    rep = report(out)
    assert (rep["done"], rep["failed"], rep["workers"]) == (3, 1, 2)
    bad = next(i for i in rep["items"] if i["raster"].endswith("damaged.tif"))
    assert bad["status"] == "failed" and "damaged.tif" in bad["error"] and not (out / "damaged.tif").exists()
    for raster in rasters:
        assert_same_output(out / raster.name, single(model, raster, tmp_path / "single" / raster.name))
    mosaic = gdal.Open(str(out / "mosaic.vrt"))
    first = gdal.Open(str(out / "s2_0.tif"))
    assert mosaic.RasterXSize == 64 + 2 * 150 and mosaic.RasterYSize == 64
    np.testing.assert_array_equal(mosaic.GetRasterBand(1).ReadAsArray(0, 0, 64, 64),
                                  first.GetRasterBand(1).ReadAsArray())
    assert (out / "mosaic.qml").read_text() == (out / "s2_0.qml").read_text()
    assert partials(out) == []


def test_a_rerun_skips_up_to_date_outputs_and_redoes_changed_ones(model, data_dir, tmp_path):
    rasters = crops(data_dir, tmp_path / "in", 2)
    config = batch.Config(task="classify", rasters=[str(r) for r in rasters], out_dir=str(tmp_path / "out"),
                          options={"model": str(model), "device": "cpu"})
    first = batch.run(config, Progress())["figures"]
    assert (first["done"], first["skipped"]) == (2, 0)
    again = batch.run(config, Progress())["figures"]
    assert (again["done"], again["skipped"]) == (0, 2)
    os.utime(rasters[1], ns=(time.time_ns(), time.time_ns() + 10**9))  # the input changed: its output is redone
    changed = batch.run(config, Progress())["figures"]
    assert (changed["done"], changed["skipped"]) == (1, 1)
    other = batch.Config(**{**vars(config), "options": {**config.options, "overlap": 8}})
    assert batch.run(other, Progress())["figures"]["done"] == 2  # other options: other outputs
    forced = batch.Config(**{**vars(config), "force": True})
    assert batch.run(forced, Progress())["figures"]["done"] == 2


def test_bad_batches_are_refused_before_any_work(model, data_dir, tmp_path):
    rasters = crops(data_dir, tmp_path / "in", 1)
    base = {"task": "classify", "rasters": [str(rasters[0])], "options": {"model": str(model)}}
    with pytest.raises(InputError, match="would replace the input raster"):
        batch.run(batch.Config(**base, out_dir=str(tmp_path / "in")), Progress())
    with pytest.raises(InputError, match="probabilities cannot be set for a batch"):
        batch.run(batch.Config(**{**base, "options": {"probabilities": "p.tif"}}, out_dir=str(tmp_path / "o")),
                  Progress())
    twin = tmp_path / "elsewhere" / "s2_0.tif"
    twin.parent.mkdir()
    twin.write_bytes(rasters[0].read_bytes())
    with pytest.raises(InputError, match="same output s2_0.tif"):
        batch.run(batch.Config(**{**base, "rasters": [str(rasters[0]), str(twin)]}, out_dir=str(tmp_path / "o")),
                  Progress())
    with pytest.raises(InputError, match="No raster file matches"):
        batch.run(batch.Config(**{**base, "rasters": [str(tmp_path / "none" / "*.tif")]},
                               out_dir=str(tmp_path / "o")), Progress())
    res = cli("batch", "classify", "--rasters", str(rasters[0]), "--out-dir", str(tmp_path / "o"),
              "--batch-size", "lots")
    assert res.returncode == 2 and "invalid int value" in res.stderr


def test_cancel_stops_the_workers_and_leaves_no_partial_output(model, data_dir, tmp_path):
    rasters = crops(data_dir, tmp_path / "in", 4)
    cancel = threading.Event()

    def sink(event):
        if event.get("event") == "progress" and event.get("message", "").startswith("1/"):
            cancel.set()

    out = tmp_path / "out"
    config = batch.Config(task="classify", rasters=[str(r) for r in rasters], out_dir=str(out), workers=2,
                          options={"model": str(model), "device": "cpu"})
    with pytest.raises(Cancelled):
        batch.run(config, Progress(sink, cancel))
    assert partials(out) == []
    items = report(out)["items"]
    assert sum(i["status"] == "done" for i in items) >= 1 and any(i["status"] == "pending" for i in items)
    for item in items:  # what is done is there, and what is there is whole
        assert Path(item["output"]).exists() or item["status"] != "done"
        if Path(item["output"]).exists():
            assert gdal.Open(item["output"]).GetRasterBand(1).Checksum() >= 0


def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, data_dir):
    raster = crops(data_dir, tmp_path / "in", 1)[0]
    code = ("import sys; sys.modules['ray'] = None; from geolink.cli import main; "
            f"sys.exit(main(['batch', 'classify', '--rasters', {str(raster)!r}, '--out-dir', {str(tmp_path)!r}, "
            "'--engine', 'ray']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "pip install 'geolink[cluster]'" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def ray_cluster():
    """A head and a second node joined on loopback, 1 CPU each, inside a network namespace of the test's own that
    has only the loopback interface (so Ray, which prefers a routable address, stays on 127.0.0.1).
    Yields the command prefix that enters the namespace, the cluster address, the second node's process and the
    environment with the cluster's token."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install 'geolink[cluster]')")
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("a network namespace for the test cluster needs root and iproute2's ip")
    ns = f"geolink-ray-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    enter = ["ip", "netns", "exec", ns]
    ray = str(Path(sys.executable).with_name("ray"))
    address = "127.0.0.1:6379"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    nodes: list = []
    try:
        subprocess.run([*enter, "ip", "link", "set", "lo", "up"], check=True)
        # Both nodes in the foreground (--block) in process groups of their own: stopping the test cluster
        # kills those groups, never another Ray on the machine (`ray stop` would stop every Ray here).
        for args in (["--head", "--port", "6379", "--include-dashboard", "false", "--temp-dir", temp],
                     ["--address", address]):
            nodes.append(subprocess.Popen([*enter, ray, "start", *args, "--num-cpus", "1", "--block",
                                           "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
            deadline = time.monotonic() + 180
            while alive_nodes(enter, address, env) < len(nodes):
                assert all(n.poll() is None for n in nodes), "a Ray node did not start"
                assert time.monotonic() < deadline, f"Ray node {len(nodes)} did not join within 180 s"
                time.sleep(2)
        yield enter, address, nodes[1], env
    finally:
        for node in nodes:
            kill_group(node)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a Ray node at once: its `ray start` and every process under it (the raylet and its workers, which
    may sit in sessions of their own and would otherwise outlive it for a while)."""
    import psutil

    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def writing_on(node: subprocess.Popen, out: Path) -> bool:
    """Whether a process of this Ray node has an output half-written in `out` (its pid is in the partial name)."""
    import psutil

    from geolink.atomic import PARTIAL_RE

    try:
        pids = {p.pid for p in psutil.Process(node.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return False
    found = (PARTIAL_RE.search(p.name) for p in out.glob("*")) if out.is_dir() else ()
    return any(m and int(m.group(1)) in pids for m in found)


def alive_nodes(enter: list, address: str, env: dict) -> int:
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    try:
        out = subprocess.run([*enter, sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env=env).stdout
    except subprocess.TimeoutExpired:  # the head is not answering yet
        return 0
    return int(out.strip().splitlines()[-1]) if out.strip() else 0


def naip_rasters(shared: Path, folder: Path) -> tuple:
    """The paper's two US NAIP samples as GeoTIFFs (EPSG:4326, from their bbox) and all their OSM files."""
    from geolink.pretraining.safe_pickle import read_bbox

    rasters, osm = [], []
    for name in ("a702502933_US_21", "w221548378_US_21"):
        sample = shared / "geolink-examples" / "osm2graph_example" / name
        west, south, east, north = read_bbox(sample / f"{name}.pickle")
        raster = folder / f"naip_{name}.tif"
        gdal.Translate(str(raster), str(sample / f"{name}.jpg"), outputSRS="EPSG:4326",
                       outputBounds=[west, north, east, south])
        rasters.append(raster)
        osm += sorted(sample.glob("*.geojson"))
    return rasters, osm


@pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install 'geolink[cluster]')")
def test_a_two_node_ray_cluster_survives_losing_a_node(model, data_dir, shared_dir, tmp_path, ray_cluster):
    enter, address, node, env = ray_cluster
    folder = tmp_path / "in"
    rasters = crops(data_dir, folder, 6, size=320)  # several windows each: a node is seen mid-write
    naip, osm = naip_rasters(shared_dir, folder)
    rasters += naip
    out = tmp_path / "out"
    args = [*enter, sys.executable, "-m", "geolink.cli", "--quiet", "batch", "classify",
            "--rasters", *map(str, rasters), "--out-dir", str(out), "--engine", "ray", "--ray-address", address,
            "--workers", "2",
            "--model", str(model), "--device", "cpu", "--osm", *map(str, osm)]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while not writing_on(node, out):  # whenever the second node's worker starts (a busy machine delays it)
        assert run.poll() is None, run.communicate()
        time.sleep(0.01)
    kill_group(node)  # the second node dies mid-run, while its worker is writing a raster
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    rep = report(out)
    assert (rep["done"], rep["failed"]) == (8, 0), rep
    assert max(i["attempts"] for i in rep["items"]) >= 2  # the lost node's raster was redone on the head
    assert "retrying it elsewhere" in stderr
    for raster in rasters:
        assert_same_output(out / raster.name,
                           single(model, raster, tmp_path / "single" / raster.name, osm=[str(p) for p in osm]))
    assert not (out / "mosaic.vrt").exists()  # UTM and EPSG:4326 outputs cannot share one VRT
    assert "do not share one CRS" in stderr
