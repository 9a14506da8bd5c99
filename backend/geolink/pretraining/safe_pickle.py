"""Reading the `NAME.pickle` files of the original pairs layout without executing anything.

The files hold a dict such as {'bbox': (west, south, east, north), 'time': 2021, ...}; the
bbox numbers were written as numpy float64 scalars. `find_class` refuses every global except
numpy's scalar reconstructor and dtype, which are replaced by local stand-ins that only decode
the scalar's bytes into a Python number: no numpy (or any other) code runs while loading.
"""

from __future__ import annotations

import io
import os
import pickle  # nosec B403  only a restricted Unpickler below: find_class refuses every global
import struct
from typing import Any, Tuple

from ..errors import InputError

_SCALAR_FORMATS = {"f8": "d", "f4": "f", "f2": "e", "i8": "q", "i4": "i", "i2": "h", "i1": "b",
                   "u8": "Q", "u4": "I", "u2": "H", "u1": "B", "b1": "?"}


class _DType:
    """Stand-in for numpy.dtype: remembers the type code and byte order, nothing else."""

    def __init__(self, code: str, align: bool = False, copy: bool = False):
        if not isinstance(code, str) or code not in _SCALAR_FORMATS:
            raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain number")
        self.code = code
        self.order = "<"

    def __setstate__(self, state: tuple) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = "<" if state[1] in ("|", "=") else state[1]


def _scalar(dtype: Any, data: bytes) -> Any:
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("malformed numpy scalar")
    (value,) = struct.unpack(dtype.order + _SCALAR_FORMATS[dtype.code], data)
    return value


_ALLOWED = {("numpy.core.multiarray", "scalar"): _scalar, ("numpy._core.multiarray", "scalar"): _scalar,
            ("numpy", "dtype"): _DType}


class PlainUnpickler(pickle.Unpickler):
    """Admits plain Python values (dict, list, tuple, str, numbers, None) and numeric numpy scalars."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain values are allowed") from None


def load_plain_pickle(path: os.PathLike) -> Any:
    """Unpickle `path` with `PlainUnpickler`; anything else is refused with an InputError."""
    data = open(path, "rb").read()
    try:
        return PlainUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, AttributeError) as exc:
        raise InputError(f"{path} is not a plain-data pickle: {exc}",
                         hint="The pairs layout expects NAME.pickle = {'bbox': (west, south, east, north)}.") from None


def read_bbox(path: os.PathLike) -> Tuple[float, float, float, float]:
    """The (west, south, east, north) bbox stored in a pairs-layout pickle."""
    value = load_plain_pickle(path)
    bbox = value.get("bbox") if isinstance(value, dict) else None
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputError(f"{path} has no 'bbox' of four numbers.") from None
    if not (east > west and north > south):
        raise InputError(f"{path}: bbox {bbox} is empty or inverted; expected (west, south, east, north).")
    return west, south, east, north
