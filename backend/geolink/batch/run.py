"""The scheduler every engine shares: at most one raster per worker in flight (so memory stays bounded whatever
the number of rasters), a raster retried elsewhere when its worker dies, cancel between results."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from ..errors import GeoLinkError
from ..progress import Progress
from .plan import Item

MAX_ATTEMPTS = 3


class WorkerLost(Exception):
    """The worker running an item died (a crash, an out-of-memory kill, a cluster node lost)."""


class Engine(Protocol):
    """Where items run: `submit` starts one on a free worker, `wait` returns finished ones as (handle, outcome),
    where the outcome is run_item's dict or a WorkerLost."""

    slots: int

    def submit(self, task: str, config: dict) -> Any: ...

    def wait(self, handles: List[Any], timeout: float) -> List[Tuple[Any, Any]]: ...

    def close(self, cancel: bool) -> List[int]: ...


def run_item(task: str, config: dict, threads: int = 0) -> dict:
    """Run one single-raster task in this (worker) process; never raises: failures come back as a dict."""
    from ..config import build_config
    from ..progress import quiet_library_warnings
    from ..tasks import load_task

    quiet_library_warnings()
    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.monotonic()
    try:
        module = load_task(task)
        result = module.run(build_config(module.Config, config), Progress())
        return {"ok": True, "seconds": time.monotonic() - t0, "figures": _scalars(result.get("figures") or {})}
    except GeoLinkError as exc:
        message = exc.message + (f" {exc.hint}" if exc.hint else "")
    except MemoryError:
        message = "Out of memory; use a smaller --batch-size or --tile-size."
    except Exception as exc:  # a bug, or a library's error on a damaged file: report it, let the others finish
        message = f"{type(exc).__name__}: {exc}"
    return {"ok": False, "seconds": time.monotonic() - t0, "error": message}


def _scalars(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if isinstance(v, (int, float, str, bool))}


def schedule(engine: Engine, task: str, options: dict, items: Sequence[Item], progress: Progress,
             on_item: Optional[Callable[[Item], None]] = None) -> None:
    """Run the pending items on the engine's workers, filling in each item's status, time and error."""
    queue = [i for i in items if i.status == "pending"]
    total, finished = len(queue), 0
    running: Dict[Any, Item] = {}
    progress.update(0, f"0/{total} rasters")
    cancelled = True
    try:
        while queue or running:
            progress.check_cancelled()
            while queue and len(running) < engine.slots:
                item = queue.pop(0)
                item.attempts += 1
                running[engine.submit(task, item.config(options))] = item
            for handle, outcome in engine.wait(list(running), timeout=0.5):
                item = running.pop(handle)
                if isinstance(outcome, WorkerLost):
                    if item.attempts < MAX_ATTEMPTS:
                        progress.warn(f"A worker was lost while processing {item.raster}; retrying it elsewhere.")
                        queue.insert(0, item)
                        continue
                    outcome = {"ok": False, "seconds": 0.0,
                               "error": f"Its worker was lost {item.attempts} times ({outcome})."}
                item.status = "done" if outcome["ok"] else "failed"
                item.seconds = round(outcome["seconds"], 2)
                item.error = outcome.get("error")
                item.figures = outcome.get("figures") or {}
                finished += 1
                if item.error:
                    progress.warn(f"{os.path.basename(item.raster)} failed: {item.error}")
                if on_item:
                    on_item(item)
                progress.update(100.0 * finished / max(total, 1), f"{finished}/{total} rasters")
        cancelled = False
    finally:
        killed = engine.close(cancel=cancelled)
        if cancelled:
            remove_partials(items, killed)


def remove_partials(items: Sequence[Item], pids: Sequence[int]) -> None:
    """After a cancel, the half-written outputs of the workers that were stopped."""
    from ..atomic import PARTIAL_RE

    folders = {os.path.dirname(i.output) for i in items}
    for folder in folders:
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            match = PARTIAL_RE.search(name)
            if match and int(match.group(1)) in pids:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
