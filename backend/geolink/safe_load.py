"""Loading .pt/.pth files without running code: torch.load(weights_only=True), every refusal said plainly.

PyTorch's own message suggests re-running with weights_only=False; for a file that was refused that
would run whatever code it carries, so that advice is never passed on: only the reason is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

from .errors import GeoLinkError, ModelError

ADVICE = re.compile(r"weights_only|Weights only load failed|trusted source|documentation of torch\.load", re.I)


def refusal_reason(exc: BaseException) -> str:
    """The part of a torch.load failure that says what was wrong with the file, without PyTorch's advice."""
    text = str(exc)
    found = re.search(r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+[^.\n]*)", text)
    if found:
        return "it holds code or objects other than tensors (" + found.group(1).rstrip(".") + ")"
    if re.search(r"Unsupported operand \d+", text):
        return "it is a raw pickle (which can carry code), not a file saved by torch.save"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ADVICE.search(ln)]
    return lines[0] if lines else f"it is damaged or not a PyTorch file ({type(exc).__name__})"


def load_tensors(path: Path, what: str, hint: str, allowed: Sequence[type] = (),
                 error: type = ModelError, option: Optional[str] = None):
    """torch.load(path, weights_only=True) with `allowed` extra classes; any failure -> `error`, naming the
    file as `what` ("the checkpoint", ...) and what to do (`hint`)."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{what[0].upper() + what[1:]} {path} was not found.", hint=hint, option=option) from None
    except GeoLinkError:
        raise
    except Exception as exc:  # unpickling refusals and damaged files come in many types
        raise error(f"{what[0].upper() + what[1:]} {path} cannot be read safely, so it was not loaded: "
                    f"{refusal_reason(exc)}.", hint=hint, option=option) from None
