"""The plan of a batch: inputs, one output per input, fingerprints for resuming, the report and the mosaic."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..atomic import OutputSet
from ..errors import InputError

SUFFIX = {"classify": ".tif", "embed": ".tif", "zones": ".gpkg"}
REPORT = "batch-report.json"
MOSAIC = "mosaic.vrt"
# Options that change how fast an output is made, not what it holds: a rerun with others still skips.
NOT_IN_FINGERPRINT = {"device", "batch_size"}


@dataclasses.dataclass
class Item:
    """One raster of the batch and what becomes of it."""

    raster: str
    output: str
    fingerprint: str
    status: str = "pending"  # pending, done, skipped, failed
    seconds: float = 0.0
    attempts: int = 0
    error: Optional[str] = None
    figures: Dict[str, object] = dataclasses.field(default_factory=dict)

    def config(self, options: dict) -> dict:
        """The single-raster task's config for this item: exactly what `geolink TASK` would get."""
        return {**options, "raster": self.raster, "out": self.output}


def expand_rasters(patterns: Sequence[str]) -> List[str]:
    """Files and glob patterns -> existing files, in a stable order, each once."""
    found: List[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        files = [m for m in matches if Path(m).is_file()]
        if not files:
            raise InputError(f"No raster file matches {pattern!r}.",
                             hint="Give raster files or a quoted pattern such as 'tiles/*.tif'.")
        found += [str(Path(f).resolve()) for f in files]
    return list(dict.fromkeys(found))


def fingerprint(task: str, model_sha256: str, options: dict, raster: str) -> str:
    """What an output depends on: the task, the model's bytes, the options and the input file as it is now."""
    stat = os.stat(raster)
    key = {"task": task, "model": model_sha256, "raster": raster, "size": stat.st_size, "mtime": stat.st_mtime_ns,
           "options": {k: v for k, v in sorted(options.items()) if k not in NOT_IN_FINGERPRINT}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def plan(task: str, rasters: Sequence[str], out_dir: Path, options: dict, model_sha256: str,
         force: bool) -> List[Item]:
    """One item per raster, named after its stem; items whose output exists from the same inputs are skipped."""
    names: Dict[str, str] = {}
    for raster in rasters:
        stem = Path(raster).stem
        if stem in names:
            raise InputError(f"Two rasters would write the same output {stem}{SUFFIX[task]}: {names[stem]} and "
                             f"{raster}.", hint="Outputs are named after the input's name: rename one of them.")
        names[stem] = raster
    inputs = {str(Path(r).resolve()) for r in rasters}
    previous = {} if force else read_report(out_dir)
    items = []
    for raster in rasters:
        output = str((out_dir / (Path(raster).stem + SUFFIX[task])).resolve())
        if output in inputs:
            raise InputError(f"The output {output} would replace the input raster of that name.",
                             hint="Choose an output folder that does not hold the input rasters.")
        item = Item(raster, output, fingerprint(task, model_sha256, options, raster))
        before = previous.get(output)
        if before and before.get("status") in ("done", "skipped") and before.get("fingerprint") == item.fingerprint \
                and Path(output).is_file():
            item.status = "skipped"
        items.append(item)
    return items


def read_report(out_dir: Path) -> Dict[str, dict]:
    """The previous run's items by output path (empty when there is no readable report)."""
    try:
        data = json.loads((out_dir / REPORT).read_text(encoding="utf-8"))
        return {i["output"]: i for i in data.get("items", []) if isinstance(i, dict) and "output" in i}
    except (OSError, ValueError, TypeError):
        return {}


def write_report(out_dir: Path, summary: dict, items: Sequence[Item]) -> Path:
    target = out_dir / REPORT
    with OutputSet([target]) as outputs:
        outputs.partial(target).write_text(json.dumps({**summary, "items": [dataclasses.asdict(i) for i in items]},
                                                      indent=2, default=str), encoding="utf-8")
    return target


def build_mosaic(out_dir: Path, outputs: Sequence[str]) -> Optional[Path]:
    """DIR/mosaic.vrt over the outputs (with the first output's QGIS style), or None when they do not share a
    CRS and band count (a VRT cannot hold those)."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    if not outputs:
        return None
    crs, bands = set(), set()
    for path in outputs:
        ds = gdal.Open(path)
        srs = osr.SpatialReference(wkt=ds.GetProjection())
        crs.add(srs.ExportToProj4())
        bands.add(ds.RasterCount)
        ds = None
    if len(crs) > 1 or len(bands) > 1:
        return None
    target = out_dir / MOSAIC
    with OutputSet([target]) as written:
        # The VRT names its sources relative to itself, in the same folder: the partial name does not matter.
        vrt = gdal.BuildVRT(str(written.partial(target)), list(outputs))
        vrt.FlushCache()
        vrt = None
        style = Path(outputs[0]).with_suffix(".qml")
        if style.is_file():
            written.sidecar(target, ".qml").write_text(style.read_text(encoding="utf-8"), encoding="utf-8")
    return target
