"""The CLIP ViT-B/16 text encoder that the official multimodal GeoLink weights embed OSM tags with: which files
it needs, where they are looked for, checking a folder, and fetching them from the Hugging Face hub.

Only the text encoder's files are fetched (weights as safetensors, never the pickled pytorch_model.bin), at a
pinned revision, into a folder of their own; a download is made in `<folder>.download` and put in place only
when complete and checked, and a stopped one resumes from there. When the hub cannot be reached (offline, a
firewall, HF_HUB_OFFLINE) the error says which files to copy from another computer and how to choose them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlparse

from ..errors import Cancelled, InputError, cmd, opt
from ..model_store import user_model_dir
from ..progress import Progress

CLIP_REPO = "openai/clip-vit-base-patch16"
CLIP_REVISION = "57c216476eefef5ab752ec549e440a49ae4ae5f3"  # the repository's commit the files are taken from
WEIGHTS = "model.safetensors"
CLIP_FILES = ("config.json", WEIGHTS, "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json")
APPROX_SIZE = "about 600 MB"
HUB_TIMEOUT_S = 10.0  # GEOLINK_HUB_TIMEOUT overrides: how long to wait for the hub before calling it unreachable


def files_url() -> str:
    return f"https://huggingface.co/{CLIP_REPO}/tree/{CLIP_REVISION}"


def default_folder() -> Path:
    """Where `geolink text-encoder fetch` puts the files unless told otherwise (found there automatically)."""
    return user_model_dir().parent / "text-encoders" / "clip-vit-base-patch16"


def missing_files(folder: Path) -> List[str]:
    """What a folder lacks to be the text encoder: the config, the safetensors weights, a tokenizer (tokenizer.json,
    or vocab.json with merges.txt, as save_pretrained writes them)."""
    have = {p.name for p in Path(folder).iterdir()} if Path(folder).is_dir() else set()
    missing = [f for f in ("config.json", WEIGHTS) if f not in have]
    if "tokenizer.json" not in have and not {"vocab.json", "merges.txt"} <= have:
        missing.append("tokenizer.json (or vocab.json and merges.txt)")
    return missing


def check_folder(folder: Path) -> Dict[str, object]:
    """A folder holding a CLIP text model, or InputError saying what is wrong and which files it needs.
    Returns {"folder", "dim", "size_mb"}; reads config.json only (the weights load when tags are embedded)."""
    import json

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"The folder {folder} does not exist.", hint=_files_hint(), option="folder")
    missing = missing_files(folder)
    if missing:
        pickled = " (it holds pytorch_model.bin, a pickle that GeoLink does not load: take model.safetensors)" \
            if (folder / "pytorch_model.bin").exists() and WEIGHTS in " ".join(missing) else ""
        raise InputError(f"The folder {folder} is not the CLIP text encoder: it lacks {', '.join(missing)}{pickled}.",
                         hint=_files_hint(), option="folder")
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / 'config.json'} cannot be read: {exc}.", hint=_files_hint(),
                         option="folder") from None
    text = config.get("text_config") or config
    if config.get("model_type") not in ("clip", "clip_text_model") or not isinstance(text.get("hidden_size"), int):
        raise InputError(f"{folder} holds a {config.get('model_type') or 'unknown'} model, not CLIP's text encoder.",
                         hint=_files_hint(), option="folder")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"folder": str(folder), "dim": int(text["hidden_size"]), "size_mb": round(size / 1e6, 1)}


def _cached_snapshot(revision: Optional[str]) -> Optional[str]:
    """The repository in the local Hugging Face cache at `revision` (None: the one the cache calls main), if there."""
    from huggingface_hub import snapshot_download

    try:
        # The local cache only (local_files_only): nothing is downloaded, so no revision needs pinning here.
        return snapshot_download(CLIP_REPO, revision=revision, local_files_only=True,  # nosec B615  local cache only
                                 cache_dir=os.environ.get("HF_HUB_CACHE"))
    except Exception:  # the hub library raises several types for "not in the cache"
        return None


def _files_hint() -> str:
    return (f"The text encoder is these files of {CLIP_REPO} ({files_url()}), in one folder: "
            f"{', '.join(CLIP_FILES)} ({APPROX_SIZE}).")


def find_folder() -> str:
    """The CLIP text encoder's folder: GEOLINK_CLIP_DIR (the plugin's setting), else `default_folder()`, else the
    Hugging Face cache; InputError saying how to set it up when none has it."""
    named = os.environ.get("GEOLINK_CLIP_DIR")
    if named:
        if not (Path(named) / "config.json").is_file():
            raise InputError(f"GEOLINK_CLIP_DIR={named} is not a saved transformers model folder (no config.json).",
                             hint="Point the GeoLink setting 'Tag encoder folder (CLIP)' at the folder that holds "
                                  "the text encoder's files.")
        return named
    if not missing_files(default_folder()):
        return str(default_folder())
    cached = _cached_snapshot(CLIP_REVISION) or _cached_snapshot(None)
    if cached:
        return cached
    raise InputError(f"The CLIP text encoder ({CLIP_REPO}) is not set up on this computer: it is not in "
                     f"{default_folder()} nor in the Hugging Face cache.",
                     hint=f"Set it up with {cmd('text-encoder')} (a download, or a folder copied from another "
                          "computer); models trained with the offline default 'minilm' do not need it.")


# ---------------------------------------------------------------- fetching from the hub

def hub_timeout() -> float:
    try:
        return float(os.environ.get("GEOLINK_HUB_TIMEOUT") or HUB_TIMEOUT_S)
    except ValueError:
        return HUB_TIMEOUT_S


def offline_error(reason: str) -> InputError:
    """The error for a hub that cannot be reached: what to download elsewhere, and how to choose it here."""
    return InputError(
        f"The Hugging Face hub cannot be reached from this computer ({reason}), so the CLIP text encoder cannot be "
        "downloaded here.",
        hint=f"On a computer with internet, download these {len(CLIP_FILES)} files of {CLIP_REPO} from "
             f"{files_url()} into one folder: {', '.join(CLIP_FILES)} ({APPROX_SIZE}; model.safetensors is the "
             f"large one). Copy that folder to this computer and choose it with {opt('folder')}.",
        option="folder")


def hub_file_sizes(timeout: float) -> Dict[str, int]:
    """The sizes of CLIP_FILES at the pinned revision, asked of the hub within `timeout` seconds (a thread, so
    that even a name lookup that never answers cannot hang the caller); offline_error when it does not answer."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise offline_error("HF_HUB_OFFLINE is set: downloads are turned off")
    answer: dict = {}

    def ask() -> None:
        from huggingface_hub import HfApi

        try:
            info = HfApi().model_info(CLIP_REPO, revision=CLIP_REVISION, files_metadata=True, timeout=timeout)
            answer["sizes"] = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        except Exception as exc:  # connection, timeout, proxy, HTTP errors: all mean "not reachable" here
            answer["error"] = exc

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if "sizes" in answer:
        absent = [f for f in CLIP_FILES if f not in answer["sizes"]]
        if absent:
            raise InputError(f"{CLIP_REPO} at revision {CLIP_REVISION} lacks {', '.join(absent)}.",
                             hint=_files_hint())
        return {f: answer["sizes"][f] for f in CLIP_FILES}
    exc = answer.get("error")
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}" if exc \
        else f"no answer within {timeout:g} s"
    raise offline_error(f"{urlparse(constants.ENDPOINT).netloc or constants.ENDPOINT}, {reason}")


