"""GeoLink's fixed 2-D sine-cosine position embeddings, evaluated at any (fractional) grid position.

The first half of the channels encodes x (the column, from the west edge), the second half y (the
row, from the north edge); each half is [sin(p * w_k), cos(p * w_k)] with w_k = 10000^(-k / (D/4)).
The stored tables are computed in float64 (float32 on MPS), so they match the original's numpy
ones; node positions, made per batch, in float32 (within 1e-6 of float64, at half the cost).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch


def wide_float(device: torch.device) -> torch.dtype:
    """float64 where the device has it (MPS has not)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


@functools.lru_cache(maxsize=16)
def _frequencies(dim: int, device: torch.device, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """(phase, frequency) per channel of one axis' half: [0] * D/4 + [pi/2] * D/4 (cos(a) = sin(a + pi/2)),
    and the frequencies w_k twice. Made outside inference mode, so training may use them too."""
    with torch.inference_mode(False):
        omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=dtype, device=device) / (dim / 4.0))
        return torch.cat([torch.zeros_like(omega), torch.full_like(omega, math.pi / 2)]), torch.cat([omega, omega])


def sincos_2d(dim: int, xy: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """[..., dim] embedding of points `xy` [..., 2] given in patch units (x, y), in `dtype` (default wide_float)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    phase, omega = _frequencies(dim, xy.device, dtype or wide_float(xy.device))
    angle = torch.addcmul(phase, xy.to(phase.dtype)[..., None], omega)  # [..., 2 (x, y), dim / 2]
    return angle.sin_().reshape(*xy.shape[:-1], dim)


def grid_points(rows: int, cols: int, native: int, device=None) -> torch.Tensor:
    """[rows * cols, 2] patch positions (x, y), row-major, rescaled to a `native` x `native` grid.

    At the native size these are the integer positions 0..native-1 of the original tables; other
    sizes get the same continuous embedding evaluated at proportionally placed positions (the exact
    interpolation of the fixed table).
    """
    dtype = wide_float(device or "cpu")
    ys = torch.arange(rows, dtype=dtype, device=device) * (native / rows)
    xs = torch.arange(cols, dtype=dtype, device=device) * (native / cols)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], -1)


def sincos_table(dim: int, native: int) -> torch.Tensor:
    """[1, 1 + native**2, dim]: a zero row for the class token, then the native grid (the stored tables)."""
    grid = sincos_2d(dim, grid_points(native, native, native)).float()
    return torch.cat([torch.zeros(1, dim), grid], 0)[None]
