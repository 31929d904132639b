"""The custom dataset: the example in all six click formats, ids, splits, masks, class lists."""

import json

import numpy as np
import pytest
from PIL import Image

from pcam_core.common.class_list import ClassList
from pcam_core.data.custom_dataset import ImageMatcher, build_custom_index, find_images, split_val
from pcam_core.data.example_dataset import make_example
from pcam_core.common.label_png import write_label_png

CLICK_FILES = {
    "cvat": "annotations.xml", "csv": "points.csv", "wtp": "whats_the_point.json",
    "labelme": "labelme", "napari": "napari", "qupath": "qupath",
}
PARAMS = {"seed": 3, "num_train": 12, "num_val": 4, "min_size": 64, "max_size": 80}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("example") / "cells"
    info = make_example(PARAMS, root)
    return root, info


def _params(root, info, fmt, **extra):
    return {"images": str(root / "images"), "classes": info["classes"],
            "clicks": str(root / "clicks" / CLICK_FILES[fmt]), "clicks_format": fmt,
            "masks": str(root / "masks"), "val": str(root / "val.txt"), **extra}


def _clicks(index):
    """Valid clicks per image, in a fixed order (CVAT groups an image's clicks by class)."""
    return {i: sorted((c.cls, round(c.x, 2), round(c.y, 2)) for c in r.clicks)
            for i, r in index.records.items()}


def test_every_format_gives_the_same_index_and_counts_every_quirk(example):
    root, info = example
    indexes = {fmt: build_custom_index(_params(root, info, fmt)) for fmt in CLICK_FILES}
    reference = _clicks(indexes["cvat"])
    assert sum(map(len, reference.values())) == info["valid_clicks"]["total"]
    for fmt, index in indexes.items():
        assert _clicks(index) == reference, fmt
        clicks = index.report["clicks"]
        assert clicks["format"] == fmt
        assert clicks["valid_clicks"] == info["valid_clicks"]["total"]
        for quirk in ("unknown_class", "out_of_bounds", "negative", "image_not_found", "malformed"):
            assert clicks[quirk] == info["quirks"][quirk], (fmt, quirk)
        assert clicks["images_without_clicks"] == info["quirks"]["no_click_images"]
        assert clicks["non_point_shape"] == info["non_point_shapes"].get(fmt, 0), fmt
        assert clicks["unknown_class_names"] == {"artefact" if fmt != "wtp" else "4": 1}
    index = indexes["cvat"]
    assert index.classes.names == ("background", *info["classes"])
    assert all("/" in i for i in index.records)  # nested ids: plate1/tile_000
    assert index.splits["val"] == info["ids"]["val"]
    assert set(index.splits["train_aug"]) == set(info["ids"]["train"])
    assert index.report["images_with_mask"] == len(info["ids"]["val"])
    val = index[info["ids"]["val"][0]]
    assert val.gt_png and val.gt_classes and set(val.gt_classes) <= {1, 2, 3}


def test_example_images_keep_their_contrast(example):
    root, info = example
    index = build_custom_index(_params(root, info, "cvat"))
    record = index[info["ids"]["train"][0]]
    with Image.open(record.image) as raw:
        assert raw.mode == "I;16"
        saturated = np.asarray(raw.convert("RGB"))
    rgb = index.read_image(record)
    assert rgb.shape == (record.height, record.width, 3) and rgb.dtype == np.uint8
    # the old convert("RGB") clipped every count above 255: nearly all white
    assert (saturated == 255).mean() > 0.9
    assert rgb.min() < 20 and rgb.max() > 235 and (rgb == 255).mean() < 0.05


def test_no_masks_and_a_val_fraction(example):
    root, info = example
    index = build_custom_index(_params(root, info, "csv", masks="", val="", val_fraction=0.25))
    assert not any(r.gt_png for r in index.records.values())
    assert index.splits["train"] == [] and len(index.splits["val"]) == 4
    again = build_custom_index(_params(root, info, "csv", masks="", val="", val_fraction=0.25))
    assert again.splits == index.splits  # deterministic


def test_split_val_is_stratified_and_stable():
    ids = [f"img{i:03d}" for i in range(40)]
    masked = set(ids[:10])
    val = split_val(ids, masked, 0.2)
    assert len([i for i in val if i in masked]) == 2 and len(val) == 8
    # adding images without masks never moves a masked image between splits
    more = split_val(ids + [f"new{i}" for i in range(5)], masked, 0.2)
    assert [i for i in more if i in masked] == [i for i in val if i in masked]
    assert split_val(list(reversed(ids)), masked, 0.2) == list(reversed(val))  # order-free choice


