"""Official GeoLink checkpoints (.pth) -> GeoLinkModel, strictly validated, never unpickled.

Two layouts are accepted:
- multimodal: {"model_config": {"architecture": ...}, "model_state_dict": {...}} with the keys of
  GeoLink's pretraining module (torch_geometric 2.4 names GATConv's shared weight `lin_src` and
  `lin_dst`; current versions call it `lin`);
- unimodal: a plain timm / MAE ViT state dict (bare, or under "model", "state_dict" or
  "model_state_dict"), loaded into an image-only model; MAE decoder keys are ignored.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch

from ..errors import InputError, ModelError
from ..model_store import sha256_of
from .card import ModelCard
from .config import ARCHS, GeoLinkConfig
from .geolink import GeoLinkModel

GAT_LIN = re.compile(r"^(osm_encoder\.convs\.\d+\.convs\.<[a-z_]+>)\.lin_(src|dst)\.weight$")
VIT_BY_WIDTH = {192: ARCHS["tiny"], 384: ARCHS["small"], 768: ARCHS["base"], 1024: ARCHS["large"],
                1280: "vit_huge_patch16_224"}
MAE_DECODER = re.compile(r"^(decoder_|mask_token$)")
Shapes = Dict[str, Tuple[int, ...]]


def read_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True (argparse.Namespace allowed: MAE checkpoints carry their args)."""
    from ..safe_load import load_tensors

    if not Path(path).exists():
        raise InputError(f"Checkpoint not found: {path}")
    obj = load_tensors(path, "the checkpoint", allowed=[argparse.Namespace],
                       hint="Only official GeoLink .pth files (tensors and plain containers) are accepted.")
    if not isinstance(obj, Mapping):
        raise ModelError(f"{Path(path).name} holds a {type(obj).__name__}, not a state dict.")
    return dict(obj)


