"""GeoLink encode() throughput against the bare timm ViT forward on the same batch.

For ViT-T and ViT-L: tiles/s of the bare timm ViT forward (the timm VisionTransformer inside the
model, model.img_encoder(images): the very weights encode uses), of encode() image-only, of encode()
with one OSM graph per tile (graph collation included) and with the same graphs collated beforehand
(as a data loader would hand them over), the same with at most 50 nodes per tile entering the fusion
block (the original's budget: it fuses at most 50, chosen at random), with each batch's graphs collated
in a loader thread while the model runs the batch before (the classify engine's reader thread and
collate: packed into pinned buffers on a GPU; per batch over LOADER_BATCHES batches: when collation
overlaps the model, this is the "OSM collated" time), and the ratios to the bare ViT.
Graphs: the six UFZ graphs of ../shared when present (11-161 nodes), otherwise synthetic graphs of
the same sizes. Each round times the variants back to back (in a rotating order); a ratio is the
median over rounds of the round's ratio, so the drift of a shared machine's speed cancels out.
CPU: 2 threads, OpenMP's default wait policy (as the worker runs); on Linux the script re-runs itself
with glibc's allocator set to keep freed memory (GLIBC_TUNABLES, geolink.allocator): with the default settings
PyTorch's large buffers are page-faulted in afresh on most calls, and the bare ViT's speed swung by up
to 30% from process to process, which no number of rounds averages out (--default-allocator: as is).
CUDA: bf16 autocast and larger batches. The original implementation reaches 56% (ViT-T) and 69% (ViT-L)
of the bare ViT on 2 CPU threads.

Then one ViT-T tile with 500, 2,000 and 8,000 OSM nodes, every node fused and at most 512
(--osm-max-nodes): what dense city tiles cost.

    .venv/bin/python benchmarks/bench_encode.py [--device cpu|cuda] [--repeats N] [--archs tiny,large]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from geolink.allocator import TUNABLES as KEEP_MEMORY  # noqa: E402
from geolink.inference.job import graph_collator  # noqa: E402
from geolink.inference.overlap import Ahead  # noqa: E402
from geolink.models import collate_graphs, create_geolink  # noqa: E402
from geolink.osm.format import POSITION_POINTS, RELATIONS  # noqa: E402

UFZ = ROOT.parent / "shared" / "geolink-examples" / "ufz_example" / "graph"
# node counts of the six UFZ graphs (polygon, line, point) and their edges per relation, when they are absent
UFZ_SIZES = [(11, 43, 16, 229), (22, 43, 6, 174), (3, 6, 0, 10), (1, 3, 0, 3), (2, 0, 0, 0), (47, 67, 47, 444)]
ORIGINAL_BUDGET = 50  # the original fuses at most 50 nodes per image (chosen at random)
DENSE_NODES = (500, 2000, 8000)  # OSM nodes in one tile: a town, a city district, a dense city centre
DENSE_CAP = 512  # --osm-max-nodes for the dense tiles
BATCH = {("cpu", "tiny"): 8, ("cpu", "large"): 2, ("cuda", "tiny"): 256, ("cuda", "large"): 64}
LOADER_BATCHES = 8  # batches per timing of the loader-thread run (the first one's collation is not overlapped)


def synthetic_graph(polygons: int, lines: int, points: int, edges: int, seed: int):
    from torch_geometric.data import HeteroData

    g = torch.Generator().manual_seed(seed)
    data, counts = HeteroData(), {"polygon": polygons, "line": lines, "point": points}
    for t, n in counts.items():
        data[t].x = torch.cat([torch.randn(n, 512, generator=g), torch.rand(n, 2 * POSITION_POINTS[t], generator=g)], 1)
    for src, rel, dst in RELATIONS:
        e = edges // len(RELATIONS) if counts[src] and counts[dst] else 0
        data[src, rel, dst].edge_index = torch.stack([torch.randint(0, max(counts[src], 1), (e,), generator=g),
                                                      torch.randint(0, max(counts[dst], 1), (e,), generator=g)])
    return data


def graphs_for(batch: int) -> tuple:
    if UFZ.is_dir():
        from geolink.osm import load_graph

        pool, source = [load_graph(p) for p in sorted(UFZ.glob("*.pt"))], "UFZ graphs"
    else:
        pool, source = [synthetic_graph(*s, seed=i) for i, s in enumerate(UFZ_SIZES)], "synthetic UFZ-sized graphs"
    return [pool[i % len(pool)] for i in range(batch)], source


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def loader_run(model, images: torch.Tensor, graphs: list, device: str) -> None:
    """LOADER_BATCHES batches through encode, each one's graphs collated by the engine's collate in a loader
    thread (Ahead) while the model runs the one before."""
    collate = graph_collator(model, pin=device == "cuda")
    with Ahead(collate(graphs) for _ in range(LOADER_BATCHES)) as ready:
        for batch in ready:
            model.encode(images, batch)


def bench(arch: str, device: str, repeats: int) -> dict:
    batch = BATCH[(device, arch)]
    name = f"vit_{arch}_patch16_224"
    torch.manual_seed(0)
    model = create_geolink(name, text_dim=512, pretraining=False).to(device).eval()
    images = torch.randn(batch, 3, 224, 224, device=device)
    graphs, source = graphs_for(batch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)
    collated = collate_graphs(graphs, 512).to(device)  # what a data loader hands over
    capped = collate_graphs(graphs, 512, max_fusion_nodes=ORIGINAL_BUDGET).to(device)
    runs = {"bare": lambda: model.img_encoder(images), "image only": lambda: model.encode(images),
            "with OSM": lambda: model.encode(images, graphs), "OSM collated": lambda: model.encode(images, collated),
            "collated, <=50 fused": lambda: model.encode(images, capped),
            "OSM, loader thread": lambda: loader_run(model, images, graphs, device)}
    batches = {"OSM, loader thread": LOADER_BATCHES}  # per timing; the others: one
    keys = list(runs)
    times = {k: [] for k in keys}
    with torch.inference_mode(), autocast:
        for fn in runs.values():  # warm-up
            timed(fn, device)
        for i in range(repeats):
            for key in keys[i % len(keys):] + keys[:i % len(keys)]:
                times[key].append(timed(runs[key], device) / batches.get(key, 1))
    rates = {k: batch / statistics.median(v) for k, v in times.items()}
    ratios = {k: statistics.median(b / t for b, t in zip(times[keys[0]], times[k])) for k in keys[1:]}
    nodes = sum(g[t].num_nodes for g in graphs for t in g.node_types) / batch
    return {"arch": name, "batch": batch, "rates": rates, "ratios": ratios, "nodes": nodes, "source": source}


def dense_tiles(device: str, cap: int = DENSE_CAP) -> List[tuple]:
    """(nodes, ms per tile with every node fused, ms with at most `cap` fused) for one ViT-T tile with
    synthetic graphs as dense as city tiles get: the fusion attention is quadratic in the nodes."""
    torch.manual_seed(0)
    model = create_geolink("vit_tiny_patch16_224", text_dim=512, pretraining=False).to(device).eval()
    image = torch.randn(1, 3, 224, 224, device=device)
    with torch.inference_mode():
        model.encode(image)
        rows = [(0, min(timed(lambda: model.encode(image), device) for _ in range(3)) * 1e3, None)]
        for n in DENSE_NODES:
            graph = [synthetic_graph(n // 2, n // 4, n - n // 2 - n // 4, 6 * n, seed=n)]
            row = [n]
            for k in (None, cap):
                model.max_fusion_nodes = k
                model.encode(image, graph)  # warm-up
                row.append(min(timed(lambda g=graph: model.encode(image, g), device) for _ in range(3)) * 1e3)
            rows.append(tuple(row))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=0,
                        help="rounds (default: 15 for ViT-T, 3 for ViT-L on CPU; 20 on GPU)")
    parser.add_argument("--archs", default="tiny,large")
    parser.add_argument("--default-allocator", action="store_true", help="keep glibc's default allocator settings")
    args = parser.parse_args()
    if sys.platform.startswith("linux") and not args.default_allocator and "GLIBC_TUNABLES" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": KEEP_MEMORY})
    torch.set_num_threads(2)
    results = []
    for arch in args.archs.split(","):
        repeats = args.repeats or (20 if args.device == "cuda" else 15 if arch == "tiny" else 3)
        r = bench(arch, args.device, repeats)
        results.append(r)
        print(f"{r['arch']}: batch {r['batch']}, {r['nodes']:.0f} OSM nodes per tile ({r['source']}), "
              f"median of {repeats}", flush=True)
    where = torch.cuda.get_device_name() + ", bf16 autocast" if args.device == "cuda" else "CPU, 2 threads"
    print(f"\nencode throughput on {where} (tiles/s; ratio to the bare timm ViT). with OSM: a list of graphs,")
    print("collated inside encode; OSM collated: a GraphBatch made beforehand (collate_graphs), as a data loader "
          "would;")
    print(f"<=50 fused: the same with at most {ORIGINAL_BUDGET} nodes per tile in the fusion block (max_fusion_nodes), "
          "the original's budget;")
    print("loader thread: each batch's graphs collated in a thread while the model runs the batch before (per batch, "
          f"over {LOADER_BATCHES} batches)")
    columns = ("image only", "with OSM", "OSM collated", "collated, <=50 fused", "OSM, loader thread")
    print(f"{'model':<24}{'bare ViT':>12}" + "".join(f"{k:>22}" for k in columns))
    for r in results:
        cells = "".join(f"{r['rates'][k]:>14.2f} ({r['ratios'][k]:4.0%})" for k in columns)
        print(f"{r['arch']:<24}{r['rates']['bare']:>12.2f}{cells}")
    print(f"\none dense ViT-T tile on {where} (ms): every node fused, and at most {DENSE_CAP} "
          f"(--osm-max-nodes {DENSE_CAP})")
    for n, every, capped in dense_tiles(args.device):
        print(f"{n:>6} nodes {every:>8.0f}" + (f"{capped:>8.0f}" if capped is not None else "  (image only)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
