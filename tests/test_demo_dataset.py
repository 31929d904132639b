"""The generated demo: real on-disk formats, reproducible bytes, and the injected quirks."""

import colorsys
import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pcam_core.data.demo_dataset import (CLASS_STYLES, DEMO_CLASS_IDS, SHARED_HUES, STRAY_ID,
                                    check_params, generate_picture, make_demo, render_image)
from pcam_core.data.index_builder import build_index
from pcam_core.data.voc_reader import read_annotation_classes, read_split_list

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



def assert_same_files(root, again):
    """Both trees hold the same files, byte for byte (the generator is deterministic)."""
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_same_seed_same_bytes_other_seed_other_pictures(tmp_path, demo):
    root, _ = demo
    again = tmp_path / "again"
    make_demo(PARAMS, again)
    assert_same_files(root, again)
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
    ({"colour": 1}, "colour"), ({"style": "pastel"}, "style"), ({"style": 1}, "style"),
])
def test_nonsense_params_are_rejected_by_name(change, key):
    with pytest.raises(ValueError, match=key):
        check_params({**PARAMS, **change})
    with pytest.raises(ValueError, match="missing"):
        check_params({k: v for k, v in PARAMS.items() if k != "seed"})


# sha256 over (relative path, NUL, bytes) of every file of make_demo(PARAMS) except
# demo_info.json, in sorted path order, and of demo_info.json itself: recorded from the code
# before the shape style and the Annotations XML existed. The colour style must keep them.
BEFORE_STYLES_FILES = (114, "e9dce86f9193639a4e7190e9e36568f11842d4eaedcf63ebc056b5fa5be8e073")
BEFORE_STYLES_INFO = "a5ddc7dd2d0def50202fb927648b3e28568db7bcd965bdd7a38f70e379bba09f"


def _files_hash(root):
    """(count, digest) of the files that existed before styles (Annotations/ came later)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "demo_info.json"
                   and "Annotations" not in p.relative_to(root).parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return len(files), digest.hexdigest()


def _info_before_styles(root) -> str:
    """demo_info.json's hash once the keys added with the styles are taken out again."""
    info = json.loads((root / "demo_info.json").read_text())
    assert info.pop("style") == "colour" and info["params"].pop("style") == "colour"
    assert info.pop("distractors") == {"total": 0, "images_with_distractors": 0}
    return hashlib.sha256((json.dumps(info, indent=1) + "\n").encode()).hexdigest()


def test_colour_style_bytes_are_those_from_before_styles(tmp_path, demo):
    root, _ = demo  # PARAMS has no style key: an old param dict means colour
    assert _files_hash(root) == BEFORE_STYLES_FILES
    assert _info_before_styles(root) == BEFORE_STYLES_INFO
    explicit = tmp_path / "colour"
    make_demo({**PARAMS, "style": "colour"}, explicit)
    assert _files_hash(explicit) == BEFORE_STYLES_FILES
    assert (explicit / "demo_info.json").read_bytes() == (root / "demo_info.json").read_bytes()