def _progress_bar(progress: Progress, total: int):
    """A tqdm class for snapshot_download that reports the bytes written as `progress` and stops the download
    (from its threads) when the job is cancelled. Byte bars are told apart from the file-count bar by their unit;
    the largest count among them is the bytes done, whatever names the hub library gives its bars."""
    from tqdm import tqdm

    lock = threading.Lock()
    counts: Dict[int, float] = {}
    shown = {"pct": -1.0}

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": False, "file": open(os.devnull, "w")})  # noqa: SIM115

        def update(self, n=1):
            out = super().update(n)
            if self.unit == "B":
                with lock:
                    counts[id(self)] = self.n
                    pct = min(99.0, 100.0 * max(counts.values()) / max(total, 1))
                    if pct - shown["pct"] >= 0.5:
                        shown["pct"] = pct
                        progress.update(pct, f"Downloading the CLIP text encoder: "
                                             f"{max(counts.values()) / 1e6:,.1f} of {total / 1e6:,.1f} MB")
            progress.check_cancelled()
            return out

        def close(self):
            file = self.fp
            super().close()
            if file is not None and not file.closed:
                file.close()

    return Bar


def fetch(folder: Optional[Path], progress: Progress) -> Dict[str, object]:
    """Put the CLIP text encoder in `folder` (default: `default_folder()`): nothing to do when it is complete
    there, else its files from the hub at the pinned revision, with progress and cancel."""
    target = Path(folder) if folder else default_folder()
    if not missing_files(target):
        found = check_folder(target)
        progress.log(f"The CLIP text encoder is already in {target}.")
        return {**found, "downloaded_mb": 0.0}
    if target.is_file() or (target.is_dir() and any(target.iterdir())):
        raise InputError(f"{target} already holds other files; the text encoder goes into a folder of its own.",
                         hint=f"Give {opt('folder')} a new or empty folder.", option="folder")
    progress.update(0, "Asking the Hugging Face hub")
    sizes = hub_file_sizes(hub_timeout())
    total = sum(sizes.values())
    staging = target.with_name(target.name + ".download")
    staging.mkdir(parents=True, exist_ok=True)
    from huggingface_hub import snapshot_download

    try:
        # Pinned revision, only the files the text encoder needs.
        snapshot_download(CLIP_REPO, revision=CLIP_REVISION, allow_patterns=list(CLIP_FILES),  # nosec B615  pinned
                          local_dir=str(staging), tqdm_class=_progress_bar(progress, total), max_workers=4,
                          etag_timeout=hub_timeout())
    except (Cancelled, InputError):
        raise
    except Exception as exc:  # the connection dropped or the disk filled: said in words, the staging kept
        raise InputError(f"The download of the CLIP text encoder stopped: {type(exc).__name__}: {exc}",
                         hint=f"Run it again to resume it (the files so far are in {staging}).") from None
    progress.check_cancelled()
    found = check_folder(staging)
    if target.is_dir():
        target.rmdir()  # empty (checked above)
    staging.rename(target)
    progress.update(100, "Done")
    return {**found, "folder": str(target), "downloaded_mb": round(total / 1e6, 1)}
