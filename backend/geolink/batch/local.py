"""`--engine local`: a pool of worker processes on this machine, each running whole rasters."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Any, List, Tuple

from .run import WorkerLost, run_item


class LocalEngine:
    """N spawned processes (no fork: torch and GDAL state stay out of the children), the cores shared among them.
    A process that dies breaks the pool: its items come back as WorkerLost and a new pool takes over."""

    def __init__(self, workers: int):
        self.slots = max(1, workers)
        self.threads = max(1, (os.cpu_count() or 1) // self.slots)
        self._pool = self._new_pool()
        self._pids: set = set()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: str, config: dict) -> Any:
        future = self._pool.submit(run_item, task, config, self.threads)
        future.pool = self._pool
        self._pids.update(getattr(self._pool, "_processes", {}) or {})
        return future

    def wait(self, handles: List[Any], timeout: float) -> List[Tuple[Any, Any]]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished = []
        for future in done:
            try:
                finished.append((future, future.result()))
            except cf.process.BrokenProcessPool as exc:
                finished.append((future, WorkerLost(str(exc) or "a worker process died")))
                if future.pool is self._pool:  # the other futures of a broken pool fail too: replace it once
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
        return finished

    def close(self, cancel: bool) -> List[int]:
        """Stop the pool; on cancel, kill the workers at once. Returns the workers' process ids."""
        pids = set(self._pids) | set(getattr(self._pool, "_processes", {}) or {})
        if cancel:
            for process in list((getattr(self._pool, "_processes", {}) or {}).values()):
                process.kill()
        self._pool.shutdown(wait=not cancel, cancel_futures=True)
        return sorted(pids)
