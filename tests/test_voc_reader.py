"""Readers of the real layouts: palette PNGs, SBD .mat files, split lists, click quirks,
Annotations XML."""

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pcam_core.common.dataset_index import Click
from pcam_core.common.label_png import label_to_image, read_label_png, write_label_png
from pcam_core.data.voc_reader import (load_click_json, read_annotation_classes,
                                  read_annotation_folder, read_sbd_mask, read_split_list,
                                  train_aug_ids, validate_clicks)


def test_palette_png_reads_indices_not_colours(tmp_path):
    label = np.array([[0, 1, 15], [20, 255, 3]], dtype=np.uint8)
    path = tmp_path / "mask.png"
    write_label_png(path, label)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]  # aeroplane is dark red in VOC
    np.testing.assert_array_equal(read_label_png(path), label)


def test_rgb_png_is_rejected_with_the_file_name(tmp_path):
    path = tmp_path / "rgb.png"
    label_to_image(np.zeros((2, 2), np.uint8)).convert("RGB").save(path)
    with pytest.raises(ValueError, match="rgb.png"):
        read_label_png(path)


def test_sbd_mat_segmentation(tmp_path):
    seg = np.array([[0, 7], [7, 20]], dtype=np.uint8)
    path = tmp_path / "2008_000001.mat"
    scipy.io.savemat(path, {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.array([[7], [20]])}})
    np.testing.assert_array_equal(read_sbd_mask(path), seg)
    scipy.io.savemat(tmp_path / "other.mat", {"something": seg})
    with pytest.raises(ValueError, match="other.mat"):
        read_sbd_mask(tmp_path / "other.mat")