def test_annotation_xml_lists_every_instance_in_voc_format(demo):
    root, info = demo
    params = check_params(PARAMS)
    voc = root / "VOCdevkit/VOC2012"
    ids = sorted(p.stem for p in (voc / "JPEGImages").iterdir())
    assert sorted(p.stem for p in (voc / "Annotations").iterdir()) == ids  # train, extra, val
    segmented = {p.stem for p in (voc / "SegmentationClass").iterdir()}
    for image_id in ids:
        _, picture = generate_picture(params, image_id)
        xml = ET.parse(voc / "Annotations" / f"{image_id}.xml").getroot()
        assert xml.findtext("filename") == f"{image_id}.jpg" and xml.findtext("folder") == "VOC2012"
        h, w = picture.instances.shape
        assert (int(xml.findtext("size/width")), int(xml.findtext("size/height"))) == (w, h)
        assert xml.findtext("segmented") == ("1" if image_id in segmented else "0")
        objects = xml.findall("object")
        assert len(objects) == len(picture.instance_classes)
        for k, obj in enumerate(objects, start=1):
            rows, cols = np.nonzero(picture.instances == k)
            box = [int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert box == [cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1]  # 1-based
        assert read_annotation_classes(voc / "Annotations" / f"{image_id}.xml") == \
            tuple(sorted(set(picture.instance_classes)))
    # The empty and missing click ids now train on their XML label; the report says why.
    index = _index(root)
    unclicked = info["injected_quirks"]["empty_ids"] + info["injected_quirks"]["missing_ids"]
    assert all(index[i].classes and not index[i].clicks for i in unclicked)
    labels = index.report["image_labels"]
    assert labels["source"] == "xml" and labels["images_without_xml"] == 0
    assert labels["clicks_class_not_in_xml"] == 0  # demo clicks never name an absent class
    assert labels["xml_classes_without_click"] >= len(unclicked)


SHAPE = {"seed": 4, "num_train": 6, "num_extra_train": 2, "num_val": 3, "min_size": 64,
         "max_size": 96, "style": "shape"}


@pytest.fixture(scope="module")
def shape_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("shape") / "dataset"
    return root, make_demo(SHAPE, root)


def test_shape_style_distractors_are_unclicked_background(shape_demo):
    root, info = shape_demo
    assert info["style"] == "shape" and info["params"]["style"] == "shape"
    assert info["distractors"]["total"] >= info["distractors"]["images_with_distractors"] > 0
    params = check_params(SHAPE)
    voc, sbd = root / "VOCdevkit/VOC2012", root / "benchmark_RELEASE/dataset"
    points = json.loads((root / "points.json").read_text())
    total = checked = 0
    for image_id in sorted(p.stem for p in (voc / "JPEGImages").iterdir()):
        _, picture = generate_picture(params, image_id)
        assert set(picture.instance_classes) <= set(DEMO_CLASS_IDS)
        distractor = picture.distractors
        total += picture.num_distractors
        assert not (distractor & (picture.instances > 0)).any()
        labels = []
        if (voc / "SegmentationClass" / f"{image_id}.png").exists():
            labels.append(np.asarray(Image.open(voc / "SegmentationClass" / f"{image_id}.png")))
        if (sbd / "cls" / f"{image_id}.mat").exists():
            labels.append(scipy.io.loadmat(sbd / "cls" / f"{image_id}.mat")["GTcls"][0, 0]["Segmentation"])
        for label in labels:  # background, not even void: they lie clear of object outlines
            assert (label[distractor] == 0).all()
        h, w = distractor.shape
        for click in points.get(image_id, []):
            x, y = click["x"], click["y"]
            # Every click that can label a pixel (the injected unknown-class ones are dropped).
            if 0 <= x < w and 0 <= y < h and 1 <= click["cls"] <= 20:
                checked += 1
                assert not distractor[int(y), int(x)], (image_id, click)
        if picture.num_distractors:  # object-coloured: as saturated as the objects
            hsv = np.asarray(Image.fromarray(picture.rgb).convert("HSV"), dtype=float)
            assert hsv[..., 1][distractor].mean() > 100
    assert total == info["distractors"]["total"] and checked > 10
    index = _index(root)
    assert len(index.split("train_aug")) == 8 and index.report["clicks"]["valid_clicks"] > 0


def test_shape_style_is_deterministic_and_differs_from_colour(tmp_path, shape_demo):
    root, _ = shape_demo
    again = tmp_path / "again"
    make_demo(SHAPE, again)
    assert_same_files(root, again)
    colour = tmp_path / "colour"
    make_demo({**SHAPE, "style": "colour"}, colour)
    # Same splits (one plan for both styles), other pictures.
    for rel in ("VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt", "benchmark_RELEASE/dataset/val.txt"):
        assert (root / rel).read_bytes() == (colour / rel).read_bytes()
    image = next((root / "VOCdevkit/VOC2012/JPEGImages").iterdir())
    assert image.read_bytes() != (colour / image.relative_to(root)).read_bytes()


def _nearest_shared_hue(rgb: np.ndarray) -> int:
    hue = colorsys.rgb_to_hsv(*(rgb / 255.0))[0]
    return int(np.argmin([min(abs(hue - h), 1 - abs(hue - h)) for h in SHARED_HUES]))


def test_shape_style_colour_does_not_tell_the_classes_apart():
    """Each class shows several palette hues and each hue several classes (colour style: one)."""
    seen = {"colour": {}, "shape": {}}
    for style in seen:
        for k in range(60):
            picture = render_image(np.random.default_rng([9, k]), 64, 64, style)
            for i, cls in enumerate(picture.instance_classes, start=1):
                mean = picture.rgb[picture.instances == i].mean(axis=0)
                seen[style].setdefault(cls, set()).add(_nearest_shared_hue(mean))
    assert all(len(hues) == 1 for hues in seen["colour"].values())
    assert {s.cls: {SHARED_HUES.index(s.hue)} for s in CLASS_STYLES} == seen["colour"]
    assert all(len(hues) >= 3 for hues in seen["shape"].values()), seen["shape"]


def test_style_is_optional_and_checked():
    assert check_params(PARAMS)["style"] == "colour"
    assert check_params({**PARAMS, "style": "shape"})["style"] == "shape"
    with pytest.raises(ValueError, match="style must be one of \\['colour', 'shape'\\], got 'Shape'"):
        check_params({**PARAMS, "style": "Shape"})
