"""An inference job: what classify, embed and zones share (the model, the raster grid, the windows, the OSM
graphs), with what a task asks of it: run the engine, its figures, its provenance, its output rasters."""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from ..atomic import OutputSet
from ..errors import InputError, ModelError, cmd, opt
from ..models.card import ModelCard
from ..osm.window_graphs import WindowGraphs
from ..progress import Progress
from ..raster.source import Normaliser, Source, gsd_warning, parse_band_list, parse_extent
from ..raster.windows import WindowPlan
from ..raster.writer import Handle, geotiff, provenance
from .engine import Predict, RunStats, Runtime, Sink, run_windows
from .options import RasterOptions


@dataclass
class Loaded:
    """A model package ready to run."""

    module: object
    card: ModelCard
    path: Path

    @property
    def name(self) -> str:
        """The package's file name: what the user chose it by (a fine-tuned card may keep its base's name)."""
        return self.path.stem

    @classmethod
    def open(cls, spec: str, device) -> Loaded:
        """The package `spec` (a path or an installed model's name, e.g. 'default') on `device`, in eval mode."""
        from ..model_store import resolve_model

        path = Path(resolve_model(spec or "default"))
        module = _open_module(str(path.resolve()), path.stat().st_mtime_ns, str(device))
        return cls(module, module.card, path)


@functools.lru_cache(maxsize=1)
def _open_module(path: str, mtime_ns: int, device: str):
    """The last model opened stays loaded, so a batch worker running raster after raster loads it once."""
    from ..models import load_model

    return load_model(path).to(device).eval()


def cap_fusion_nodes(module, k: Optional[int]) -> None:
    """Set the GeoLink encoder(s) in `module` to fuse at most k OSM nodes per window (None: all)."""
    from ..models import GeoLinkModel

    for m in module.modules():
        if isinstance(m, GeoLinkModel):
            m.max_fusion_nodes = k


def graph_collator(module, pin: bool) -> Optional[Callable[[list], object]]:
    """A batch's graphs collated as the GeoLink encoder in `module` collates them (its text width, its fusion
    cap), packed into page-locked buffers with `pin` (for a GPU), so the engine's reader thread does it while
    the model runs; None unless `module` holds one GeoLink encoder with an OSM branch."""
    from ..models import GeoLinkModel, collate_graphs

    encoders = [m for m in module.modules() if isinstance(m, GeoLinkModel)]
    if len(encoders) != 1 or not encoders[0].has_osm:
        return None
    encoder = encoders[0]

    def collate(graphs: list):
        batch = collate_graphs(graphs, encoder.text_dim, encoder.max_fusion_nodes)
        return batch.pack(pin=True) if pin else batch
    return collate


@dataclass
class Job:
    """Everything a raster task needs to run the engine and write its outputs."""

    options: RasterOptions
    model: Loaded
    source: Source
    bands: List[int]
    normalise: Normaliser
    plan: WindowPlan
    runtime: Runtime
    graphs: Optional[WindowGraphs]

    @property
    def classes(self) -> list:
        """The model's classes [{name, color}]; a model without a head that predicts them is refused."""
        if not self.model.card.predicts_classes:
            raise ModelError(f"The model {self.model.name} has no segmentation head with classes.",
                             hint=f"Use a model fine-tuned with {cmd('finetune')}, or {cmd('embed')} for features.")
        return self.model.card.classes

    def run(self, predict: Predict, channels: int, sink: Sink, progress: Progress, message: str) -> RunStats:
        """Stream every window through `predict` into `sink`; refused (so no output is kept) when every window
        was nodata."""
        t0 = time.monotonic()
        graph_for = self.graphs if self.graphs is not None and self.graphs.encoder is not None else None
        collate = graph_collator(self.model.module, self.runtime.pinned) if graph_for is not None else None
        stats = run_windows(self.source, self.bands, self.normalise, self.plan, predict, channels, sink,
                            self.runtime, progress, graph_for, message, collate)
        stats.seconds = time.monotonic() - t0
        if stats.windows and stats.skipped == stats.windows:
            raise InputError("Every pixel of the raster (or of the processing extent) is nodata; nothing to process.",
                             hint=f"Check the raster's nodata value and {opt('extent')}.")
        return stats

    def figures(self, stats: RunStats) -> dict:
        return {"windows": stats.windows, "windows_skipped_nodata": stats.skipped,
                "windows_with_osm": stats.with_osm, "seconds": round(stats.seconds, 2),
                "seconds_model": round(stats.seconds_model, 2),
                "windows_per_second": round(stats.windows / max(stats.seconds, 1e-9), 2),
                "width": self.source.width, "height": self.source.height,
                "pixel_size": self.source.pixel_size, "pixel_size_m": round(self.source.pixel_metres, 4),
                "model_gsd_m": self.model.card.gsd, "tile": self.plan.tile,
                "overlap": self.plan.overlap,
                "device": str(self.runtime.device), "batch_size": self.runtime.batch_size,
                "model": self.model.name, "bands": self.bands}

    def provenance(self, task: str, **extra) -> Dict[str, str]:
        """The GEOLINK_* metadata of this job's outputs (writer.provenance), with `extra` items."""
        o = self.options
        return provenance(task, self.model.path, self.model.card, o.raster, o.osm, extra, o.osm_max_nodes)

    @contextlib.contextmanager
    def output_raster(self, path, bands: int, dtype: str, nodata: Optional[float] = None,
                      metadata: Optional[Dict[str, str]] = None, block_rows: int = 256,
                      outputs: Optional[OutputSet] = None) -> Iterator[Handle]:
        """A GeoTIFF on the job's output grid (the raster's, or one pixel per patch for patch outputs), closed
        and checked when the block completes. With `outputs` it is written under the temporary name the set
        gives `path` and renamed with the task's other files; without, at `path` (a scratch file)."""
        gt = list(self.source.geotransform)
        gt[1] *= self.plan.factor
        gt[5] *= self.plan.factor
        with geotiff(outputs.partial(path) if outputs is not None else path, self.plan.out_width,
                     self.plan.out_height, bands, dtype, gt, self.source.wkt, nodata, metadata, block_rows) as handle:
            yield handle


