"""Many rasters: `geolink batch` (local processes, local Ray) against a loop of single `geolink classify` calls.

    python benchmarks/bench_batch.py [--rasters 8] [--size 320] [--model default]

Crops of the real Sentinel-2 scene, classified with the same model and options by each way in one run; each
way writes into a fresh folder. Rasters/s counts the whole command, start-up included (for a loop of single
calls that is one Python, torch and model start per raster; a batch pays it once per worker).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOLINK_DATA", ROOT / ".cache" / "data"))


def crops(folder: Path, n: int, size: int) -> list:
    from osgeo import gdal

    gdal.UseExceptions()
    src = gdal.Open(str(DATA / "s2" / "s2_rgbn.tif"))
    step = (src.RasterXSize - size) // max(n - 1, 1)
    paths = []
    for i in range(n):
        path = folder / f"s2_{i}.tif"
        gdal.Translate(str(path), src, srcWin=[i * step, (src.RasterYSize - size) // 2, size, size])
        paths.append(path)
    return paths


def geolink(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "geolink.cli", "--quiet", *args], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rasters", type=int, default=8)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    if not (DATA / "READY").exists():
        print(f"sample data missing in {DATA}: run `make data`")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        rasters = crops(work / "in", args.rasters, args.size)
        common = ["--model", args.model, "--device", "cpu"]
        ways = {"loop of single `geolink classify`": lambda out: sum(
            geolink("classify", "--raster", str(r), "--out", str(out / f"{r.stem}.tif"), *common) for r in rasters)}
        engines = [("local", 1), ("local", 2)]
        if importlib.util.find_spec("ray"):
            engines += [("ray", 1), ("ray", 2)]
        for engine, workers in engines:
            ways[f"batch --engine {engine} --workers {workers}"] = (
                lambda out, e=engine, w=workers: geolink("batch", "classify", "--rasters", *map(str, rasters),
                                                         "--out-dir", str(out), "--engine", e, "--workers", str(w),
                                                         *common))
        print(f"{len(rasters)} rasters of {args.size} x {args.size} px, model {args.model}, {os.cpu_count()} cores")
        print("| way | seconds | rasters/s | vs the loop |\n| --- | --- | --- | --- |")
        base = None
        for i, (name, run) in enumerate(ways.items()):
            out = work / f"out{i}"
            out.mkdir()
            seconds = run(out)
            base = base or seconds
            print(f"| {name} | {seconds:.1f} | {len(rasters) / seconds:.3f} | {base / seconds:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
