"""The index from a tiny hand-made VOC/SBD/clicks layout, and from the generated demo."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.data.demo_dataset import make_demo
from pcam_core.common.image_io import ImageReading
from pcam_core.data.data_report import report_markdown
from pcam_core.data.index_builder import build_index
from pcam_core.common.label_png import write_label_png
from pcam_core.data.voc_reader import VOC_CLASSES, voc_class_list


def _layout(root):
    """VOC train {t1,t2}, val {v1}; SBD train {t2,s1,v1}, val {s2}; clicks with quirks."""
    voc = root / "VOCdevkit/VOC2012"
    sbd = root / "benchmark_RELEASE/dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets/Segmentation",
              sbd / "img", sbd / "cls"):
        d.mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("t1\nt2\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("v1\n")
    (sbd / "train.txt").write_text("t2\ns1\nv1\n")
    (sbd / "val.txt").write_text("s2\n")
    for image_id in ("t1", "t2", "v1"):
        Image.fromarray(np.full((8, 12, 3), 100, np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = np.zeros((8, 12), np.uint8)
        mask[2:6, 3:9] = 5
        mask[1, :] = 255
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
    for image_id in ("s1", "s2"):  # SBD-only images live in SBD's img/
        Image.fromarray(np.full((6, 10, 3), 50, np.uint8)).save(sbd / "img" / f"{image_id}.jpg")
        seg = np.zeros((6, 10), np.uint8)
        seg[:3, :] = 12
        scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": seg}})
    points = {
        "t1": [{"cls": 5, "x": 4.7, "y": 3.2, "rank": 1}, {"cls": 5, "x": 12, "y": 3, "rank": 2}],
        "t2": [],
        "v1": [{"cls": 5, "x": 5, "y": 4, "rank": 1}],
        "s1": [{"cls": 12, "x": 1, "y": 1, "rank": 1}, {"cls": 22, "x": 1, "y": 1, "rank": 1},
               {"cls": 12, "x": -3, "y": 1, "rank": 2}],
        "nope": [{"cls": 1, "x": 0, "y": 0, "rank": 1}],
    }  # s2 is missing from the file
    (root / "points.json").write_text(json.dumps(points))
    return voc, sbd, root / "points.json"


def test_splits_records_and_quirk_counts(tmp_path):
    voc, sbd, points = _layout(tmp_path)
    index = build_index("voc2012", voc, sbd, points)
    assert index.splits == {"train": ["t1", "t2"], "val": ["v1"], "train_aug": ["t1", "t2", "s1", "s2"]}
    assert "v1" not in index.splits["train_aug"]
    t1, s1, s2 = index["t1"], index["s1"], index["s2"]
    assert (t1.height, t1.width) == (8, 12) and t1.gt_classes == (5,) and t1.classes == (5,)
    assert len(t1.clicks) == 1 and t1.clicks[0].x == 4.7  # float kept; x == W dropped
    assert s1.image.endswith("img/s1.jpg") and s1.gt_png is None and s1.gt_mat.endswith("s1.mat")
    assert s1.gt_classes == (12,) and s1.classes == (12,)
    assert s2.classes == () and index["t2"].classes == ()
    assert [r.id for r in index.training_records()] == ["t1", "s1"]
    clicks = index.report["clicks"]
    assert (clicks["out_of_bounds"], clicks["negative"], clicks["unknown_class"]) == (1, 1, 1)
    assert (clicks["empty_ids"], clicks["missing_ids"], clicks["ids_not_in_dataset"]) == (1, 1, 1)
    assert index.report["train_aug_without_valid_click"]["count"] == 2
    assert "unknown class" in report_markdown(index.report, index.classes)


def test_missing_image_is_skipped_or_under_strict_an_error_naming_it(tmp_path):
    voc, sbd, points = _layout(tmp_path)
    (sbd / "img" / "s2.jpg").unlink()
    index = build_index("voc2012", voc, sbd, points)
    assert "s2" not in index.records and "s2" not in index.splits["train_aug"]
    assert index.report["skipped"]["counts"]["image_listed_but_missing"] == 1
    with pytest.raises(ValueError, match=r"image listed in a split but not found(.|\n)*s2 \(in train_aug\)"):
        build_index("voc2012", voc, sbd, points, strict=True)


def test_index_round_trip(tmp_path):
    voc, sbd, points = _layout(tmp_path)
    index = build_index("voc2012", voc, sbd, points)
    index.save(tmp_path / "index.json")
    loaded = DatasetIndex.load(tmp_path / "index.json")
    assert loaded.records == index.records and loaded.splits == index.splits
    assert loaded["t1"].load_gt_mask().shape == (8, 12)
    assert loaded["s1"].load_gt_mask().max() == 12


def test_index_of_12k_images_loads_fast(tmp_path):
    voc, sbd, points = _layout(tmp_path)
    index = build_index("voc2012", voc, sbd, points)
    template = index["t1"]
    records = [template.__class__(**{**template.__dict__, "id": f"2008_{i:06d}"}) for i in range(12031)]
    big = DatasetIndex(records, {"train_aug": [r.id for r in records]}, "voc2012", voc_class_list())
    big.save(tmp_path / "big.json")
    start = time.perf_counter()
    DatasetIndex.load(tmp_path / "big.json")
    assert time.perf_counter() - start < 1.0


def test_demo_dataset_is_deterministic_and_readable(tmp_path):
    params = {"seed": 3, "num_train": 12, "num_extra_train": 4, "num_val": 6, "min_size": 48, "max_size": 64}
    make_demo(params, tmp_path / "a")
    make_demo(params, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    root = tmp_path / "a"
    index = build_index("demo", root / "VOCdevkit/VOC2012", root / "benchmark_RELEASE/dataset",
                        root / "points.json")
    assert len(index.split("train")) == 12 and len(index.split("val")) == 6
    assert len(index.split("train_aug")) == 16
    assert not set(index.splits["train_aug"]) & set(index.splits["val"])
    masks = [index[i].load_gt_mask() for i in index.splits["val"]]
    assert any((m == 255).any() for m in masks)  # void bands along outlines, as in VOC
    sbd_only = [r for r in index.records.values() if r.gt_mat and not r.gt_png]
    assert sbd_only and all(255 not in r.load_gt_mask() for r in sbd_only)
    assert index.report["clicks"]["valid_clicks"] > 0


def test_voc_index_unchanged_apart_from_the_class_list(tmp_path):
    """The index of the tiny VOC layout equals the one pcam wrote before the class list
    became data (tests/data/, recorded from that code), apart from the added keys."""
    voc, sbd, points = _layout(tmp_path)
    data = json.loads(json.dumps(build_index("voc2012", voc, sbd, points).to_json())
                      .replace(str(tmp_path), "<root>"))
    before = json.loads((Path(__file__).parent / "data/voc_tiny_index_before_class_list.json").read_text())
    assert data.pop("format") == "pcam-dataset-index/2" and before.pop("format") == "pcam-dataset-index/1"
    assert data.pop("classes")["names"] == list(VOC_CLASSES)
    assert data.pop("image_reading") == ImageReading().to_json()
    data["report"].pop("build_seconds")
    # Added with the XML image labels: the layout has no Annotations/, so nothing else moved.
    assert data["report"].pop("image_labels")["source"] == "clicks"
    left = data["report"]["train_aug_without_valid_click"]
    assert left.pop("left_out_of_training") == left["count"]
    # Added with bad-input handling: nothing skipped but the two clickless train_aug images.
    skipped = data["report"].pop("skipped")
    assert {k: v for k, v in skipped["counts"].items() if v} == {
        "click_unknown_class": 1, "click_negative": 1, "click_out_of_bounds": 1,
        "click_image_not_found": 1, "training_image_without_click": 2}
    assert data["report"]["clicks"].pop("clicks_on_skipped_images") == 0
    assert data == before


def _annotate(voc, objects: dict[str, list[tuple[str, int, int]]]) -> None:
    """Write Annotations/<id>.xml in VOC's format: (name, truncated, difficult) per object."""
    folder = voc / "Annotations"
    folder.mkdir()
    for image_id, items in objects.items():
        body = "".join(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>{t}</truncated>"
                       f"<difficult>{d}</difficult><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax>"
                       f"<ymax>5</ymax></bndbox></object>" for name, t, d in items)
        (folder / f"{image_id}.xml").write_text(
            f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>12</width><height>8</height><depth>3</depth></size>"
            f"<segmented>1</segmented>{body}</annotation>")