def test_split_list_keeps_string_ids(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("2007_000032\n2007_000039\n\n")
    assert read_split_list(path) == ["2007_000032", "2007_000039"]
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_split_list(tmp_path / "missing.txt")


def test_train_aug_removes_voc_val_listed_by_sbd():
    ids = train_aug_ids(voc_train=["a", "b"], sbd_train=["c", "v1", "a"], sbd_val=["d", "v2"],
                        voc_val=["v1", "v2", "v3"])
    assert ids == ["a", "b", "c", "d"]


SIZES = {"img": (10, 20)}  # height 10, width 20


def _check(points):
    return validate_clicks({"img": points}, SIZES)


def test_each_click_quirk_is_counted():
    clicks, report = _check([
        {"cls": 3, "x": 5, "y": 4, "rank": 1},      # valid
        {"cls": 3, "x": 20, "y": 4, "rank": 2},     # x == W: out of bounds (the off-by-one)
        {"cls": 3, "x": 5, "y": 10.0, "rank": 2},   # y == H: out of bounds
        {"cls": 3, "x": -1, "y": 4, "rank": 2},     # negative
        {"cls": 21, "x": 5, "y": 4, "rank": 1},     # unknown class
        {"cls": 0, "x": 5, "y": 4, "rank": 1},      # background is not a click class
        {"cls": "cat", "x": 5, "y": 4},             # malformed
    ])
    assert len(clicks["img"]) == 1
    assert (report.out_of_bounds, report.negative, report.unknown_class, report.malformed) == (2, 1, 2, 1)
    assert report.clicks_in_file == 7 and report.valid_clicks == 1


def test_float_coordinates_inside_the_last_pixel_are_valid():
    clicks, report = _check([{"cls": 1, "x": 19.5, "y": 9.99, "rank": 1}])
    assert report.valid_clicks == 1
    assert clicks["img"][0].pixel == (9, 19)


def test_empty_missing_and_foreign_ids():
    raw = {"a": [], "zzz": [{"cls": 1, "x": 1, "y": 1, "rank": 1}]}
    clicks, report = validate_clicks(raw, {"a": (5, 5), "b": (5, 5)})
    assert clicks == {"a": (), "b": ()}
    assert (report.empty_ids, report.missing_ids, report.ids_not_in_dataset) == (1, 1, 1)
    assert json.dumps(report.as_dict())  # serialisable for the data report


def test_boundary_click_x_equal_to_width_is_invalid_and_half_pixel_before_is_valid():
    clicks, report = _check([{"cls": 2, "x": 20, "y": 0, "rank": 1},
                             {"cls": 2, "x": 19.5, "y": 0, "rank": 1}])
    assert report.out_of_bounds == 1 and report.valid_clicks == 1
    assert clicks["img"][0].x == 19.5


def test_non_finite_or_fractional_values_are_malformed():
    clicks, report = _check([{"cls": 1, "x": float("nan"), "y": 1, "rank": 1},
                             {"cls": 1, "x": 1, "y": float("inf"), "rank": 1},
                             {"cls": 1.5, "x": 1, "y": 1, "rank": 1},
                             {"cls": 1, "x": 1, "y": 1, "rank": 1.5},
                             {"cls": 1, "x": True, "y": 1, "rank": 1},
                             "not a dict",
                             {"cls": 1.0, "x": 1, "y": 1}])  # integral float class, no rank: valid
    assert report.malformed == 6 and report.valid_clicks == 1
    assert clicks["img"] == (Click(1, 1.0, 1.0, 1),)


def test_a_non_list_entry_is_malformed_and_means_no_points():
    clicks, report = validate_clicks({"img": {"cls": 1}}, SIZES)
    assert clicks == {"img": ()} and report.malformed == 1


def test_click_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "points.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="points.json"):
        load_click_json(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="points.json"):
        load_click_json(bad)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_click_json(tmp_path / "absent.json")


def _voc_xml(*objects: str, extra: str = "") -> str:
    """An Annotations file in VOC's layout; each object is an <object> body after <name>."""
    body = "".join(f"<object><name>{o}</object>" for o in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename><size><width>10</width>"
            f"<height>8</height><depth>3</depth></size><segmented>0</segmented>{body}{extra}</annotation>")


BOX = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>4</ymax></bndbox>"


@pytest.fixture
def annotations(tmp_path):
    """A tiny hand-written VOC Annotations folder: normal, difficult/truncated, person parts."""
    folder = tmp_path / "VOCdevkit/VOC2012/Annotations"
    folder.mkdir(parents=True)
    (folder / "2007_000001.xml").write_text(_voc_xml(
        f"dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>{BOX}",
        f"cat</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>{BOX}",
        f"dog</name><pose>Right</pose><truncated>0</truncated><difficult>0</difficult>{BOX}"))
    (folder / "2007_000002.xml").write_text(_voc_xml(
        f"bottle</name><truncated>1</truncated><difficult>1</difficult>{BOX}",
        f"\n\t\ttvmonitor\n\t</name><truncated>1</truncated><difficult>0</difficult>{BOX}"))
    (folder / "2007_000003.xml").write_text(_voc_xml(  # person layout: parts have names too
        f"person</name><difficult>0</difficult>{BOX}<part><name>hand</name>{BOX}</part>"
        f"<part><name>head</name>{BOX}</part>"))
    return folder


def test_annotation_classes_include_difficult_and_truncated_objects(annotations):
    assert read_annotation_classes(annotations / "2007_000001.xml") == (8, 12)  # cat, dog once
    assert read_annotation_classes(annotations / "2007_000002.xml") == (5, 20)  # both flagged
    assert read_annotation_classes(annotations / "2007_000003.xml") == (15,)  # parts ignored
    folder = read_annotation_folder(annotations, ["2007_000003", "2007_000001", "2007_999999"])
    assert folder == {"2007_000003": (15,), "2007_000001": (8, 12)}  # no file: left to the caller


def test_malformed_annotation_xml_is_an_error_naming_the_file(annotations):
    bad = annotations / "2007_000004.xml"
    bad.write_text(_voc_xml("cat</name>").replace("</annotation>", ""))  # truncated file
    with pytest.raises(ValueError, match="2007_000004.xml.*malformed XML"):
        read_annotation_classes(bad)
    with pytest.raises(ValueError, match="2007_000004.xml"):
        read_annotation_folder(annotations, ["2007_000001", "2007_000004"])
    bad.write_text("<doc><object><name>cat</name></object></doc>")
    with pytest.raises(ValueError, match="2007_000004.xml.*<annotation>"):
        read_annotation_classes(bad)
    bad.write_text(_voc_xml(f"</name><difficult>0</difficult>{BOX}"))
    with pytest.raises(ValueError, match="2007_000004.xml.*no <name>"):
        read_annotation_classes(bad)


def test_unknown_class_name_in_annotation_is_an_error(annotations):
    bad = annotations / "2007_000005.xml"
    bad.write_text(_voc_xml(f"cat</name>{BOX}", f"zebra</name>{BOX}"))
    with pytest.raises(ValueError, match="2007_000005.xml.*'zebra'"):
        read_annotation_classes(bad)
    bad.write_text(_voc_xml(f"background</name>{BOX}"))  # id 0 is not an object class
    with pytest.raises(ValueError, match="2007_000005.xml.*'background'"):
        read_annotation_classes(bad)
    with pytest.raises(FileNotFoundError, match="absent.xml"):
        read_annotation_classes(annotations / "absent.xml")
    with pytest.raises(FileNotFoundError, match="Nothing"):
        read_annotation_folder(annotations.parent / "Nothing", ["2007_000001"])
