"""Sizing a raster job before it starts: output bytes, free disk space and time, against the thresholds above
which the user is asked to confirm (CLI --yes; in QGIS a warning, the dialog being the confirmation).
The thresholds are documented in the --yes help and the README."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..atomic import OutputSet, human_bytes
from ..errors import InputError, opt
from ..progress import Progress, format_seconds

CONFIRM_SECONDS = 3600.0  # an estimated hour or more
CONFIRM_BYTES = 20e9  # 20 GB of output
CONFIRM_PIXELS = 2e9  # 2 gigapixels processed
# bytes written per uncompressed byte with DEFLATE, at best: an estimate that errs low, so that only outputs
# that surely cannot fit are refused (a full disk found while writing still fails cleanly)
COMPRESSION = {"uint8": 0.1, "float32": 0.5}


@dataclass
class Band:
    """`count` bands of `dtype` at `width` x `height`: one output raster."""

    width: int
    height: int
    count: int
    dtype: str

    @property
    def bytes(self) -> float:
        raw = self.width * self.height * self.count * np.dtype(self.dtype).itemsize
        return raw * COMPRESSION.get(self.dtype, 1.0)


def seconds_per_window(job, predict) -> float:
    """Time of one window through the model, measured on a second call (the first pays for warm-up)."""
    shape = (1, len(job.bands), job.plan.tile, job.plan.tile)
    zeros = np.zeros(shape, dtype=np.float32)
    job.runtime.run(predict, zeros, None)
    t0 = time.monotonic()
    job.runtime.run(predict, zeros, None)
    return time.monotonic() - t0


def check(job, predict, outputs: OutputSet, rasters: Sequence[Band], yes: bool, progress: Progress) -> None:
    """Log the estimate; refuse what cannot fit on the output volume; above a threshold, refuse without
    `yes` (saying how to go ahead) or warn with it."""
    src = job.source
    windows = len(job.plan)
    seconds = windows * seconds_per_window(job, predict)
    nbytes = sum(r.bytes for r in rasters)
    pixels = float(src.width) * src.height
    summary = (f"{src.width:,} x {src.height:,} px in {windows:,} windows: about {format_seconds(seconds)} on "
               f"{job.runtime.device} (image only; OSM adds to it)"
               + (f" and at least {human_bytes(nbytes)} of output" if nbytes else ""))
    progress.log(f"Estimate: {summary}.")
    outputs.require_space(nbytes)
    large = [why for why, over in (("more than an hour", seconds > CONFIRM_SECONDS),
                                   (f"more than {human_bytes(CONFIRM_BYTES)} of output", nbytes > CONFIRM_BYTES),
                                   ("more than 2 gigapixels", pixels > CONFIRM_PIXELS)) if over]
    if not large:
        return
    if yes:
        progress.warn(f"A large job ({' and '.join(large)}): {summary}. Cancel it if that was not meant.")
        return
    raise InputError(f"This is a large job ({' and '.join(large)}): {summary}.",
                     hint=f"Run it again with {opt('yes')} to go ahead, or process a smaller {opt('extent')} or at a "
                          f"coarser {opt('gsd')}.", option="yes")