def _annotated_layout(root):
    """The tiny layout plus: t1's only chair (9) click is out of bounds; XMLs for every image but
    s2 (t1 bottle + a difficult, truncated chair; t2 bottle; v1 cat only, though clicked as
    bottle; s1 dog)."""
    voc, sbd, points = _layout(root)
    raw = json.loads(points.read_text())
    raw["t1"].append({"cls": 9, "x": 12, "y": 3, "rank": 1})  # x == W: dropped
    points.write_text(json.dumps(raw))
    _annotate(voc, {"t1": [("bottle", 0, 0), ("chair", 1, 1)], "t2": [("bottle", 0, 0)],
                    "v1": [("cat", 0, 0)], "s1": [("dog", 1, 0)]})
    return voc, sbd, points


def test_xml_classes_are_the_image_labels(tmp_path):
    voc, sbd, points = _annotated_layout(tmp_path)
    index = build_index("voc2012", voc, sbd, points)
    t1, t2, v1, s1, s2 = (index[i] for i in ("t1", "t2", "v1", "s1", "s2"))
    # The chair's only click was out of bounds: it stays a positive (clicks alone lost it).
    assert t1.classes == (5, 9) and {c.cls for c in t1.clicks} == {5}
    assert t2.classes == (5,) and t2.clicks == ()  # empty click list, labelled by its XML
    assert v1.classes == (8,) and v1.clicks == ()  # the bottle click is not in the XML: dropped
    assert s1.classes == (12,) and len(s1.clicks) == 1
    assert s2.classes == ()  # no XML and no click: still left out
    assert [r.id for r in index.training_records()] == ["t1", "t2", "s1"]
    labels = index.report["image_labels"]
    assert labels["source"] == "xml"
    assert (labels["images_without_xml"], labels["clicks_class_not_in_xml"],
            labels["xml_classes_without_click"], labels["images_with_disagreement"]) == (1, 1, 3, 3)
    assert [e["id"] for e in labels["examples"]] == ["t1", "t2", "v1"]
    assert labels["examples"][2] == {"id": "v1", "xml_classes": [8], "click_classes": [5]}
    left = index.report["train_aug_without_valid_click"]
    assert (left["count"], left["left_out_of_training"]) == (2, 1)  # t2 and s2; only s2 out
    # The click report still describes the file (3 valid clicks); the noise counts the 2 kept.
    assert index.report["clicks"]["valid_clicks"] == 3 and index.report["click_noise"]["on_gt_pixel"] == 2
    markdown = report_markdown(index.report, index.classes)
    assert "## Image-level labels" in markdown and "| source of the labels | xml |" in markdown
    assert "| valid clicks dropped: class not in the image's XML | 1 |" in markdown
    assert "| XML classes without a click (labelled by the XML alone) | 3 |" in markdown
    index.save(tmp_path / "index.json")
    assert DatasetIndex.load(tmp_path / "index.json")["t1"].classes == (5, 9)


