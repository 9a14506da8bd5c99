"""Running a model over a raster of any size, window by window, with memory flat in the raster's size.

The raster is read one row of windows at a time (a strip `tile` pixels tall); windows go to the
device in batches; each window's output is weighted (windows.blend_weights) into an accumulator
that holds only the output rows the current windows touch. Rows no later window can reach are
finished: divided by their weight sum and handed to a sink, which writes them out. Windows whose
pixels are all nodata are skipped, and pixels that were nodata come out invalid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..errors import ModelError, opt
from ..progress import Progress
from ..raster.source import Normaliser, Source
from ..raster.windows import WindowPlan

# predict(images [B, C, T, T] on the device, graphs: list of HeteroData/None or None) -> [B, K, T/f, T/f]
Predict = Callable[[object, Optional[list]], object]
# sink(first output row, values [K, rows, out_width] float32, valid [rows, out_width] bool)
Sink = Callable[[int, np.ndarray, np.ndarray], None]
# graph_for(bounds W, S, E, N) -> HeteroData or None
GraphFor = Callable[[tuple], object]


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

    def run(self, predict: Predict, images: np.ndarray, graphs: Optional[list]) -> np.ndarray:
        """predict over `images` [N, C, T, T] in chunks of at most self.chunk, as float32 numpy."""
        import torch

        outs, i = [], 0
        while i < len(images):
            n = self.chunk
            try:
                outs.append(self._call(predict, images[i:i + n], None if graphs is None else graphs[i:i + n]))
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

    def _call(self, predict: Predict, images: np.ndarray, graphs: Optional[list]) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
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
class RunStats:
    windows: int = 0
    skipped: int = 0
    with_osm: int = 0
    seconds_model: float = 0.0
    seconds: float = 0.0


def run_windows(source: Source, bands: Sequence[int], normalise: Normaliser, plan: WindowPlan, predict: Predict,
                channels: int, sink: Sink, runtime: Runtime, progress: Progress,
                graph_for: Optional[GraphFor] = None, message: str = "Processing, batch") -> RunStats:
    """Run `predict` over every window of `plan` and stream the blended outputs to `sink`, row by row."""
    import time

    f = plan.factor
    weights = plan.weights()
    acc = RowAccumulator(channels, plan.out_tile, plan.out_width, plan.out_height, sink)
    stats = RunStats()
    total = math.ceil(len(plan) / runtime.batch_size)
    for batch in progress.steps(_batches(iter_windows(source, bands, plan), runtime.batch_size),
                                total, message):
        stats.windows += len(batch)
        todo = [w for w in batch if w.valid.any()]
        stats.skipped += len(batch) - len(todo)
        outs = None
        if todo:
            graphs = None
            if graph_for is not None:
                graphs = [graph_for(source.window_bounds(w.col, w.row, plan.tile, plan.tile)) for w in todo]
                stats.with_osm += sum(g is not None for g in graphs)
                if all(g is None for g in graphs):
                    graphs = None
            t0 = time.monotonic()
            valid = np.stack([w.valid for w in todo])[:, None]
            images = np.where(valid, normalise(np.stack([w.raw for w in todo])), np.float32(0))
            outs = runtime.run(predict, images, graphs)
            stats.seconds_model += time.monotonic() - t0
            if outs.shape[1] != channels:
                raise ModelError(f"The model gave {outs.shape[1]} output channels; {channels} were expected.")
            if outs.shape[-1] != plan.out_tile:
                outs = _resize(outs, plan.out_tile)
        for i, w in enumerate(todo):
            acc.add(w.row // f, w.col // f, outs[i], weights, _block_any(w.valid, f))
    acc.flush(plan.out_height)
    return stats


def _resize(values: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N, K, h, w] outputs to size x size (models whose output is coarser than their input)."""
    import torch
    import torch.nn.functional as F

    return F.interpolate(torch.from_numpy(values), size=(size, size), mode="bilinear", align_corners=False).numpy()

