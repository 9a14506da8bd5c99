"""`geolink import-checkpoint`: an official GeoLink .pth -> this project's model package (.safetensors)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import option
from ..errors import InputError, ModelError, opt
from ..progress import Progress

HELP = """Convert an official GeoLink checkpoint (.pth: the multimodal one, or the unimodal ViT one) into a
model package: one .safetensors file with a JSON card (architecture and sizes, tag text encoder, bands and
normalisation, provenance with the source file's SHA-256). The checkpoint is read with
torch.load(weights_only=True) and checked key by key and shape by shape; nothing is unpickled. Its SHA-256 is shown
and written into the package's card."""

NOT_A_CHECKPOINT = (f"Choose for {opt('src')} one of the two official GeoLink checkpoints (.pth, about 1.2 GB: image "
                    "only or multimodal) as downloaded; the links are in the GeoLink models dialog and the README.")


@dataclass
class Config:
    src: str = option(positional=True, required=True, metavar="SRC", role="input",
                      help="official GeoLink checkpoint (.pth)")
    out: str = option(flag="--out", required=True, metavar="PKG", role="output",
                      help="output model package (.safetensors)")
    name: Optional[str] = option(None, flag="--name", help="model name shown in QGIS (default: the output's stem)")
    text_encoder: Optional[str] = option(None, flag="--text-encoder", metavar="NAME",
                                         help="tag text encoder the checkpoint was trained with "
                                              "(default: clip for 512-d, minilm for 384-d)")
    bands: str = option("red,green,blue", flag="--bands", help="input band names, in order")
    gsd: Optional[float] = option(None, flag="--gsd", metavar="METRES",
                                  help="ground sample distance the model expects (default: none, use the raster's)")
    half: bool = option(False, flag="--half", help="store the weights as float16 (half the size)")
    encoder_only: bool = option(False, flag="--encoder-only",
                                help="leave out the pretraining parts (MAE decoder, graph readout)")


def run(config: Config, progress: Progress) -> dict:
    from ..model_store import sha256_of
    from ..models import read_card, save_package
    from ..models.checkpoint import load_official, sniff

    t0 = time.monotonic()
    src, out = Path(config.src), Path(config.out)
    if out.suffix != ".safetensors":
        raise InputError(f"The output must be a .safetensors file, got {out.name}.")
    if out.resolve() == src.resolve():
        raise InputError("The output would overwrite the checkpoint.")
    try:
        sniff(src)
        sha256 = sha256_of(src, progress.sub(0, 40))
        progress.log(f"SHA-256 of {src.name}: {sha256}")
        progress.update(40, f"Reading and checking {src.name}")
        model = load_official(src, sha256=sha256)
    except ModelError as exc:  # what is wrong with the file, and which files are meant
        raise ModelError(exc.message, hint=NOT_A_CHECKPOINT, option="src") from None
    progress.update(70, "Writing the package")
    bands = [b.strip() for b in config.bands.split(",") if b.strip()]
    if len(bands) != model.config.in_chans:
        raise InputError(f"{opt('bands')} names {len(bands)} bands; the model takes {model.config.in_chans}.")
    card = model.card.replace(name=config.name or out.stem, bands=bands, gsd=config.gsd)
    if config.text_encoder and card.text_encoder:
        card.text_encoder = {**card.text_encoder, "name": config.text_encoder}
    save_package(model, out, card, half=config.half, encoder_only=config.encoder_only,
                 provenance={"imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    written = read_card(out)
    progress.update(100, "Done")
    size_mb = out.stat().st_size / 1e6
    return {"outputs": {"model": str(out)},
            "figures": {"architecture": written.architecture, "multimodal": bool(written.config["osm"]),
                        "parameters": sum(p.numel() for p in model.parameters()), "size_mb": round(size_mb, 1),
                        "source_sha256": written.provenance["source_sha256"],
                        "text_encoder": written.text_encoder_name or "",
                        "seconds": round(time.monotonic() - t0, 2)},
            "report": f"{written.architecture} -> {out} ({size_mb:.1f} MB)"}
