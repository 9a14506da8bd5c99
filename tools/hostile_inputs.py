"""Run a list of hostile inputs and faults through the `geolink` CLI and the worker, as a user would, and count
those handled cleanly (issue #15).

    PYTHONPATH=backend .venv/bin/python tools/hostile_inputs.py [--work DIR] [-k WORD]

Clean means: the expected outcome (a refusal with exit 1 and one `error:` line, a success, or a cancel
with exit 130), no traceback, every input byte for byte unchanged, every named output absent or whole
and readable, and no partial file left. Disk-full and read-only cases use small tmpfs mounts (root only;
skipped otherwise). Needs the sample data (`make data`); tiny random models are made on the fly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".cache" / "data"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def readable(path: Path) -> Optional[str]:
    """None when `path` is absent or opens and reads in full, else what is wrong."""
    from osgeo import gdal, ogr

    if not path.exists():
        return None
    gdal.UseExceptions()
    try:
        if path.suffix == ".gpkg":
            ds = ogr.Open(str(path))
            return None if ds is not None and ds.GetLayerCount() else "GeoPackage without layers"
        if path.suffix == ".tif":
            ds = gdal.Open(str(path))
            for b in range(1, ds.RasterCount + 1):
                ds.GetRasterBand(b).Checksum()
        return None
    except RuntimeError as exc:
        return str(exc)


class Mounts:
    """Small tmpfs mounts, undone at the end."""

    def __init__(self, base: Path):
        self.base, self.done = base, []

    def __call__(self, name: str, size: str, read_only: bool = False) -> Optional[Path]:
        if os.name != "posix" or os.geteuid() != 0:
            return None
        folder = self.base / name
        folder.mkdir(parents=True, exist_ok=True)
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if read_only else ""), "tmpfs",
                             str(folder)], capture_output=True).returncode == 0
        if ok:
            self.done.append(folder)
        return folder if ok else None

    def close(self) -> None:
        for folder in reversed(self.done):
            subprocess.run(["umount", str(folder)], capture_output=True)


def cli(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geolink.cli", *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=timeout)


def worker(job: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geolink.worker"], input=json.dumps(job) + "\n",
                          capture_output=True, text=True, timeout=900)


class Case:
    def __init__(self, name: str, run: Callable[[], subprocess.CompletedProcess], expect: str = "refuse",
                 words: tuple = (), inputs: tuple = (), outputs: tuple = (), needs: tuple = ()):
        self.name, self.run, self.expect, self.words = name, run, expect, words
        self.inputs, self.outputs, self.needs = [Path(p) for p in inputs], [Path(p) for p in outputs], needs

    def check(self) -> List[str]:
        if any(n is None for n in self.needs):
            return ["skipped: needs root for a tmpfs"]
        before = {p: digest(p) for p in self.inputs}
        done = self.run()
        text = (done.stdout or "") + (done.stderr or "")
        problems = []
        wanted = {"refuse": 1, "ok": 0, "cancel": 130}[self.expect]
        if done.returncode != wanted:
            problems.append(f"exit {done.returncode}, expected {wanted}")
        if "Traceback" in text or "Internal error" in text:
            problems.append("traceback")
        if self.expect == "refuse" and text.count("error: ") + text.count('"event": "error"') != 1:
            problems.append("not one error message")
        problems += [f"missing words {w!r}" for w in self.words if w not in text]
        problems += [f"input changed: {p.name}" for p, h in before.items() if digest(p) != h]
        problems += [f"output {p.name}: {why}" for p in self.outputs for why in [readable(p)] if why]
        for folder in {p.parent for p in self.outputs}:
            if folder.is_dir():
                problems += [f"partial file {q.name}" for q in folder.iterdir() if ".partial-" in q.name]
        if problems:
            problems.append("output: " + text.strip()[-400:].replace("\n", " | "))
        return problems


def sigint_after_start(args: list, marker: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Start the CLI, send Ctrl-C once `marker` shows on stderr; stdout gets the seconds until 'Cancelled.'."""
    # Ctrl-C's default action, even when this script runs in the background (`cmd &` hands children SIGINT ignored)
    proc = subprocess.Popen([sys.executable, "-m", "geolink.cli", *[str(a) for a in args]], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.set_blocking(proc.stderr.fileno(), False)
    text, sent, seconds, deadline = b"", None, None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = proc.stderr.read() or b""
        text += chunk
        if sent is None and marker.encode() in text:
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
        if sent is not None and seconds is None and b"Cancelled." in text:
            seconds = time.monotonic() - sent
        if proc.poll() is not None and not chunk:
            break
        time.sleep(0.02)
    proc.kill()  # gone already, unless the cancel failed
    proc.wait()
    late = seconds is None or seconds > 2.0
    out = f"cancel took {seconds if seconds is None else round(seconds, 2)} s"
    return subprocess.CompletedProcess(proc.args, proc.returncode if not late else 99, out, text.decode())


def cases(work: Path, mount: Mounts) -> List[Case]:
    from osgeo import gdal, ogr, osr

    from tests.backend.raster_helpers import osm_geojson, s2_crop
    from tests.backend.tiny_models import make_package

    gdal.UseExceptions()
    seg = make_package(work / "lc.safetensors", ["water", "vegetation", "built-up"])
    enc = make_package(work / "enc.safetensors", None)
    r32 = s2_crop(DATA, work / "r32.tif", size=32)
    r160 = s2_crop(DATA, work / "r160.tif", size=160)
    r400 = s2_crop(DATA, work / "r400.tif", size=400)
    roads = osm_geojson(work / "roads.geojson", r32, [("highway:primary", [(-5, 15), (40, 17)]),
                                                      ("highway:residential", [(15, -5), (14, 40)])])
    far = osm_geojson(work / "far.geojson", r32, [("highway:primary", [(3000, 3000), (3100, 3010)])])
    if not (work / "hard.tif").exists():
        os.link(r32, work / "hard.tif")
    data = bytearray(r32.read_bytes())
    data[4:16] = b"\xff" * 12
    (work / "garbled.tif").write_bytes(bytes(data))
    (work / "truncated.tif").write_bytes(r160.read_bytes()[:5000])
    (work / "empty.tif").write_bytes(b"")
    (work / "junk.osm").write_text("<osm><node id='1' lat='x'/>")
    gdal.Translate(str(work / "huge.vrt"), str(r32), format="VRT", width=100_000, height=100_000)
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {work / 'pwned'}",)
    (work / "evil.pth").write_bytes(pickle.dumps({"model": Payload()}))
    (work / "pre").mkdir(exist_ok=True)
    import torch
    torch.save({"model": Payload()}, work / "pre" / "checkpoint.pt")
    ds = gdal.Open(str(r32))
    (work / "labels.gpkg").unlink(missing_ok=True)
    labels = ogr.GetDriverByName("GPKG").CreateDataSource(str(work / "labels.gpkg"))
    layer = labels.CreateLayer("labels", osr.SpatialReference(wkt=ds.GetProjection()), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("height", ogr.OFTReal))
    gt = ds.GetGeoTransform()
    for i in range(8):
        x, y = gt[0] + 5 + i * 38, gt[3] - 5
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("height", 3.25 + i * 1.5)
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x} {y},{x + 30} {y},{x + 30} {y - 300},{x} {y - 300},"
                                                f"{x} {y}))"))
        layer.CreateFeature(f)
    layer = labels = None
    full = mount("full", "24k")
    full_zones = mount("fullz", "48k")
    full_embed = mount("fulle", "16k")
    ro = mount("ro", "64k", read_only=True)
    cpu = ["--device", "cpu"]
    o = work / "o.tif"
    wide = [*cpu, "--gsd", "0.005", "--extent", f"{gt[0]},{gt[3] - 50},{gt[0] + 320},{gt[3]}", "--yes"]

    def twice_then_embed():
        first = cli("classify", "--raster", r32, "--model", seg, "--out", work / "same.tif", *cpu)
        second = cli("embed", "--raster", r32, "--model", enc, "--out", work / "same.tif", *cpu)
        leftovers = [p.name for p in (work / "same.qml", work / "same.tif.aux.xml") if p.exists()
                     and (p.suffix == ".qml" or "water" in p.read_text())]
        code = 0 if first.returncode == 0 and second.returncode == 0 and not leftovers else 98
        return subprocess.CompletedProcess([], code, second.stdout + " stale: " + str(leftovers), second.stderr)

    def killed_then_rerun():
        folder = work / "killed"
        proc = subprocess.Popen([sys.executable, "-m", "geolink.cli", "--quiet", "classify", "--raster", str(r400),
                                 "--model", str(seg), "--out", str(folder / "o.tif"), *cpu])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (folder.is_dir() and any(".partial-" in p.name
                                                                           for p in folder.iterdir())):
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return cli("classify", "--raster", r32, "--model", seg, "--out", folder / "o.tif", *cpu)

    def worker_job(config: dict):
        return lambda: worker({"task": "classify", "config": {"model": str(seg), "device": "cpu", **config}})

    return [
        # damaged or lost data
        Case("disk full: classify + probabilities", lambda: cli(
            "classify", "--raster", r160, "--model", seg, "--out", full / "o.tif", "--probabilities",
            full / "p.tif", *cpu), words=("is full",), inputs=(r160,), outputs=(full and full / "o.tif",),
            needs=(full,)),
        Case("disk full: zones", lambda: cli("zones", "--raster", r32, "--osm", roads, "--model", seg, "--out",
                                             full_zones / "z.gpkg", *cpu),
             words=("is full",), inputs=(r32,), outputs=(full_zones and full_zones / "z.gpkg",), needs=(full_zones,)),
        Case("disk full: embed", lambda: cli("embed", "--raster", r160, "--model", enc, "--out",
                                             full_embed / "e.tif", *cpu),
             words=("is full",), inputs=(r160,), outputs=(full_embed and full_embed / "e.tif",), needs=(full_embed,)),
        Case("out is the raster", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", r32),
             words=("is the input",), inputs=(r32,)),
        Case("out is a hard link of the raster", lambda: cli("classify", "--raster", r32, "--model", seg,
                                                            "--out", work / "hard.tif"),
             words=("is the input",), inputs=(r32,)),
        Case("out spelled another way", lambda: cli("classify", "--raster", r32, "--model", seg, "--out",
                                                   work / ".." / work.name / "r32.tif"),
             words=("is the input",), inputs=(r32,)),
        Case("probabilities is the raster", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o,
                                                       "--probabilities", r32), words=("is the input",),
             inputs=(r32,), outputs=(o,)),
        Case("preview is the raster", lambda: cli("embed", "--raster", r32, "--model", enc, "--out", o,
                                                 "--preview", r32), words=("is the input",), inputs=(r32,)),
        Case("zones out is the OSM file", lambda: cli("zones", "--raster", r32, "--osm", work / "osm.gpkg",
                                                     "--model", seg, "--out", work / "osm.gpkg"),
             words=("is the input",)),
        Case("finetune out is the model", lambda: cli("finetune", "--raster", r32, "--labels",
                                                     work / "labels.gpkg", "--class-field", "height", "--model",
                                                     enc, "--out", enc), words=("is the input",), inputs=(enc,)),
        Case("osm-graph out is the OSM file", lambda: cli("osm-graph", "--osm", roads, "--bounds=0,0,1,1", "--out",
                                                         roads), words=("is the input",), inputs=(roads,)),
        Case("import-checkpoint out is the source", lambda: cli("import-checkpoint", work / "evil.pth", "--out",
                                                               work / "evil.pth"), words=("is the input",),
             inputs=(work / "evil.pth",)),
        Case("worker: out is the raster", worker_job({"raster": str(r32), "out": str(r32)}),
             words=("is the input",), inputs=(r32,)),
        Case("out and probabilities the same file", lambda: cli("classify", "--raster", r32, "--model", seg,
                                                               "--out", o, "--probabilities", o),
             words=("name the same file",), outputs=(o,)),
        Case("existing output: classify then embed", twice_then_embed, expect="ok",
             words=("Replaced the existing",), outputs=(work / "same.tif",)),
        Case("SIGKILL partials removed by the next run", killed_then_rerun, expect="ok",
             words=("by a stopped run",), outputs=(work / "killed" / "o.tif",)),
        # tracebacks
        Case("read-only folder: classify", lambda: cli("classify", "--raster", r32, "--model", seg, "--out",
                                                      ro / "o.tif"), words=("read-only",), needs=(ro,)),
        Case("read-only folder: embed", lambda: cli("embed", "--raster", r32, "--model", enc, "--out",
                                                   ro / "sub" / "e.tif"), words=("read-only",), needs=(ro,)),
        Case("read-only folder: zones", lambda: cli("zones", "--raster", r32, "--osm", roads, "--model", seg,
                                                   "--out", ro / "z.gpkg"), words=("read-only",), needs=(ro,)),
        Case("read-only folder: osm-graph", lambda: cli("osm-graph", "--osm", roads, "--bounds=-180,-85,180,85",
                                                       "--out", ro / "g.pt"), words=("read-only",), needs=(ro,)),
        Case("garbled TIFF header", lambda: cli("classify", "--raster", work / "garbled.tif", "--model", seg,
                                               "--out", o), words=("Cannot read the raster",), outputs=(o,)),
        Case("truncated TIFF", lambda: cli("classify", "--raster", work / "truncated.tif", "--model", seg,
                                          "--out", o), words=("truncated.tif",), outputs=(o,)),
        Case("empty file as raster", lambda: cli("classify", "--raster", work / "empty.tif", "--model", seg,
                                                "--out", o), words=("empty.tif",), outputs=(o,)),
        Case("--batch-size -3", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o,
                                           "--batch-size", "-3"), words=("--batch-size",), outputs=(o,)),
        Case("--gsd 100000", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--gsd",
                                        "100000", *cpu), words=("--gsd",), outputs=(o,)),
        Case("--tile-size -32", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o,
                                           "--tile-size", "-32"), words=("--tile-size",), outputs=(o,)),
        Case("--overlap -5", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--overlap",
                                        "-5"), words=("--overlap",), outputs=(o,)),
        Case("--osm-max-nodes -1", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o,
                                              "--osm-max-nodes", "-1"), words=("--osm-max-nodes",), outputs=(o,)),
        Case("unsafe checkpoint.pt in a pretraining folder", lambda: cli(
            "pretrain", "--out", work / "pre", "--raster", r32, "--tile-size", "32", "--image-size", "32",
            "--steps", "1", "--batch-size", "2", *cpu), words=("cannot be read safely",),
            inputs=(work / "pre" / "checkpoint.pt",)),
        Case("raw pickle as --model", lambda: cli("classify", "--raster", r32, "--model", work / "evil.pth",
                                                 "--out", o, *cpu), words=("not loaded",), outputs=(o,)),
        Case("garbage OSM file", lambda: cli("osm-graph", "--osm", work / "junk.osm", "--bounds=0,0,1,1",
                                            "--out", work / "g.pt"), outputs=(work / "g.pt",)),
        Case("--bands 0,1,2", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--bands",
                                         "0,1,2"), words=("--bands",), outputs=(o,)),
        Case("--extent outside the raster", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o,
                                                       "--extent", "0,0,10,10"), words=("extent",), outputs=(o,)),
        # runaway jobs
        Case("100,000 px square VRT", lambda: cli("classify", "--raster", work / "huge.vrt", "--model", seg,
                                                 "--out", o, *cpu), words=("--yes",), outputs=(o,)),
        Case("--gsd 0.006", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--gsd", "0.006",
                                       *cpu), words=("--yes",), outputs=(o,)),  # 2.8 gigapixels, 0.3 GB out
        Case("100,000 px VRT --yes onto a small disk", lambda: cli(
            "classify", "--raster", work / "huge.vrt", "--model", seg, "--out", full / "o.tif", "--yes", *cpu),
            words=("free",), outputs=(full and full / "o.tif",), needs=(full,)),
        Case("Ctrl-C within 2 s on a 64,000 px wide raster", lambda: sigint_after_start(
            ["classify", "--raster", r32, "--model", seg, "--out", work / "wide.tif", *wide],
            "Classifying, batch 2/"), expect="cancel", outputs=(work / "wide.tif",)),
        # unclear messages
        Case("OSM beside the raster", lambda: cli("classify", "--raster", r32, "--osm", far, "--model", seg,
                                                 "--out", work / "far.tif", *cpu), expect="ok",
             words=("they cover (", "the raster ("), outputs=(work / "far.tif",)),
        Case("--layer 99", lambda: cli("embed", "--raster", r32, "--model", enc, "--out", o, "--layer", "99",
                                      *cpu), words=("numbered 1 to 2",), outputs=(o,)),
        Case("float class field, one value per polygon", lambda: cli(
            "finetune", "--raster", r32, "--labels", work / "labels.gpkg", "--class-field", "height", "--model",
            enc, "--out", work / "m.safetensors", *cpu), words=("not a class",)),
        Case("--gsd -10", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--gsd", "-10"),
             words=("--gsd must be 0 or more",), outputs=(o,)),
        Case("--gsd nan", lambda: cli("classify", "--raster", r32, "--model", seg, "--out", o, "--gsd", "nan"),
             words=("finite",), outputs=(o,)),
        Case("worker: gsd NaN", worker_job({"raster": str(r32), "out": str(o), "gsd": float("nan")}),
             words=("finite",), outputs=(o,)),
        Case("zones --min-area -5", lambda: cli("zones", "--raster", r32, "--osm", roads, "--model", seg, "--out",
                                               work / "z.gpkg", "--min-area", "-5"), words=("--min-area",)),
        Case("finetune --epochs 0", lambda: cli("finetune", "--raster", r32, "--labels", work / "labels.gpkg",
                                               "--class-field", "height", "--model", enc, "--out",
                                               work / "m.safetensors", "--epochs", "0"), words=("--epochs",)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("-k", default="", help="run only the cases whose name holds this")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(args.work or stack.enter_context(tempfile.TemporaryDirectory(prefix="geolink-hostile-")))
        work.mkdir(parents=True, exist_ok=True)
        mount = Mounts(work / "mnt")
        stack.callback(mount.close)
        clean, failed, skipped = 0, [], 0
        for case in cases(work, mount):
            if args.k not in case.name:
                continue
            t0 = time.monotonic()
            problems = case.check()
            if problems and problems[0].startswith("skipped"):
                skipped += 1
                print(f"SKIP  {case.name}: {problems[0]}", flush=True)
                continue
            status = "ok  " if not problems else "FAIL"
            print(f"{status}  {case.name} ({time.monotonic() - t0:.0f} s)" + ("" if not problems else
                                                                                "\n      " + "\n      ".join(problems)),
                  flush=True)
            clean += not problems
            failed += [case.name] if problems else []
        if (work / "pwned").exists():
            failed.append("a refused pickle ran its code")
        print(f"\n{clean} handled cleanly, {len(failed)} not, {skipped} skipped")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
