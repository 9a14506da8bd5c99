"""Tensors derived from parameters (folded weight matrices), cached while gradients are off.

Inference reuses them batch after batch; the key is every source parameter's storage, version,
device and dtype, so loading weights, moving the model or an optimiser step all invalidate it.
With gradients on (training) they are rebuilt on every call, so autograd sees the parameters.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple, TypeVar

import torch

T = TypeVar("T")


class DerivedCache:
    def __init__(self):
        self._store: Dict[object, Tuple[tuple, object]] = {}

    def get(self, name: object, params: Iterable[torch.Tensor], build: Callable[[], T]) -> T:
        if torch.is_grad_enabled():
            return build()
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        hit = self._store.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        self._store[name] = (key, value)
        return value
