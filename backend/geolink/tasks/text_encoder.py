"""`geolink text-encoder fetch|check`: the CLIP text encoder that the official multimodal GeoLink weights need."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import option
from ..progress import Progress

HELP = """Set up the CLIP ViT-B/16 text encoder (openai/clip-vit-base-patch16) that the official multimodal GeoLink
weights embed OSM tags with. `fetch` downloads only the files it needs (about 600 MB) from the Hugging Face hub at a
pinned revision, with progress; a stopped download resumes. `check` checks a folder (say, one copied from a computer
with internet when this one has none) and embeds a few tags with it. Without --folder both use the folder the
backend finds by itself (GEOLINK_CLIP_DIR, else the GeoLink data folder)."""

SAMPLE_TAGS = ["building:yes", "natural:water;water:pond", "landuse:residential"]


@dataclass
class Config:
    action: str = option(positional=True, required=True, choices=["fetch", "check"], metavar="fetch|check",
                         help="fetch: download from the Hugging Face hub; check: check a folder and embed tags with it")
    folder: Optional[str] = option(None, flag="--folder", metavar="DIR",
                                   help="the text encoder's folder (fetch: where to put it; check: the one to check)")


def run(config: Config, progress: Progress) -> dict:
    from ..osm import clip_text

    t0 = time.monotonic()
    folder = Path(config.folder) if config.folder else None
    if config.action == "fetch":
        found = clip_text.fetch(folder, progress.sub(0, 80))
    else:
        found = clip_text.check_folder(folder or Path(clip_text.find_folder()))
    progress.update(80, "Embedding a few tags with it")
    dim = _embed_sample(found["folder"])
    progress.update(100, "Done")
    where = found["folder"]
    automatic = str(Path(where)) in (str(clip_text.default_folder()), os.environ.get("GEOLINK_CLIP_DIR", ""))
    use = "found there by every command" if automatic else \
        f"to use it, set GEOLINK_CLIP_DIR={where} (in QGIS: the settings' Tag encoder folder)"
    return {"outputs": {"folder": where},
            "figures": {"dim": dim, "size_mb": found["size_mb"], "downloaded_mb": found.get("downloaded_mb", 0.0),
                        "revision": clip_text.CLIP_REVISION if config.action == "fetch" else "",
                        "seconds": round(time.monotonic() - t0, 2)},
            "report": f"CLIP text encoder ready in {where} ({dim}-d tag embeddings; {use})."}


def _embed_sample(folder: str) -> int:
    """Load the model and embed a few tags, as a graph build would: a folder that cannot is refused here."""
    from ..osm.text import TransformerTextEncoder, default_tag_weights, embed_labels

    vectors = embed_labels(SAMPLE_TAGS, TransformerTextEncoder(folder), default_tag_weights())
    if not bool(vectors.isfinite().all()) or vectors.shape[0] != len(SAMPLE_TAGS):
        from ..errors import ModelError

        raise ModelError(f"The text model in {folder} gives no usable tag embeddings.")
    return int(vectors.shape[1])