def _tiny_layout(root, names=("a", "sub/b", "sub/deeper/c"), size=(12, 16)):
    for name in names:
        path = root / "images" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)
    (root / "clicks.csv").write_text("image,x,y,class\na.png,1.5,2,cell\nsub/b,3,4,2\nc.png,15.99,11.5,cell\n")
    return {"images": str(root / "images"), "classes": ["cell", "dust"], "clicks": str(root / "clicks.csv"),
            "val_fraction": 0.0}


def test_ids_are_relative_paths_and_references_match(tmp_path):
    params = _tiny_layout(tmp_path)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    (tmp_path / "images" / ".hidden.png").write_bytes(b"")
    assert list(find_images(tmp_path / "images")) == ["a", "sub/b", "sub/deeper/c"]
    index = build_custom_index(params)
    assert [c.cls for c in index["a"].clicks] == [1] and [c.cls for c in index["sub/b"].clicks] == [2]
    assert index["sub/deeper/c"].clicks[0].x == 15.99  # matched by its unique file name
    matcher = ImageMatcher(["a", "sub/b", "x/b"])
    assert matcher.match("sub\\b.tif") == "sub/b" and matcher.match("./a.JPG") == "a"
    assert matcher.match("b") is None  # two images are called b: no guessing


def test_bad_layouts_are_clear_errors(tmp_path):
    params = _tiny_layout(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "images" / "a.tif")
    with pytest.raises(ValueError, match="same image id 'a'"):
        build_custom_index(params)
    (tmp_path / "images" / "a.tif").unlink()

    (tmp_path / "val.txt").write_text("a\n# a comment\nmissing_one\n")
    with pytest.raises(ValueError, match=r"image listed in a split but not found(.|\n)*val.txt:3: 'missing_one'"):
        build_custom_index({**params, "val": str(tmp_path / "val.txt")}, strict=True)

    masks = tmp_path / "masks"
    write_label_png(masks / "a.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match=r"a.png: mask is 5x5 but image .*a.png is 16x12"):
        build_custom_index({**params, "masks": str(masks)})
    bad = np.zeros((12, 16), np.uint8)
    bad[0, 0] = 7
    write_label_png(masks / "a.png", bad)
    with pytest.raises(ValueError, match=r"a.png: mask values \[7\] are not class ids 0..2"):
        build_custom_index({**params, "masks": str(masks)})

    with pytest.raises(ValueError, match="background"):
        build_custom_index({**params, "classes": ["background", "cell"]})
    with pytest.raises(FileNotFoundError, match="dataset.images"):
        build_custom_index({**params, "images": str(tmp_path / "nowhere")})


def test_masks_score_and_report_click_noise(tmp_path):
    params = _tiny_layout(tmp_path)
    masks = tmp_path / "masks"
    mask = np.zeros((12, 16), np.uint8)
    mask[:, :8] = 1
    mask[0, :] = 255
    write_label_png(masks / "a.png", mask)  # palette PNG
    (masks / "sub").mkdir()
    Image.fromarray(mask).save(masks / "sub" / "b.png")  # single-channel "L" PNG
    write_label_png(masks / "orphan.png", mask)
    index = build_custom_index({**params, "masks": str(masks)})
    assert index["a"].gt_classes == (1,) and index["sub/b"].gt_png.endswith("sub/b.png")
    assert index.splits["train"] == ["a", "sub/b"]
    assert index.report["images_with_mask"] == 2 and index.report["masks_without_image"] == 1
    # sub/b's click (3, 4) is class 2 on a class-1 pixel
    assert index.report["click_noise"] == {"on_gt_pixel": 2, "on_other_class": 1}


def test_class_list_limits_and_colours():
    classes = ClassList.from_object_classes(["cell", {"name": "dust", "colour": [1, 2, 3]}])
    assert classes.names == ("background", "cell", "dust") and classes.colours[2] == (1, 2, 3)
    assert classes.palette()[6:9] == [1, 2, 3] and len(classes.palette()) == 768
    assert ClassList.from_json(json.loads(json.dumps(classes.to_json()))) == classes
    assert ClassList.from_object_classes([f"c{i}" for i in range(254)]).num_classes == 255
    with pytest.raises(ValueError, match="at most 254"):
        ClassList.from_object_classes([f"c{i}" for i in range(255)])
    with pytest.raises(ValueError, match="given twice"):
        ClassList.from_object_classes(["cell", "cell"])
    with pytest.raises(ValueError, match="colour"):
        ClassList.from_object_classes([{"name": "cell", "colour": [300, 0, 0]}])
    with pytest.raises(ValueError, match="at least one object class"):
        ClassList.from_object_classes([])