def test_without_annotations_the_click_classes_are_the_labels(tmp_path):
    voc, sbd, points = _annotated_layout(tmp_path)
    for xml in (voc / "Annotations").iterdir():
        xml.unlink()
    (voc / "Annotations").rmdir()
    index = build_index("voc2012", voc, sbd, points)
    assert index["t1"].classes == (5,) and index["t2"].classes == () and index["v1"].classes == (5,)
    labels = index.report["image_labels"]
    assert labels["source"] == "clicks" and "no " in labels["note"] and "Annotations" in labels["note"]
    assert labels["images_without_xml"] == len(index) and labels["clicks_class_not_in_xml"] == 0
    assert "There is no Annotations folder" in report_markdown(index.report, index.classes)


def test_empty_annotations_folder_keeps_click_classes_and_counts_them(tmp_path):
    voc, sbd, points = _layout(tmp_path)
    (voc / "Annotations").mkdir()
    index = build_index("voc2012", voc, sbd, points)
    assert index["t1"].classes == (5,) and index["s1"].classes == (12,)
    labels = index.report["image_labels"]
    assert labels["source"] == "xml" and labels["images_without_xml"] == len(index) == 5


def test_a_bad_annotation_stops_the_build_naming_the_file(tmp_path):
    voc, sbd, points = _annotated_layout(tmp_path)
    (voc / "Annotations" / "s1.xml").write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(ValueError, match="s1.xml.*'unicorn'"):
        build_index("voc2012", voc, sbd, points)
