"""`geolink finetune`: train a task head on hand-labelled polygons into a model package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..config import option
from ..devices import DEVICE_CHOICES
from ..models.card import DECODERS
from ..progress import Progress

HELP = """Fine-tune a classification head on polygons you labelled, into a model package.

Draw polygons over the imagery and give each a class in a field (text or integer). The polygons are
burnt on the model's pixel grid (where polygons of different classes overlap, the smaller one wins);
unlabelled pixels are ignored. The head averages --members half-width decoders (3), trained side by side from
different initial weights: with a few dozen polygons one decoder's map depends on chance; three score higher
on held-out polygons and classify in about the time of one full-width decoder (--members 1).
The frozen encoder's features are computed once per training window
(with flips and quarter turns), so an epoch costs only the head; --unfreeze K also trains the last K
encoder blocks. --patch-mix pastes blocks of one window into another in a share of the batches, so a class
is learnt less from its surroundings (a village by the water is then not taken for marsh).
A share of the polygons (--val-fraction, chosen by spatial blocks, or the polygons marked 'val'/'test' in
--split-field) is held out; training stops when their mean IoU stops improving.
The output package (encoder + head + class names and colours) works with `geolink classify` and
`geolink zones`; a report (JSON, HTML, PNG) beside it gives per-class precision, recall and IoU,
accuracies and the confusion matrix. An interrupted run resumes from <out>.finetune-state.safetensors.

Without drawing: --osm-labels takes OpenStreetMap polygons (.osm/.pbf, QuickOSM/Overpass exports, Geofabrik
shapefiles, GeoLink GeoJSON) as the labels, their tags turned into classes by --tag-map (built in: landcover,
urban-function; or a JSON file). OSM's loose edges lose --edge-margin metres, smaller polygons win inside larger
ones, classes are sampled in balance, and the report gives each class's label area and what was left out."""


@dataclass
class Config:
    raster: str = option(flag="--raster", required=True, role="input", help="image the polygons were drawn on")
    labels: Optional[str] = option(flag="--labels", role="input",
                                   help="labelled polygons (any OGR format); or --osm-labels")
    class_field: Optional[str] = option(flag="--class-field", help="field holding each polygon's class (--labels)")
    osm_labels: List[str] = option(default_factory=list, flag="--osm-labels", metavar="FILE", role="input",
                                   help="OSM files whose tagged polygons are the labels, instead of --labels")
    tag_map: str = option("landcover", flag="--tag-map", metavar="NAME|FILE.json",
                          help="OSM tags -> classes for --osm-labels: landcover, urban-function or a JSON file")
    edge_margin: Optional[float] = option(None, flag="--edge-margin", metavar="METRES",
                                          help="band taken off the edges of OSM label polygons, drawn loosely "
                                               "(default: one pixel of the training grid, at least 2 m)")
    model: str = option("default", flag="--model", role="input", help="base model package (name or .safetensors path)")
    out: str = option(flag="--out", required=True, role="output", help="output model package (.safetensors)")
    osm: List[str] = option(default_factory=list, flag="--osm", metavar="FILE", role="input",
                            help="OSM files for OSM-aware heads (fused image + OSM features)")
    epochs: int = option(25, flag="--epochs", minimum=1, help="most epochs (early stopping may end sooner)")
    head: str = option(DECODERS[0], flag="--head", choices=list(DECODERS),
                       help="task head: detail (default: FPN upsampled along the image's edges, sharp "
                            "edges), fpn (patch-level, blobby edges), upernet (the paper's, 4x slower), linear")
    members: int = option(3, flag="--members", minimum=1, maximum=8,
                          help="decoders trained side by side from different initial weights, their class "
                               "probabilities averaged (half-width ones; 1: one full-width decoder; a linear "
                               "head has one)")
    unfreeze: int = option(0, flag="--unfreeze", minimum=0,
                           help="encoder blocks to train too, from the last (0: frozen)")
    val_fraction: float = option(0.2, flag="--val-fraction", minimum=0,
                                 help="share of labelled pixels held out, by polygon")
    split_field: Optional[str] = option(None, flag="--split-field",
                                        help="field marking held-out polygons ('val', 'validation' or 'test')")
    colors: Optional[dict] = option(None, flag="--colors", metavar="JSON",
                                    help='class colours, e.g. {"water": "#1f78b4"} (default: a palette)')
    device: str = option("auto", flag="--device", choices=DEVICE_CHOICES, help="compute device")
    tile_size: int = option(0, flag="--tile-size", minimum=0, maximum=8192,
                            help="training window in pixels (0: the model's input size)")
    overlap: int = option(0, flag="--overlap", minimum=0,
                          help="overlap of training windows in pixels: more windows, slower feature caching")
    batch_size: int = option(8, flag="--batch-size", minimum=1, maximum=4096, help="windows per batch")
    gsd: float = option(0.0, flag="--gsd", minimum=0,
                        help="ground sample distance in metres (0: the model's, else the raster's)")
    augment: int = option(2, flag="--augment", minimum=1, maximum=8,
                          help="variants of each window (flips/quarter turns), 1-8")
    patch_mix: float = option(0.0, flag="--patch-mix", minimum=0, maximum=1,
                              help="share of training batches in which each window receives a block of another "
                                   "(features, bands and labels, on the encoder's patch grid), so classes are "
                                   "learnt less from their surroundings (default 0: off; pays with long training, "
                                   "e.g. 0.5 with --augment 8 and no early stopping)")
    patience: int = option(5, flag="--patience", minimum=1, help="epochs without improvement before stopping")
    seed: int = option(0, flag="--seed", help="random seed (split, augmentation, initialisation)")


def check_options(config: Config) -> None:
    """The options that go together (each option's own range is checked with the others, config.check_config)."""
    from pathlib import Path

    from ..errors import InputError, opt

    if bool(config.labels) == bool(config.osm_labels):
        raise InputError("Give either --labels (polygons you drew) or --osm-labels (OpenStreetMap), one of them.")
    if config.labels and not config.class_field:
        raise InputError("--labels needs --class-field, the field holding each polygon's class.")
    if config.osm_labels and config.split_field:
        raise InputError("--split-field applies to --labels; with --osm-labels the held-out pieces are chosen "
                         "spatially (--val-fraction).")
    if Path(config.out).suffix != ".safetensors":
        raise InputError(f"The output must be a .safetensors file, got {Path(config.out).name}.")
    if not 0 <= config.val_fraction < 1:
        raise InputError(f"{opt('val_fraction')} must be at least 0 and below 1.")


def run(config: Config, progress: Progress) -> dict:
    from ..training.pipeline import finetune

    check_options(config)
    return finetune(config, progress)
