"""One-shot check of every CUDA path on a GPU machine, in under 5 minutes; prints one table.

    .venv/bin/python benchmarks/gpu_check.py [--quick]

1. the CUDA tests (tests/backend/test_cuda.py);
2. encode throughput, ViT-T and ViT-L, bf16, image only and with OSM (collated inside encode, beforehand,
   and in a loader thread into pinned buffers as the classify engine does), as a ratio to the bare timm ViT
   in the same process (bench_encode.bench);
3. classify throughput, ViT-T and ViT-L, bf16, the whole pipeline (prefetching engine; the serial one
   beside it) against the bare model on the same windows (bench_inference.throughput; image only: classify
   with OSM needs the text encoder's weights);
4. the out-of-memory back-off: a batch far too large for a capped share of GPU memory must halve down
   until it fits and give the same result as a small batch;
5. GPU memory returned after a classify job (allocated back to where it was);
6. 20 steps of `geolink pretrain` under torchrun, one process per GPU (DDP on NCCL with two or more GPUs).

Exits at once with a message where torch sees no CUDA GPU (benchmarks/run_all.py does not run it there).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT), str(ROOT / "benchmarks")]

TARGETS = {"tiny": 0.70, "large": 0.90}  # encode with OSM, bf16: share of the bare ViT (issue 22)
CLASSIFY_TARGET = 0.80
ARCHS = {"tiny": "vit_tiny_patch16_224", "large": "vit_large_patch16_224"}


def cuda_tests() -> tuple:
    cmd = [sys.executable, "-m", "pytest", "tests/backend/test_cuda.py", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return proc.returncode == 0, last


def encode_rows(repeats: int) -> list:
    from bench_encode import bench

    rows = []
    for arch in ARCHS:
        r = bench(arch, "cuda", repeats)
        for key in ("image only", "with OSM", "OSM collated", "OSM, loader thread"):
            ok = r["ratios"][key] >= TARGETS[arch] if key == "with OSM" else None
            rows.append((f"encode {arch}, {key}, batch {r['batch']}", ok,
                         f"{r['rates'][key]:.0f} tiles/s, {r['ratios'][key]:.0%} of bare ({r['rates']['bare']:.0f})"))
    return rows


def packages(work: Path) -> dict:
    from tests.backend.tiny_models import make_package

    return {arch: make_package(work / f"{arch}.safetensors", [f"class {i}" for i in range(6)], img_size=224,
                               dim=0, arch=name) for arch, name in ARCHS.items()}


def classify_rows(models: dict, raster: Path, work: Path) -> list:
    from bench_inference import throughput

    rows = []
    for arch, model in models.items():
        r = throughput(model, raster, work / f"classify_{arch}.tif", "cuda", rounds=2)
        ratio = r["pipeline/bare"]
        rows.append((f"classify {arch}, image only, batch {r['figures']['batch_size']}", ratio >= CLASSIFY_TARGET,
                     f"{r['pipeline']:.0f} windows/s, {ratio:.0%} of bare ({r['bare']:.0f}); serial engine "
                     f"{r['serial/bare']:.0%}"))
    return rows


def oom_backoff(model: Path) -> tuple:
    """Cap this process at 2 GiB of the GPU, then ask for 512 ViT-L windows in one batch."""
    import numpy as np

    from geolink.inference.engine import Runtime
    from geolink.models import load_model
    from geolink.progress import Progress

    module = load_model(model).cuda().eval()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2 * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    try:
        images = np.random.default_rng(0).standard_normal((512, 3, 224, 224), dtype=np.float32)
        runtime = Runtime("cuda", 512, Progress())
        big = runtime.run(module, images, None)
        small = Runtime("cuda", 4, Progress()).run(module, images[:8], None)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    same = float(np.abs(big[:8] - small).max()) < 5e-2 * float(np.abs(small).max())
    return runtime.chunk < 512 and same, f"batch 512 -> {runtime.chunk}, results {'equal' if same else 'DIFFER'}"


def memory_returned(model: Path, raster: Path, work: Path) -> tuple:
    from geolink.progress import Progress
    from geolink.tasks import classify

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    classify.run(classify.Config(raster=str(raster), model=str(model), out=str(work / "memory.tif"), device="cuda"),
                 Progress())
    torch.cuda.synchronize()
    after, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    return after - before < 2**20, (f"allocated {before / 2**20:.0f} -> {after / 2**20:.0f} MiB, "
                                    f"still reserved by the process {reserved / 2**20:.0f} MiB")


def ddp_pretraining(raster: Path, work: Path) -> tuple:
    gpus = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m",
           "geolink.cli", "--quiet", "pretrain", "--out", str(work / "pretrain"), "--raster", str(raster),
           "--steps", "20", "--batch-size", "16", "--device", "cuda", "--arch", ARCHS["tiny"]]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "backend")})
    seconds = time.monotonic() - t0
    if proc.returncode:
        return False, f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
    losses = (work / "pretrain" / "losses.csv").read_text().splitlines()
    how = "DDP on NCCL" if gpus > 1 else "one process (one GPU: no DDP)"
    return len(losses) > 1, f"{gpus} GPU(s), {how}, {len(losses) - 1} logged steps, {seconds:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible to torch (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}): nothing to check. Run it on a machine with an NVIDIA GPU.")
        return 0
    raster = ROOT / ".cache" / "data" / "s2" / "s2_rgbn.tif"
    if not raster.exists():
        print(f"gpu_check: sample data missing ({raster}): run `make data` first.")
        return 1
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="geolink-gpu-check-"))
    rows = [("CUDA tests", *cuda_tests())]
    rows += encode_rows(5 if args.quick else 20)
    models = packages(work)
    rows += classify_rows(models, raster, work)
    rows.append(("OOM back-off, ViT-L", *oom_backoff(models["large"])))
    rows.append(("GPU memory returned after classify", *memory_returned(models["tiny"], raster, work)))
    rows.append(("pretrain 20 steps under torchrun", *ddp_pretraining(raster, work)))
    name = torch.cuda.get_device_name()
    print(f"\nGeoLink GPU check, {time.strftime('%Y-%m-%d')}, {torch.cuda.device_count()} x {name}, torch "
          f"{torch.__version__}, bf16 autocast, {time.monotonic() - t0:.0f} s")
    print(f"targets: encode with OSM >= {TARGETS['tiny']:.0%} (ViT-T) / {TARGETS['large']:.0%} (ViT-L) of the bare "
          f"ViT, classify >= {CLASSIFY_TARGET:.0%}")
    width = max(len(r[0]) for r in rows) + 2
    for check, ok, detail in rows:
        mark = "ok" if ok else "-" if ok is None else "FAIL"
        print(f"{check:<{width}}{mark:<6}{detail}")
    return 0 if all(ok is not False for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
