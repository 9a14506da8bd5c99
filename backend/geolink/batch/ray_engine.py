"""`--engine ray`: one actor per worker holding its own process (and GPU), whole rasters per call.

Ray is an optional extra (`pip install geolink[cluster]`); this module is imported only for `--engine ray`.
Every node needs the same backend environment, and the rasters, OSM files and output folder must be at the
same paths on every node (shared storage)."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputError, opt
from .run import WorkerLost, run_item


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"{opt('engine', 'ray')} needs Ray, which is not installed in the backend environment.",
                         hint="Install it with: pip install 'geolink[cluster]' (or pip install ray), "
                              "or use --engine local.") from None
    return ray


class RasterWorker:
    """The actor: runs single-raster tasks in its own process."""

    def __init__(self, threads: int):
        self.threads = threads

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: str, config: dict) -> dict:
        return run_item(task, config, self.threads)


class RayEngine:
    """Connects to `address` (or starts a local Ray) and keeps `workers` actors busy, one raster each, spread over
    the nodes. When an actor's node dies its raster comes back as WorkerLost for the scheduler to retry on the
    surviving actors (a replacement actor could wait forever for the lost node's CPU or GPU)."""

    def __init__(self, address: Optional[str], workers: int):
        ray = self.ray = import_ray()
        ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False,
                 include_dashboard=False, ignore_reinit_error=True)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.slots = workers or gpus or len(nodes) or 1
        cpus = resources.get("CPU", 1)
        self.threads = max(1, int(cpus // self.slots))
        self._options = {"num_cpus": min(1.0, cpus / self.slots), "num_gpus": 1 if gpus >= self.slots else 0,
                         "max_restarts": 0, "scheduling_strategy": "SPREAD"}
        self._actor_cls = ray.remote(RasterWorker)
        self._pid_refs: List[Any] = []
        self._idle: List[Any] = [self._new_actor() for _ in range(self.slots)]
        self._busy: Dict[Any, Any] = {}

    def _new_actor(self):
        actor = self._actor_cls.options(**self._options).remote(self.threads)
        self._pid_refs.append(actor.pid.remote())  # answered before the actor's first raster
        return actor

    def submit(self, task: str, config: dict) -> Any:
        actor = self._idle.pop()
        ref = actor.run.remote(task, config)
        self._busy[ref] = actor
        return ref

    def wait(self, handles: List[Any], timeout: float) -> List[Tuple[Any, Any]]:
        ray = self.ray
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            actor = self._busy.pop(ref)
            try:
                finished.append((ref, ray.get(ref)))
                self._idle.append(actor)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as exc:
                finished.append((ref, WorkerLost(type(exc).__name__)))
                # The survivors take over; a replacement only when none is left (it may wait for resources).
                if self._idle or self._busy:
                    self.slots -= 1
                else:
                    self._idle.append(self._new_actor())
        return finished

    def close(self, cancel: bool) -> List[int]:
        ray = self.ray
        actors = self._idle + list(self._busy.values())
        pids = []
        if cancel:
            for ref in self._pid_refs:
                try:
                    pids.append(ray.get(ref, timeout=2))
                except ray.exceptions.RayError:  # an actor that never started or is gone left nothing to clean
                    pass
        for actor in actors:
            ray.kill(actor)
        ray.shutdown()
        return pids
