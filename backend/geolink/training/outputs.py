"""What a fine-tuning run leaves: the model package with its own card, the report beside it (report.py
writes it), and the task's result (its figures and a one-line summary)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict

import numpy as np

from ..raster.source import Normaliser
from . import osm_labels
from .prepare import TrainingData
from .report import write_report
from .split import TEST, TRAIN, VAL
from .train import Trained


def write_outputs(config, model_path: Path, base_card, data: TrainingData, trained: Trained, device,
                  seconds: float) -> Dict[str, str]:
    """Write the package and its report; return {output name: path}."""
    from .. import models

    out = Path(config.out)
    card = package_card(config, model_path, base_card, data, trained)
    models.save_package(trained.segmenter.cpu(), out, card, classes=data.labels.classes, encoder_only=True)
    report = {"classes": data.labels.classes, "validation": trained.validation, "test": trained.test,
              "history": trained.fit.history, "summary": _summary(config, model_path, data, trained, device, seconds),
              "osm_labels": data.osm_report}
    return {"model": str(out), **write_report(report, out)}


def task_result(data: TrainingData, trained: Trained, outputs: Dict[str, str], seconds: float) -> dict:
    """The task's result: its outputs, the figures of the scores users see, and a line saying them."""
    final, best_epoch = trained.final, trained.fit.best_epoch
    figures = {"scored_on": trained.scored_on, "overall_accuracy": final["overall_accuracy"],
               "balanced_accuracy": final["balanced_accuracy"], "mean_iou": final["mean_iou"],
               "validation_mean_iou": trained.validation["mean_iou"], "best_epoch": best_epoch,
               "seconds": round(seconds, 1), "classes": data.labels.class_names, "per_class": final["classes"],
               **({"osm_labels": data.osm_report} if data.osm_report else {})}
    return {"outputs": outputs, "figures": figures,
            "report": f"{trained.scored_on.capitalize()}: overall accuracy {final['overall_accuracy']}, balanced "
                      f"accuracy {final['balanced_accuracy']}, mean IoU {final['mean_iou']} ({final['pixels']} "
                      f"pixels); best epoch {best_epoch}; {seconds:.0f} s."}


def package_card(config, model_path: Path, base_card, data: TrainingData, trained: Trained):
    """The fine-tuned package's own card: its name, its base (named, not copied), its training data (raster,
    label layer, classes with their training pixels), its held-out scores, the resolution and stretch it was
    trained with and the date. The base's summary and scores describe another model and are left out."""
    labels, part, final, scored_on = data.labels, data.part, trained.final, trained.scored_on
    pixels = data.windows.polygon_pixels(len(labels.geometries))
    train = part == TRAIN
    class_pixels = np.bincount(labels.class_ids[train], weights=pixels[train], minlength=len(labels.classes))
    base_name = base_card.name or model_path.stem
    held = int((part == (TEST if scored_on == "test" else VAL)).sum())
    provenance = {
        "task": "finetune",
        "summary": (f"{len(labels.classes)}-class {_head_text(trained)} head fine-tuned from '{base_name}' on "
                    f"{int(train.sum())} polygons of {_label_source(config)} over {Path(config.raster).name} "
                    f"({data.gsd:g} m); {scored_on} scores on {held} held-out polygons: balanced accuracy "
                    f"{final['balanced_accuracy']}, mean IoU {final['mean_iou']}."),
        "base_model": {"name": base_name, "file": model_path.name, "architecture": base_card.architecture},
        "training_data": {"raster": Path(config.raster).name, "labels": _label_source(config),
                          "class_field": config.class_field, "gsd_m": data.gsd,
                          "classes": {n: int(v) for n, v in zip(labels.class_names, class_pixels)},
                          "polygons": {"train": int(train.sum()), "validation": int((part == VAL).sum()),
                                       "test": int((part == TEST).sum())},
                          "validation_polygons": data.split_how, "window": data.windows.size},
        "head": config.head, "unfrozen_blocks": config.unfreeze, "epochs": trained.fit.best_epoch,
        "patch_mix": config.patch_mix,
        scored_on: {k: final[k] for k in ("overall_accuracy", "balanced_accuracy", "mean_iou", "pixels")},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if data.osm_report:  # zones --compare-osm reads the tag map back from here
        provenance["tag_map"] = {"source": data.osm_report["tag_map"], "classes": data.osm_report["tag_map_classes"]}
    card = trained.segmenter.card
    stretch = trained_stretch(card, data.normalise, data.raster_dtype)
    return card.replace(name=Path(config.out).stem, normalisation=stretch, gsd=data.gsd, provenance=provenance)


def trained_stretch(card, normalise: Normaliser, dtype: str) -> dict:
    """The card's normalisation with the stretch the head was trained with made explicit (low/high per band),
    for rasters of the training raster's data type.

    Without it a package would stretch each raster it classifies from that raster's own percentiles, so a
    crop of the training scene, or a mostly-sea extent, would be stretched differently from the training data.
    """
    return {**card.normalisation, "low": [float(v) for v in normalise.low],
            "high": [float(v) for v in normalise.high], "low_high_dtype": dtype}


def _label_source(config) -> str:
    if config.labels:
        return Path(config.labels).name
    return "OSM " + ", ".join(Path(p).name for p in config.osm_labels) + f" (tag map {config.tag_map})"


def _head_text(trained: Trained) -> str:
    """The head in words: its decoder, and how many decoders it averages when more than one."""
    head = trained.segmenter.head_card()
    members = head["members"]
    return head["decoder"] + (f" ({members} decoders averaged)" if members > 1 else "")


def _summary(config, model_path: Path, data: TrainingData, trained: Trained, device, seconds: float) -> dict:
    """The report's summary: what was trained on what, how, and how long it took."""
    part = data.part
    return {"base model": str(model_path), "raster": str(config.raster),
            "labels": str(config.labels or ", ".join(config.osm_labels)),
            "class field": config.class_field or "(OSM tags)", "head": _head_text(trained),
            "unfrozen blocks": config.unfreeze,
            "polygons": f"{int((part == TRAIN).sum())} training, {int((part == VAL).sum())} validation, "
                        f"{int((part == TEST).sum())} test",
            "validation polygons": data.split_how, "windows": len(data.windows.positions),
            "samples": len(data.sample_win), "best epoch": trained.fit.best_epoch,
            "epochs run": len(trained.fit.history), "device": str(device), "seconds": round(seconds, 1),
            "seconds training": round(trained.seconds, 1),
            **(osm_labels.summary_lines(data.osm_report) if data.osm_report else {})}
