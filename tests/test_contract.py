"""The contract between plugin and backend: the names and defaults the plugin copies from the backend (it cannot
import it: the backend imports torch) must still be the backend's. Each test reads both sides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from geolink import atomic, devices
from geolink.inference.options import RasterOptions
from geolink.models.card import DECODERS
from geolink.osm import tagmap
from geolink.tasks import embed as embed_task
from geolink.tasks import finetune as finetune_task
from geolink.training.report import report_paths
from geolink_qgis import models as plugin_models
from geolink_qgis import settings, worker_client
from geolink_qgis.algorithms import base, embed, finetune, train_from_osm


def test_devices_heads_and_partial_tag():
    assert settings.DEVICES == devices.DEVICE_CHOICES
    assert finetune.HEADS == list(DECODERS)  # same order: the first is the default on both sides
    assert finetune.HEADS[0] == finetune_task.Config.__dataclass_fields__["head"].default
    assert finetune.MEMBERS == finetune_task.Config.__dataclass_fields__["members"].default
    assert worker_client.PARTIAL_TAG == atomic.PARTIAL_TAG
    assert atomic.partial_path(Path("/x/out.tif")).name.startswith("out" + worker_client.PARTIAL_TAG)


def test_built_in_tag_maps_in_the_backends_order():
    assert train_from_osm.BUILT_IN_TAG_MAPS == list(tagmap.BUILT_IN)  # the dialog passes the index


def test_the_clip_files_the_models_dialog_names_are_the_backends():
    from geolink.osm.clip_text import CLIP_FILES
    from geolink_qgis.ui import models_dialog

    assert models_dialog.CLIP_FILES == CLIP_FILES


def test_the_clip_cache_folder_the_plugin_looks_for_is_the_backends_repository():
    from geolink.osm.clip_text import CLIP_REPO

    assert settings.CLIP_CACHE_FOLDER == "models--" + CLIP_REPO.replace("/", "--")


@pytest.mark.parametrize("table", ["ENGINE_OPTIONS", "MAP_OPTIONS"])
def test_engine_options_name_backend_fields_and_their_defaults(table):
    fields = {f.name: f for f in dataclasses.fields(RasterOptions)}
    for param, (key, unset) in getattr(base, table).items():
        assert key in fields, f"{param} -> {key}: not a backend option"
        assert fields[key].default == unset, f"{param}: the plugin leaves out {unset!r}, the backend default is " \
                                             f"{fields[key].default!r}"


def test_output_keys_the_plugin_reads_are_the_backends():
    assert embed.PREVIEW_OUTPUT == embed_task.PREVIEW
    assert set(finetune.REPORT_OUTPUTS) <= set(report_paths(Path("m.safetensors")))


def test_the_plugin_reads_the_card_the_backend_writes(tmp_path):
    torch = pytest.importorskip("torch")
    from geolink.models import create_geolink, read_card, save_package
    from geolink.models.card import CARD_KEY

    assert plugin_models.CARD_KEY == CARD_KEY
    torch.manual_seed(0)
    model = create_geolink("tiny", text_dim=24, img_size=32, pretraining=False, osm_dim=16, fusion_dim=16,
                           fusion_heads=2, vit_overrides={"depth": 1, "embed_dim": 32, "num_heads": 2})
    path = save_package(model, tmp_path / "m.safetensors", provenance={"by": "contract test"})
    assert plugin_models.read_card(path) == read_card(path).to_dict()


def test_the_plugin_names_the_head_the_backend_writes(tmp_path):
    torch = pytest.importorskip("torch")
    from geolink.models import build_segmenter, create_geolink, save_package

    torch.manual_seed(0)
    model = create_geolink("tiny", text_dim=24, img_size=32, pretraining=False, osm_dim=16, fusion_dim=16,
                           fusion_heads=2, vit_overrides={"depth": 4, "embed_dim": 32, "num_heads": 2})
    for members, words in ((3, "segmentation (fpn, 3 decoders averaged)"), (1, "segmentation (fpn)")):
        path = save_package(build_segmenter(model, "fpn", 2, members=members), tmp_path / f"m{members}.safetensors")
        assert plugin_models.head_text(plugin_models.read_card(path)["head"]) == words
    assert plugin_models.head_text({}).startswith("none")
