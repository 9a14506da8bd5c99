"""Choosing the compute device, and describing what is there (for `geolink doctor`)."""

from __future__ import annotations

import shutil
import subprocess
from typing import List

from .errors import InputError, cmd, opt

DEVICE_CHOICES = ["auto", "cpu", "cuda", "mps"]


def select_device(name: str = "auto"):
    """auto: CUDA, then MPS, then CPU. An explicit device that is not usable is refused."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but torch cannot use a GPU here.",
                         hint=f"Run {cmd('doctor')} to see why, or set {opt('device', 'auto')} or "
                              f"{opt('device', 'cpu')}.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("MPS (Apple GPU) was asked for but is not available.",
                         hint=f"Set {opt('device', 'auto')} or {opt('device', 'cpu')}.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"Unknown device {name!r}.", hint="Use one of: " + ", ".join(DEVICE_CHOICES)) from None


def nvidia_smi_gpus() -> List[str]:
    """GPUs the NVIDIA driver reports, whether or not torch can use them."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20)  # nosec B603  nvidia-smi, fixed argv
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def describe_devices() -> dict:
    """The devices torch can use, and why a GPU the driver shows is not usable when that happens."""
    import torch

    info = {"cuda_build": torch.version.cuda, "devices": [], "notes": []}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["devices"].append({"device": f"cuda:{i}", "name": p.name,
                                    "memory_gb": round(p.total_memory / 1024**3, 1),
                                    "capability": f"{p.major}.{p.minor}"})
    else:
        driver_gpus = nvidia_smi_gpus()
        if driver_gpus and not torch.version.cuda:
            info["notes"].append(f"GPU present ({driver_gpus[0]}) but this torch is a CPU build; "
                                 "reinstall the backend to get the CUDA build.")
        elif driver_gpus:
            info["notes"].append(f"GPU present ({driver_gpus[0]}) but torch cannot use it: the driver may be "
                                 f"too old for CUDA {torch.version.cuda}; update the NVIDIA driver.")
        elif torch.version.cuda:
            info["notes"].append("No NVIDIA GPU or driver found; running on the CPU.")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        info["devices"].append({"device": "mps", "name": "Apple GPU (Metal)"})
    info["devices"].append({"device": "cpu", "name": "CPU", "threads": torch.get_num_threads()})
    return info
