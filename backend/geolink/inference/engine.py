"""Running a model over a raster of any size, window by window, with memory flat in the raster's size.

The raster is read one row of windows at a time (a strip `tile` pixels tall); windows go to the
device in batches; each window's output is weighted (windows.blend_weights) into an accumulator
that holds only the output rows the current windows touch. Rows no later window can reach are
finished: divided by their weight sum and handed to a sink, which writes them out. Windows whose
pixels are all nodata are skipped, and pixels that were nodata come out invalid. On a GPU, reading
and preparing the next batches, and blending and writing the last ones, run in threads beside the model
(run_windows, Runtime.ahead).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import ModelError, opt
from ..progress import Progress
from ..raster.source import Normaliser, Source
from ..raster.windows import WindowPlan
from .overlap import Ahead, Behind

# predict(images [B, C, T, T] on the device, graphs: list of HeteroData/None, or collated, or None) -> [B, K, T/f, T/f]
Predict = Callable[[object, Optional[list]], object]
# sink(first output row, values [K, rows, out_width] float32, valid [rows, out_width] bool)
Sink = Callable[[int, np.ndarray, np.ndarray], None]
# graph_for(bounds W, S, E, N) -> HeteroData or None
GraphFor = Callable[[tuple], object]
# collate(a batch's graphs, one per window, some None) -> what predict takes for them (a GraphBatch)
Collate = Callable[[list], object]


@dataclass
class Window:
    col: int
    row: int
    raw: np.ndarray  # [C, T, T] band values as read (a view into the strip)
    valid: np.ndarray  # [T, T] bool


class Runtime:
    """Device, batch size and mixed precision; halves the batch when the device runs out of memory."""

    def __init__(self, device: str = "auto", batch_size: int = 0, progress: Optional[Progress] = None):
        import torch

        from ..devices import select_device

        self.device = select_device(device)
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 4)
        self.chunk = self.batch_size
        self.progress = progress or Progress()
        self.autocast_dtype = None
        if self.device.type == "cuda":
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def describe(self) -> str:
        amp = f", autocast {str(self.autocast_dtype).replace('torch.', '')}" if self.autocast_dtype else ""
        return f"{self.device}{amp}, batch {self.batch_size}"

    @property
    def ahead(self) -> int:
        """Batches a reader thread prepares ahead of the model (and a writer thread blends behind it); 0: read,
        prepare and write in the model's thread. 1 on a GPU, whose host CPU is otherwise idle while the model runs;
        0 on the CPU, where torch already uses every core and the threads can only take time from it
        (bench_inference on 2 quiet cores, two runs: 0.85 and 0.90 of the bare model's throughput with them, 0.92
        and 0.88 without: no gain)."""
        return 1 if self.device.type == "cuda" else 0

    @property
    def pinned(self) -> bool:
        """Whether what goes to the device is staged in page-locked host memory (a GPU: the copy is then
        asynchronous)."""
        return self.device.type == "cuda"

    def host(self, images: np.ndarray):
        """`images` as the host tensor run() copies to the device, page-locked when `pinned` (the engine makes
        it in its reader thread)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images))
        return x.pin_memory() if self.pinned else x

    def run(self, predict: Predict, images, graphs: Optional[list], collated: object = None) -> np.ndarray:
        """predict over `images` [N, C, T, T] (numpy or a host tensor) in chunks of at most self.chunk, as float32
        numpy. `collated`: `graphs` already collated, used while the whole batch goes in one chunk."""
        import torch

        outs, i = [], 0
        while i < len(images):
            n = self.chunk
            part = None if graphs is None else graphs[i:i + n]
            if collated is not None and n >= len(images):
                part = collated
            try:
                outs.append(self._call(predict, images[i:i + n], part))
                i += n
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if n == 1:
                    raise ModelError("The device ran out of memory with a batch of one window.",
                                     hint=f"Use a smaller {opt('tile_size')}, or {opt('device', 'cpu')}.") from None
                self.chunk = max(1, n // 2)
                self.progress.warn(f"Out of memory on {self.device}: batch size {n} -> {self.chunk}.")
        return np.concatenate(outs, 0)

    def _call(self, predict: Predict, images, graphs) -> np.ndarray:
        import torch

        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    y = predict(x, graphs)
            else:
                y = predict(x, graphs)
        return y.float().cpu().numpy()


class RowAccumulator:
    """Weighted sums of window outputs for the output rows [top, top + capacity), flushed in order."""

    def __init__(self, channels: int, capacity: int, width: int, height: int, sink: Sink, chunk: int = 32):
        self.acc = np.zeros((channels, capacity, width), dtype=np.float32)
        self.wsum = np.zeros((capacity, width), dtype=np.float32)
        self.valid = np.zeros((capacity, width), dtype=bool)
        self.top, self.height, self.sink, self.chunk = 0, height, sink, chunk

    def add(self, row: int, col: int, values: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
        self.flush(row)
        h = min(values.shape[1], self.height - row)
        w = min(values.shape[2], self.acc.shape[2] - col)
        r = row - self.top
        self.acc[:, r:r + h, col:col + w] += values[:, :h, :w] * weights[:h, :w]
        self.wsum[r:r + h, col:col + w] += weights[:h, :w]
        self.valid[r:r + h, col:col + w] |= valid[:h, :w]

    def flush(self, until: int) -> None:
        """Emit the rows above `until` (no later window reaches them) and shift the buffer up."""
        until = min(until, self.height)
        n = until - self.top
        if n <= 0:
            return
        cap = self.wsum.shape[0]
        while n > 0:
            k = min(n, cap)
            for r in range(0, k, self.chunk):  # the sink's arrays stay a few rows tall
                rows = slice(r, min(k, r + self.chunk))
                wsum = self.wsum[rows]
                ok = self.valid[rows] & (wsum > 0)
                values = self.acc[:, rows] / np.where(ok, wsum, 1.0)
                values[:, ~ok] = 0.0
                self.sink(self.top + r, values, ok)
            for r in range(0, cap - k, k):  # shift up in steps that do not overlap: no full-size temporary
                rows = slice(r, min(r + k, cap - k))
                src = slice(rows.start + k, rows.stop + k)
                self.acc[:, rows] = self.acc[:, src]
                self.wsum[rows] = self.wsum[src]
                self.valid[rows] = self.valid[src]
            self.acc[:, cap - k:] = 0
            self.wsum[cap - k:] = 0
            self.valid[cap - k:] = False
            self.top += k
            n -= k


def _block_any(valid: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return valid
    h, w = valid.shape
    return valid.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


READ_WIDTH = 8192  # pixels read at once along a row of windows: bounds memory and the time one read blocks a cancel


def iter_windows(source: Source, bands: Sequence[int], plan: WindowPlan):
    """Windows in row-major order (raw values, normalised per batch); a row of windows is read in pieces of
    about READ_WIDTH pixels, so neither memory nor the wait for a cancel grows with the raster's width."""
    cols = list(plan.cols)
    per_read = max(1, (READ_WIDTH - plan.tile) // max(1, plan.stride) + 1)
    for row in plan.rows:
        for i in range(0, len(cols), per_read):
            group = cols[i:i + per_read]
            x0 = group[0]
            raw, valid = source.read(bands, x0, row, group[-1] - x0 + plan.tile, plan.tile)
            for col in group:
                c = col - x0
                yield Window(col, row, raw[:, :, c:c + plan.tile], valid[:, c:c + plan.tile])


def _batches(windows, size: int):
    batch: List[Window] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Batch:
    """A batch of windows made ready for the model: `todo` (those with a valid pixel), their normalised images
    (a host tensor, Runtime.host), their OSM graphs (None: none has one) and those graphs collated."""

    windows: List[Window]
    todo: List[Window]
    images: object = None
    graphs: Optional[list] = None
    collated: object = None


def _prepared(source: Source, bands: Sequence[int], normalise: Normaliser, plan: WindowPlan, runtime: Runtime,
              graph_for: Optional[GraphFor], collate: Optional[Collate]) -> Iterator[Batch]:
    """Every batch of `plan` read, normalised, with its graphs built and collated: all but the model."""
    for windows in _batches(iter_windows(source, bands, plan), runtime.batch_size):
        batch = Batch(windows, [w for w in windows if w.valid.any()])
        if batch.todo:
            if graph_for is not None:
                graphs = [graph_for(source.window_bounds(w.col, w.row, plan.tile, plan.tile)) for w in batch.todo]
                if any(g is not None for g in graphs):
                    batch.graphs = graphs
                    batch.collated = collate(graphs) if collate is not None else None
            valid = np.stack([w.valid for w in batch.todo])[:, None]
            batch.images = runtime.host(np.where(valid, normalise(np.stack([w.raw for w in batch.todo])),
                                                 np.float32(0)))
        yield batch


@dataclass
class RunStats:
    windows: int = 0
    skipped: int = 0
    with_osm: int = 0
    seconds_model: float = 0.0
    seconds: float = 0.0


def run_windows(source: Source, bands: Sequence[int], normalise: Normaliser, plan: WindowPlan, predict: Predict,
                channels: int, sink: Sink, runtime: Runtime, progress: Progress,
                graph_for: Optional[GraphFor] = None, message: str = "Processing, batch",
                collate: Optional[Collate] = None) -> RunStats:
    """Run `predict` over every window of `plan` and stream the blended outputs to `sink`, row by row.

    The model runs in the caller's thread; with `runtime.ahead` > 0 (a GPU) a reader thread (the only one to use
    `source`) reads, normalises and builds and collates (`collate`) the OSM graphs of the next batches meanwhile,
    and a writer thread blends each batch's outputs and runs `sink` on the finished rows (overlap.py), each at
    most `runtime.ahead` batches away from the model. Outputs, their order, progress and errors are those of
    doing it all in one thread."""
    import time

    f = plan.factor
    weights = plan.weights()
    stats = RunStats()
    total = math.ceil(len(plan) / runtime.batch_size)
    acc = RowAccumulator(channels, plan.out_tile, plan.out_width, plan.out_height, sink)

    def blend(todo: List[Window], outs: np.ndarray) -> None:
        for i, w in enumerate(todo):
            acc.add(w.row // f, w.col // f, outs[i], weights, _block_any(w.valid, f))

    batches: Iterable[Batch] = _prepared(source, bands, normalise, plan, runtime, graph_for, collate)
    later: Callable[..., None] = _now
    with contextlib.ExitStack() as stack:
        if runtime.ahead > 0:
            batches = stack.enter_context(Ahead(batches, runtime.ahead))
            later = stack.enter_context(Behind(runtime.ahead))
        for batch in progress.steps(batches, total, message):
            stats.windows += len(batch.windows)
            stats.skipped += len(batch.windows) - len(batch.todo)
            if batch.graphs is not None:
                stats.with_osm += sum(g is not None for g in batch.graphs)
            if batch.todo:
                t0 = time.monotonic()
                outs = runtime.run(predict, batch.images, batch.graphs, batch.collated)
                stats.seconds_model += time.monotonic() - t0
                if outs.shape[1] != channels:
                    raise ModelError(f"The model gave {outs.shape[1]} output channels; {channels} were expected.")
                if outs.shape[-1] != plan.out_tile:
                    outs = _resize(outs, plan.out_tile)
                later(blend, batch.todo, outs)
        later(acc.flush, plan.out_height)
    return stats


def _now(fn: Callable[..., None], *args) -> None:
    fn(*args)


def _resize(values: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N, K, h, w] outputs to size x size (models whose output is coarser than their input)."""
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(values), size=(size, size), mode="bilinear", align_corners=False).numpy()