def prepare(options: RasterOptions, progress: Progress, patch_outputs: bool = False,
            default_overlap: float = 0.25) -> Job:
    """Open the model and the raster, choose bands, normalisation, grid and windows, read the OSM.
    With `patch_outputs` the outputs are one pixel per model patch (embeddings), else per pixel."""
    runtime = Runtime(options.device, options.batch_size, progress)
    progress.update(0, "Loading the model")
    model = Loaded.open(options.model, runtime.device)
    spec = model.card
    gsd = None if options.native else (options.gsd or spec.gsd)
    source = Source(options.raster, parse_extent(options.extent), gsd)
    bands = source.choose_bands(spec.bands, parse_band_list(options.bands))
    progress.log(f"Raster {source.width} x {source.height} px at {source.describe_resolution()}"
                 f"{'' if spec.gsd else ' (the model card gives no ground sample distance)'}; "
                 f"bands {bands} -> {', '.join(spec.bands)}; {runtime.describe()}")
    warning = gsd_warning(spec.gsd, source.pixel_metres, "its own resolution, as asked" if options.native
                          else "the ground sample distance asked for")
    if warning:
        progress.warn(warning)
    normalise = source.normaliser(spec.normalisation, bands)
    tile = options.tile_size or spec.input_size
    if tile % spec.patch_size:
        raise InputError(f"The tile size ({tile}) must be a multiple of the model's patch size ({spec.patch_size}).")
    factor = spec.patch_size if patch_outputs else 1
    overlap = options.overlap if options.overlap >= 0 else int(tile * default_overlap)
    overlap -= overlap % factor
    plan = WindowPlan(source.width, source.height, tile, overlap, factor)
    graphs = None
    if options.osm_max_nodes < 0:
        raise InputError(f"{opt('osm_max_nodes')} must be 0 (every entity) or more, got {options.osm_max_nodes}.")
    cap_fusion_nodes(model.module, options.osm_max_nodes or None)  # every job: the module may be a kept one
    if options.osm:
        progress.update(2, "Reading OSM")
        text_encoder = model.card.text_encoder_name
        graphs = WindowGraphs.from_files(options.osm, source.wkt, source.bounds, text_encoder, str(runtime.device),
                                         progress.sub(2, 5))
        if not len(graphs.inside):
            progress.warn(no_overlap_message(graphs.index.bounds, source.bounds))
        elif text_encoder is None:
            progress.warn(f"The model {model.name} has no OSM branch: it uses the image alone.")
    return Job(options, model, source, bands, normalise, plan, runtime, graphs)


def no_overlap_message(osm_bounds: Optional[tuple], raster_bounds: tuple) -> str:
    """What to tell the user when the OSM files have nothing over the raster: both extents, in the raster's CRS."""
    def box(b):
        return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"
    where = f"they cover {box(osm_bounds)}" if osm_bounds else "they hold no feature at all"
    return (f"The OSM files hold no feature in the raster's area, so the image is used alone: {where}, the raster "
            f"{box(raster_bounds)} (xmin, ymin, xmax, ymax in the raster's CRS). Check that they are of the same "
            "place.")