def shapes_of(state: Mapping[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


def check_shapes(expected: Shapes, found: Shapes, what: str) -> None:
    """Refuse missing, unexpected or wrongly shaped keys, naming the first few of each."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    for k in wrong[:5]:
        problems.append(f"key {k}: expected shape {list(expected[k])}, found {list(found[k])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(f"{k} {list(expected[k])}" for k in missing[:5]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:5]))
    if problems:
        raise ModelError(f"{what} does not match the model: " + "; ".join(problems) + ".",
                         hint="Is it a GeoLink checkpoint of the architecture it declares?")


def from_official_names(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official names -> this module's: GATConv lin_src/lin_dst (one shared weight) -> lin."""
    out = {}
    for key, value in state.items():
        m = GAT_LIN.match(key)
        if not m:
            out[key] = value
            continue
        if m.group(2) == "src":
            twin = state.get(f"{m.group(1)}.lin_dst.weight")
            if twin is not None and (twin.shape != value.shape or not torch.equal(twin, value)):
                raise ModelError(f"key {m.group(1)}.lin_dst.weight differs from lin_src.weight; GeoLink's GATConv "
                                 "shares one weight for both.")
            out[f"{m.group(1)}.lin.weight"] = value
        elif f"{m.group(1)}.lin_src.weight" not in state:
            out[f"{m.group(1)}.lin.weight"] = value
    return out


def _strip(state: Mapping[str, torch.Tensor], prefixes: Iterable[str] = ("module.", "_orig_mod.")) -> dict:
    out = {}
    for k, v in state.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def build_loaded(make: Callable[[], torch.nn.Module], state: Mapping[str, torch.Tensor], what: str) -> torch.nn.Module:
    """`make()` built without allocating (meta device), checked against `state`, then given its tensors."""
    with torch.device("meta"):
        model = make()
    check_shapes(shapes_of(model.state_dict()), shapes_of(state), what)
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelError(f"{what}: no value for {', '.join(left[:5])}.")
    return model


def sniff(path: Path) -> None:
    """Refuse at once (before reading a large file) what is not a PyTorch file: torch.save writes a zip archive
    with a pickle `data.pkl` in it (or, before PyTorch 1.6, a bare pickle)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in archive.namelist()):
                return
    else:
        with open(path, "rb") as f:
            if f.read(1) == b"\x80":  # a pickle's protocol byte
                return
    what = "a model package, which needs no import" if path.suffix == ".safetensors" else "not a file saved by PyTorch"
    raise ModelError(f"{path.name} is not a GeoLink checkpoint: it is {what}.")


def load_official(path: Path, layers: Sequence[int] = (), sha256: Optional[str] = None) -> GeoLinkModel:
    """An official checkpoint as a GeoLinkModel in eval mode, its card describing it (with the file's SHA-256:
    `sha256` when the caller has computed it, else computed here)."""
    path = Path(path)
    obj = read_checkpoint(path)
    if "model_state_dict" in obj and isinstance(obj.get("model_config"), Mapping):
        model = _multimodal(obj, path.name, layers)
    else:
        state = next((obj[k] for k in ("model", "state_dict", "model_state_dict") if isinstance(obj.get(k), Mapping)),
                     obj)
        model = _unimodal(_strip(state), path.name, layers)
    model.card = ModelCard.for_model(model, provenance={"source": path.name,
                                                        "source_sha256": sha256 or sha256_of(path),
                                                        "source_format": "official GeoLink checkpoint"})
    return model.eval()


def _multimodal(obj: Mapping, name: str, layers: Sequence[int]) -> GeoLinkModel:
    arch = str(obj["model_config"].get("architecture") or "")
    state = from_official_names(_strip(obj["model_state_dict"]))
    lin = state.get("osm_encoder.convs.0.convs.<point___to___point>.lin.weight")
    if not arch.startswith("vit_") or lin is None or lin.dim() != 2:
        raise ModelError(f"{name} is not a GeoLink multimodal checkpoint (architecture {arch!r}, no OSM encoder).")
    depth = 1 + max((int(k.split(".")[2]) for k in state if k.startswith("img_encoder.blocks.")), default=-1)
    try:
        config = GeoLinkConfig(arch=arch, text_dim=int(lin.shape[1]), osm_dim=int(lin.shape[0]),
                               vit_overrides={"depth": depth}, layers=list(layers) or None)
        return build_loaded(lambda: GeoLinkModel(config), state, name)
    except RuntimeError as exc:  # timm: unknown model name
        raise ModelError(f"{name}: unknown architecture {arch!r} ({exc}).") from exc


def _unimodal(state: Mapping[str, torch.Tensor], name: str, layers: Sequence[int]) -> GeoLinkModel:
    state = {k: v for k, v in state.items() if not MAE_DECODER.match(k) and not k.startswith("head.")}
    cls = state.get("cls_token")
    if cls is None or "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise ModelError(f"{name} is neither a GeoLink checkpoint nor a ViT state dict (no cls_token/pos_embed/"
                         "patch_embed).")
    width = int(cls.shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    arch = VIT_BY_WIDTH.get(width)
    if arch is None:
        raise ModelError(f"{name}: no ViT of width {width} is known.")
    grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    patch = state["patch_embed.proj.weight"]
    config = GeoLinkConfig(arch=arch, img_size=grid * 16, in_chans=int(patch.shape[1]), osm=False, pretraining=False,
                           vit_overrides={"depth": depth},
                           layers=list(layers) or None)
    mapped = {"cls_token": cls, "img_pos_embed": state["pos_embed"], "img_encoder.cls_token": cls}
    for k, v in state.items():
        if k != "fc_norm.weight" and k != "fc_norm.bias":
            mapped[f"img_encoder.{k}"] = v
    mapped.update({k[len("img_encoder."):]: v for k, v in mapped.items() if k.startswith("img_encoder.patch_embed.")})
    return build_loaded(lambda: GeoLinkModel(config), mapped, name)
