"""`geolink batch TASK`: classify, embed or zones over many rasters, on this machine or a Ray cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..config import option
from ..progress import Progress

HELP = """Run classify, embed or zones over many rasters: one output per raster in --out-dir, named after it.

Each output is exactly what `geolink TASK --raster R --out DIR/R.tif` writes (pixels, style, provenance);
classify and embed also get DIR/mosaic.vrt over all outputs. --engine local runs a pool of processes on this
machine; --engine ray runs one model per Ray actor on a cluster (--ray-address) or a local Ray. A rerun skips
rasters whose output was made from the same raster, model and options (--force redoes them); a raster that
fails is reported and the others finish; a lost worker's raster is retried elsewhere. DIR/batch-report.json
lists every raster with its status, time and error."""

TASKS = ["classify", "embed", "zones"]
# Each raster's own output paths are chosen by the batch, so these single-raster options are not offered.
PER_RASTER = {"raster", "out", "probabilities", "preview"}


@dataclass
class Config:
    task: str = option(required=True, choices=TASKS, help="the task to run on every raster")
    rasters: List[str] = option(default_factory=list, flag="--rasters", required=True, metavar="FILE_OR_GLOB",
                                help="raster files or quoted glob patterns ('tiles/**/*.tif')")
    out_dir: str = option(flag="--out-dir", required=True, metavar="DIR", help="folder for the outputs")
    engine: str = option("local", flag="--engine", choices=["local", "ray"],
                         help="local: processes on this machine; ray: actors on a Ray cluster")
    ray_address: Optional[str] = option(None, flag="--ray-address", metavar="ADDR",
                                        help="Ray cluster to join, e.g. 10.0.0.5:6379 (default: start a local Ray)")
    workers: int = option(0, flag="--workers", metavar="N",
                          help="rasters processed at once (0: local 1; ray one per GPU, else one per node)")
    force: bool = option(False, flag="--force", help="redo rasters whose outputs are already up to date")
    options: dict = option(default_factory=dict, help="the task's own options (on the command line: TASK's flags)")


def run(config: Config, progress: Progress) -> dict:
    import time
    from pathlib import Path

    from ..batch import plan as p
    from ..batch.run import schedule
    from ..config import build_config
    from ..errors import InputError, opt
    from ..model_store import resolve_model, sha256_of
    from ..tasks import load_task

    if config.task not in TASKS:
        raise InputError(f"batch runs {', '.join(TASKS)}, not {config.task!r}.")
    if config.workers < 0:
        raise InputError(f"{opt('workers')} must be 0 (automatic) or more, got {config.workers}.")
    unknown = PER_RASTER.intersection(config.options)
    if unknown:
        raise InputError(f"{', '.join(sorted(unknown))} cannot be set for a batch: each raster's outputs are named "
                         "after it in --out-dir.")
    rasters = p.expand_rasters(config.rasters)
    out_dir = Path(config.out_dir).resolve()
    # Check the task's options once, before any worker starts (the same checks as a single run).
    build_config(load_task(config.task).Config, {**config.options, "raster": rasters[0], "out": str(out_dir / "x")})
    out_dir.mkdir(parents=True, exist_ok=True)
    model_hash = sha256_of(resolve_model(config.options.get("model") or "default"))
    items = p.plan(config.task, rasters, out_dir, config.options, model_hash, config.force)
    skipped = sum(i.status == "skipped" for i in items)
    if skipped:
        progress.log(f"{skipped} of {len(items)} rasters are up to date and skipped (--force redoes them).")
    t0 = time.monotonic()
    if config.engine == "ray":
        from ..batch.ray_engine import RayEngine

        engine = RayEngine(config.ray_address, config.workers)
    else:
        from ..batch.local import LocalEngine

        engine = LocalEngine(config.workers or 1)
    progress.log(f"{config.engine} engine: {engine.slots} workers, {engine.threads} threads each")
    summary = {"task": config.task, "engine": config.engine, "workers": engine.slots, "options": config.options}
    try:
        schedule(engine, config.task, config.options, items, progress.sub(0, 97),
                 on_item=lambda _: p.write_report(out_dir, summary, items))
    finally:
        seconds = time.monotonic() - t0
        counts = {s: sum(i.status == s for i in items) for s in ("done", "skipped", "failed", "pending")}
        summary.update(counts, seconds=round(seconds, 2),
                       rasters_per_second=round(counts["done"] / max(seconds, 1e-9), 3))
        report = p.write_report(out_dir, summary, items)
    outputs = {"report": str(report)}
    if config.task in ("classify", "embed"):
        mosaic = p.build_mosaic(out_dir, [i.output for i in items if i.status in ("done", "skipped")])
        if mosaic:
            outputs["mosaic"] = str(mosaic)
        elif counts["done"] + counts["skipped"] > 1:
            progress.warn("No mosaic.vrt: the outputs do not share one CRS and band count.")
    progress.update(100, "Done")
    failed = [i for i in items if i.status == "failed"]
    result = {"outputs": outputs,
              "figures": {**{k: summary[k] for k in ("done", "skipped", "failed", "seconds", "rasters_per_second")},
                          "failures": {i.raster: i.error for i in failed}},
              "report": f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed in "
                        f"{seconds:.1f} s ({summary['rasters_per_second']} rasters/s) -> {out_dir}"}
    if failed:  # the others' outputs stay; a script still has to learn that the batch is not whole
        result["incomplete"] = (f"{len(failed)} of {len(items)} rasters failed (their errors are in {report}); "
                                "running the batch again redoes only those.")
    return result
