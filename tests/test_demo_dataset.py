"""The generated demo: real on-disk formats, reproducible bytes, and the injected quirks."""

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pcam_core.demo_dataset import DEMO_CLASS_IDS, STRAY_ID, check_params, make_demo
from pcam_core.index_builder import build_index
from pcam_core.voc_reader import read_split_list

PARAMS = {"seed": 1, "num_train": 20, "num_extra_train": 6, "num_val": 8, "min_size": 48,
          "max_size": 72}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "dataset"
    info = make_demo(PARAMS, root)
    return root, info


def _index(root):
    return build_index("demo", root / "VOCdevkit/VOC2012", root / "benchmark_RELEASE/dataset",
                       root / "points.json")


def test_voc_layout_with_palette_masks_and_void_bands(demo):
    root, _ = demo
    voc = root / "VOCdevkit/VOC2012"
    train = read_split_list(voc / "ImageSets/Segmentation/train.txt")
    val = read_split_list(voc / "ImageSets/Segmentation/val.txt")
    assert len(train) == 20 and len(val) == 8 and all(isinstance(i, str) for i in train)
    assert read_split_list(voc / "ImageSets/Segmentation/trainval.txt") == sorted(train + val)
    voids = 0
    for image_id in train + val:
        with Image.open(voc / "SegmentationClass" / f"{image_id}.png") as mask:
            assert mask.mode == "P"
            label = np.asarray(mask)
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as image:
            assert image.format == "JPEG" and image.size[::-1] == label.shape
            assert 48 <= min(image.size) and max(image.size) <= 72
        assert set(np.unique(label)) <= {0, 255, *DEMO_CLASS_IDS}
        voids += int((label == 255).any())
    assert voids >= len(train + val) - 2  # almost every image has an object outlined in void


def test_sbd_layout_mats_without_void_and_val_ids_in_its_lists(demo):
    root, info = demo
    sbd = root / "benchmark_RELEASE/dataset"
    voc = root / "VOCdevkit/VOC2012"
    sbd_ids = read_split_list(sbd / "train.txt") + read_split_list(sbd / "val.txt")
    val = set(read_split_list(voc / "ImageSets/Segmentation/val.txt"))
    assert set(info["sbd_lists_with_voc_val_ids"]) == set(sbd_ids) & val and val & set(sbd_ids)
    for image_id in sbd_ids:
        segmentation = scipy.io.loadmat(sbd / "cls" / f"{image_id}.mat")["GTcls"][0, 0]["Segmentation"]
        assert segmentation.dtype == np.uint8 and 255 not in segmentation
        assert (sbd / "img" / f"{image_id}.jpg").read_bytes() == \
            (voc / "JPEGImages" / f"{image_id}.jpg").read_bytes()  # VOC holds every SBD image
        png = voc / "SegmentationClass" / f"{image_id}.png"
        if png.exists():  # same objects as the VOC mask, minus the void bands
            label = np.asarray(Image.open(png))
            keep = label != 255
            np.testing.assert_array_equal(segmentation[keep], label[keep])


def test_same_seed_same_bytes_other_seed_other_pictures(tmp_path, demo):
    root, _ = demo
    again = tmp_path / "again"
    make_demo(PARAMS, again)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    make_demo({**PARAMS, "seed": 2}, other)
    assert (other / "points.json").read_bytes() != (root / "points.json").read_bytes()


def test_report_finds_exactly_the_injected_quirks(demo):
    root, info = demo
    injected = info["injected_quirks"]
    index = _index(root)
    clicks = index.report["clicks"]
    for key in ("out_of_bounds", "negative", "unknown_class"):
        assert clicks[key] == injected[key] > 0, key
    assert clicks["empty_ids"] == len(injected["empty_ids"]) > 0
    assert clicks["missing_ids"] == len(injected["missing_ids"]) > 0
    assert clicks["ids_not_in_dataset"] == 1 and injected["not_in_dataset"] == [STRAY_ID]
    assert clicks["malformed"] == 0
    left_out = index.report["train_aug_without_valid_click"]["count"]
    assert left_out >= len(injected["empty_ids"]) + len(injected["missing_ids"])
    assert len(index.split("train_aug")) == 26 and not set(index.splits["train_aug"]) & set(index.splits["val"])


def test_clicks_look_like_a_person_s(demo):
    root, _ = demo
    index = _index(root)
    hits = total = 0
    for record in index.records.values():
        mask = record.load_gt_mask()
        assert set(record.classes) <= set(DEMO_CLASS_IDS)
        ranks = {}
        for click in record.clicks:
            ranks.setdefault(click.cls, []).append(click.rank)
            total += 1
            hits += int(mask[click.pixel] == click.cls)
        for cls, r in ranks.items():
            assert r[0] == 1  # the first click of a class has rank 1
    assert total > 30 and hits / total > 0.85
    points = json.loads((root / "points.json").read_text())
    coords = [p["x"] for ps in points.values() for p in ps]
    assert any(isinstance(c, float) for c in coords) and any(isinstance(c, int) for c in coords)


@pytest.mark.parametrize("change, key", [
    ({"num_train": 0}, "num_train"), ({"num_val": -1}, "num_val"),
    ({"num_extra_train": -1}, "num_extra_train"), ({"min_size": 8}, "min_size"),
    ({"max_size": 40}, "max_size"), ({"seed": "x"}, "seed"), ({"num_train": 2.5}, "num_train"),
    ({"colour": 1}, "colour"),
])
def test_nonsense_params_are_rejected_by_name(change, key):
    with pytest.raises(ValueError, match=key):
        check_params({**PARAMS, **change})
    with pytest.raises(ValueError, match="missing"):
        check_params({k: v for k, v in PARAMS.items() if k != "seed"})
