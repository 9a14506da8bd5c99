"""Many rasters, one task: `geolink batch` on this machine (a process pool) or on a Ray cluster.

plan.py     which rasters, which outputs, what a rerun may skip, the JSON report and the mosaic
run.py      the scheduler every engine shares: bounded in-flight work, retries when a worker dies, cancel
local.py    the process-pool engine;  ray_engine.py  the Ray engine (imported only with --engine ray)
"""
