"""Fine-tuning inputs: reading labels, bad input, rasterising with the overlap rule, windows, the spatial
split, the loss weights, the metrics and the report (real GDAL/OGR, small real crops)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import ogr

from geolink.errors import InputError
from geolink.progress import Progress
from geolink.raster.source import Source
from geolink.training.dataset import label_windows
from geolink.training.labels import class_colors, read_labels
from geolink.training.losses import IGNORE, class_weights
from geolink.training.metrics import confusion, scores
from geolink.training.rasterize import overlap_conflicts
from geolink.training.report import write_report
from geolink.training.sampling import apply_d4, augmentations, grid_windows, spatial_split

from .finetune_helpers import LABELS, box, crop_raster, labels_in_crop, write_polygons

X, Y, SIZE = 192, 1152, 384  # a crop with forest, cropland and built-up polygons
E0, N0 = 435730 + 10 * X, 4179460 - 10 * Y  # its top-left corner in EPSG:32618


@pytest.fixture(scope="module")
def crop(data_dir, tmp_path_factory):
    return crop_raster(data_dir / "s2" / "s2_rgbn.tif", tmp_path_factory.mktemp("crop") / "crop.tif", X, Y, SIZE)


@pytest.fixture(scope="module")
def grid(crop):
    return Source(str(crop))


class Messages:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def warnings(self):
        return [e["message"] for e in self.events if e.get("level") == "warning"]


def test_committed_labels_cover_every_class_in_both_parts():
    fc = json.loads(LABELS.read_text())
    parts = {(f["properties"]["class"], f["properties"]["part"]) for f in fc["features"]}
    classes = {c for c, _ in parts}
    assert classes == {"water", "marsh", "forest", "cropland", "sand", "built-up"}
    assert all((c, p) in parts for c in classes for p in ("train", "test"))
    assert len(fc["features"]) >= 50


def test_read_labels_real_crop(grid, tmp_path):
    path = labels_in_crop(tmp_path / "l.geojson", X, Y, SIZE)
    labels = read_labels(str(path), "class", grid.wkt, grid.bounds)
    assert labels.class_names == ["built-up", "cropland", "forest"]
    assert len(labels.geometries) == 8
    assert [c["color"] for c in labels.classes] == ["#e31a1c", "#e6ab02", "#1b7837"]


def test_integer_classes_and_given_colours(grid, tmp_path):
    path = write_polygons(tmp_path / "i.gpkg", [(10, box(E0 + 100, N0 - 500, E0 + 400, N0 - 200)),
                                                (2, box(E0 + 1000, N0 - 900, E0 + 1300, N0 - 600))],
                          field_type=ogr.OFTInteger)
    labels = read_labels(str(path), "class", grid.wkt, grid.bounds, colors={"10": "#123456"})
    assert labels.class_names == ["2", "10"]  # numeric order, not text order
    assert labels.classes[1]["color"] == "#123456"
    assert labels.class_ids.tolist() == [1, 0]


def test_reprojected_labels_burn_the_same_pixels(grid, tmp_path):
    from osgeo import osr

    ring = box(E0 + 503, N0 - 1497, E0 + 1197, N0 - 803)
    utm = write_polygons(tmp_path / "utm.gpkg", [("a", ring), ("b", box(E0 + 2000, N0 - 2500, E0 + 2500, N0 - 2000))])
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(32618)
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)

    def to_ll(r):
        return [tr.TransformPoint(x, y)[:2] for x, y in r]

    ll = write_polygons(tmp_path / "ll.gpkg", [("a", to_ll(ring)),
                                               ("b", to_ll(box(E0 + 2000, N0 - 2500, E0 + 2500, N0 - 2000)))],
                        epsg=4326)
    burnt = [label_windows(read_labels(str(p), "class", grid.wkt, grid.bounds), grid, 128, 0).polygon_pixels(2)
             for p in (utm, ll)]
    assert burnt[0][0] == 70 * 70  # pixel centres inside, across two windows
    assert abs(int(burnt[1][0]) - int(burnt[0][0])) <= 70  # a reprojected edge may shift by a row of pixels


@pytest.mark.parametrize("case, message", [
    ("no_field", "no field 'klass'"),
    ("empty", "No polygon has a value"),
    ("single", "Only one class"),
    ("outside", "None of the labelled polygons lies over the raster"),
])
def test_bad_labels_are_refused(grid, tmp_path, case, message):
    inside = box(E0 + 100, N0 - 500, E0 + 400, N0 - 200)
    features = {"no_field": [("a", inside), ("b", inside)], "empty": [(None, inside), ("", inside)],
                "single": [("a", inside), ("a", box(E0 + 600, N0 - 900, E0 + 900, N0 - 600))],
                "outside": [("a", box(0, 0, 100, 100)), ("b", box(200, 0, 300, 100))]}[case]
    path = write_polygons(tmp_path / f"{case}.gpkg", features)
    with pytest.raises(InputError, match=message):
        read_labels(str(path), "klass" if case == "no_field" else "class", grid.wkt, grid.bounds)


def test_partly_bad_labels_warn_and_go_on(grid, tmp_path):
    path = write_polygons(tmp_path / "p.gpkg", [("a", box(E0 + 100, N0 - 500, E0 + 400, N0 - 200)),
                                                ("b", box(E0 + 600, N0 - 900, E0 + 900, N0 - 600)),
                                                (None, box(E0 + 100, N0 - 500, E0 + 400, N0 - 200)),
                                                ("c", box(0, 0, 100, 100))], epsg=None)
    sink = Messages()
    labels = read_labels(str(path), "class", grid.wkt, grid.bounds, progress=Progress(sink))
    assert labels.class_names == ["a", "b"]
    text = " ".join(sink.warnings())
    assert "empty 'class'" in text and "outside the raster" in text and "no CRS" in text


def test_smaller_polygon_wins_overlaps(grid, tmp_path):
    big = box(E0 + 0, N0 - 1000, E0 + 1000, N0)
    small = box(E0 + 200, N0 - 500, E0 + 500, N0 - 200)
    for order in ([("field", big), ("house", small)], [("house", small), ("field", big)]):
        path = write_polygons(tmp_path / f"o{len(order[0][0])}.gpkg", order)
        labels = read_labels(str(path), "class", grid.wkt, grid.bounds)
        assert overlap_conflicts(labels) == 1
        win = label_windows(labels, grid, 128, 0)
        house = labels.class_names.index("house")
        pid = win.polygon_ids[0]
        cls = np.r_[-1, labels.class_ids][pid]
        assert (cls[20:50, 20:50] == house).all()
        assert (cls == house).sum() == 30 * 30 and (cls >= 0).sum() == 100 * 100


def test_grid_windows_touch_every_box():
    boxes = np.array([[5, 5, 20, 20], [100, 60, 140, 70]])
    wins = grid_windows(boxes, 150, 100, 64, 32)
    assert (0, 0) in wins and (64, 32) in wins and (96, 32) in wins
    for x0, y0, x1, y1 in boxes:
        assert any(x < x1 and x + 64 > x0 and y < y1 and y + 64 > y0 for x, y in wins)
    assert all(x < 150 and y < 100 for x, y in wins)


def test_windows_pad_past_the_edge_and_split_targets(grid, tmp_path):
    path = labels_in_crop(tmp_path / "l.geojson", X, Y, SIZE)
    labels = read_labels(str(path), "class", grid.wkt, grid.bounds)
    win = label_windows(labels, grid, 160, 80)
    assert win.on_val_grid.sum() < len(win.positions)
    pixels = win.polygon_pixels(len(labels.geometries))
    assert (pixels > 0).all()
    held = spatial_split(labels.class_ids, labels.centroids, pixels, 0.3, 1600, seed=0)
    assert 0 < held.sum() < len(held)
    assert set(labels.class_ids[~held].tolist()) == {0, 1, 2}  # every class keeps a training polygon
    train, val = win.targets(labels.class_ids, ~held, False), win.targets(labels.class_ids, held, True)
    assert not ((train >= 0) & (val >= 0)).any()  # a pixel is never in both
    assert (val[~win.on_val_grid] == IGNORE).all()
    assert (val >= 0).sum() == pixels[held].sum()


def test_split_is_stratified_by_block_and_reproducible():
    rng = np.random.default_rng(1)
    centroids = rng.uniform(0, 10000, (60, 2))
    class_ids = np.arange(60) % 4
    pixels = rng.uniform(50, 5000, 60)
    a = spatial_split(class_ids, centroids, pixels, 0.25, 2000, seed=3)
    assert (a == spatial_split(class_ids, centroids, pixels, 0.25, 2000, seed=3)).all()
    blocks = np.floor(centroids / 2000).astype(int)
    for c in range(4):  # a class's polygons of one block are all held out or all kept
        for b in {tuple(k) for k in blocks[class_ids == c]}:
            members = (class_ids == c) & (blocks == b).all(1)
            assert a[members].all() or not a[members].any()
        share = pixels[a & (class_ids == c)].sum() / pixels[class_ids == c].sum()
        assert 0.25 <= share < 0.7 and (~a & (class_ids == c)).any()
    assert not spatial_split(class_ids, centroids, pixels, 0.0, 2000).any()


def test_split_validates_every_class_with_two_polygons():
    class_ids = np.array([0, 0, 1, 1, 1, 2])
    centroids = np.array([[0, 0], [10, 10], [5000, 0], [5010, 0], [9000, 9000], [20, 20]], dtype=float)
    val = spatial_split(class_ids, centroids, np.array([100.0, 100, 10, 10, 50000, 30]), 0.2, 1000, seed=0)
    assert val[:2].sum() == 1  # both in one block: one polygon held out, one kept
    assert val[2:5].any() and not val[2:5].all()
    assert not val[5]  # a single polygon always trains


def test_d4_matches_between_numpy_and_torch_and_is_a_group():
    import torch

    a = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    outs = {apply_d4(a, t).tobytes() for t in range(8)}
    assert len(outs) == 8
    for t in range(8):
        assert np.array_equal(apply_d4(a, t), apply_d4(torch.from_numpy(a), t).numpy())
    aug = augmentations(5, 3, seed=0)
    assert all(v[0] == 0 and len(set(v)) == 3 for v in aug) and aug == augmentations(5, 3, seed=0)


def test_class_weights_balance_frequencies():
    w = class_weights(np.array([9000, 1000, 0]), power=1.0)
    assert w[2] == 0 and w[1] / w[0] == pytest.approx(9.0)
    assert w[:2].mean() == pytest.approx(1.0)


def test_scores_from_confusion():
    truth = np.array([0, 0, 0, 1, 1, 2, -1])
    pred = np.array([0, 0, 1, 1, 1, 0, 2])
    cm = confusion(truth, pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = scores(cm, ["a", "b", "c"])
    assert s["overall_accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-4)
    a = s["classes"][0]
    assert a["precision"] == pytest.approx(2 / 3, abs=1e-4) and a["iou"] == pytest.approx(0.5, abs=1e-4)
    assert s["classes"][2]["precision"] is None  # never predicted


def test_report_files(tmp_path):
    cm = [[50, 5], [10, 35]]
    report = {"classes": class_colors(["water", "forest"]), "validation": scores(np.array(cm), ["water", "forest"]),
              "history": [{"epoch": 1, "loss": 0.9, "val_mean_iou": 0.5}, {"epoch": 2, "loss": 0.5,
                                                                           "val_mean_iou": 0.7}],
              "summary": {"base model": "tiny"}}
    out = write_report(report, tmp_path / "m.safetensors")
    assert json.loads(open(out["report_json"]).read())["validation"]["confusion_matrix"] == cm
    html = open(out["report_html"]).read()
    assert "forest" in html and "0.850" in html  # overall accuracy
    if "report_png" in out:
        assert open(out["report_png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_graph_positions_move_with_the_pixels():
    import torch

    from geolink.training.sampling import d4_points

    h = w = 8
    image = np.zeros((h, w))
    row, col = 1, 6
    image[row, col] = 1
    point = torch.tensor([(col + 0.5) / w, (row + 0.5) / h])
    for t in range(8):
        r, c = np.argwhere(apply_d4(image, t) == 1)[0]
        assert d4_points(point, t).tolist() == pytest.approx([(c + 0.5) / w, (r + 0.5) / h])


def test_split_field_and_class_checks(grid, tmp_path):
    from types import SimpleNamespace

    from geolink.training.split import TEST, TRAIN, VAL, check_classes, split_polygons

    rings = [box(E0 + 100 + 600 * i, N0 - 500, E0 + 400 + 600 * i, N0 - 200) for i in range(6)]
    path = write_polygons(tmp_path / "s.gpkg", [("a", r) for r in rings[:3]] + [("b", r) for r in rings[3:]])
    ds = ogr.Open(str(path), 1)
    layer = ds.GetLayer(0)
    layer.CreateField(ogr.FieldDefn("part", ogr.OFTString))
    for feat, value in zip(layer, ["train", "Val", "test", "train", "validation", "TEST"]):
        feat.SetField("part", value)
        layer.SetFeature(feat)
    ds = None
    labels = read_labels(str(path), "class", grid.wkt, grid.bounds, split_field="part")
    config = SimpleNamespace(split_field="part", val_fraction=0.2, seed=0)
    part, how = split_polygons(config, labels, np.full(6, 900.0), 1280.0)
    assert part.tolist() == [TRAIN, VAL, TEST, TRAIN, VAL, TEST] and "part" in how

    sink = Messages()
    check_classes(labels, np.array([100.0, 900, 900, 900, 900, 0]), part, Progress(sink))
    text = " ".join(sink.warnings())
    assert "Few training pixels for: a (100)" in text and "1 polygon(s) cover no pixel centre" in text
    with pytest.raises(InputError, match="No training pixels for class"):
        check_classes(labels, np.array([0.0, 900, 900, 900, 900, 900]), part, Progress())
