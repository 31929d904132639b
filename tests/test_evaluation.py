"""Confusion matrix, IoU/mIoU and the ``pcam evaluate`` command on hand-made cases."""

import json

import numpy as np
import pytest

from pcam_core.cli import main as pcam_main
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.evaluation.miou import ConfusionMatrix, metrics_dict, write_metrics
from pcam_core.common.label_png import write_label_png
from pcam_core.data.voc_reader import VOC_CLASSES
from pcam_core.data.voc_reader import voc_class_list


def test_void_pixels_are_ignored():
    gt = np.array([[0, 1], [255, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 2]], dtype=np.uint8)  # wrong only where GT is void
    cm = ConfusionMatrix(21)
    cm.update(gt, pred)
    assert cm.matrix.sum() == 2
    assert cm.miou() == 1.0
    assert cm.pixel_accuracy() == 1.0


def test_void_only_image_changes_nothing():
    cm = ConfusionMatrix(21)
    cm.update(np.array([[0, 1, 1]]), np.array([[0, 1, 0]]))
    before = cm.matrix.copy()
    cm.update(np.full((4, 4), 255, np.uint8), np.full((4, 4), 3, np.uint8))
    assert (cm.matrix == before).all()


def test_hand_computed_iou_and_absent_classes():
    # GT: 3 background, 3 class 1. Prediction: one class-1 pixel called background.
    gt = np.array([[0, 0, 0, 1, 1, 1]])
    pred = np.array([[0, 0, 0, 0, 1, 1]])
    cm = ConfusionMatrix(21)
    cm.update(gt, pred)
    iou = cm.iou()
    assert iou[0] == pytest.approx(3 / 4)  # TP 3, FP 1, FN 0
    assert iou[1] == pytest.approx(2 / 3)  # TP 2, FN 1
    assert np.isnan(iou[2:]).all()  # absent from both: not in the mean
    assert cm.miou() == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert cm.pixel_accuracy() == pytest.approx(5 / 6)


def test_class_only_predicted_counts_as_zero():
    cm = ConfusionMatrix(21)
    cm.update(np.array([[0, 0]]), np.array([[0, 5]]))
    assert cm.iou()[5] == 0.0
    assert cm.miou() == pytest.approx((1 / 2 + 0) / 2)


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, size=(30, 40)).astype(np.uint8)
    cm = ConfusionMatrix(21)
    cm.update(gt, gt.copy())
    assert cm.miou() == 1.0 and cm.pixel_accuracy() == 1.0


def test_predicted_255_counts_as_background():
    cm = ConfusionMatrix(21)
    cm.update(np.array([[0, 1]]), np.array([[255, 255]]))
    assert cm.matrix[0, 0] == 1 and cm.matrix[1, 0] == 1


def test_invalid_inputs_are_errors():
    cm = ConfusionMatrix(21)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.zeros((1, 2), np.uint8), np.array([[0, 21]], np.uint8))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.zeros((1, 2), np.int64), np.array([[0, -1]]))
    assert cm.num_images == 0


def test_matches_direct_numpy_computation():
    rng = np.random.default_rng(1)
    cm = ConfusionMatrix(21)
    gts, preds = [], []
    for _ in range(3):
        gt = rng.integers(0, 21, size=(17, 23))
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 21, size=gt.shape))
        pred[gt == 255] = rng.integers(0, 21)
        cm.update(gt.astype(np.uint8), pred.astype(np.uint8))
        gts.append(gt.ravel())
        preds.append(pred.ravel())
    gt, pred = np.concatenate(gts), np.concatenate(preds)
    keep = gt != 255
    gt, pred = gt[keep], pred[keep]
    expected = []
    for c in range(21):
        inter = np.sum((gt == c) & (pred == c))
        union = np.sum((gt == c) | (pred == c))
        expected.append(inter / union if union else np.nan)
    np.testing.assert_allclose(cm.iou(), expected)
    assert cm.miou() == pytest.approx(np.nanmean(expected))
    assert cm.pixel_accuracy() == pytest.approx(np.mean(gt == pred))
    assert cm.num_images == 3


def test_metrics_files(tmp_path):
    cm = ConfusionMatrix(21)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
    metrics = write_metrics(tmp_path / "m.json", tmp_path / "m.md", cm, "Test run", VOC_CLASSES,
                            extra={"split": "val"})
    data = json.loads((tmp_path / "m.json").read_text())
    assert data == metrics
    assert list(data["iou"]) == list(VOC_CLASSES)
    assert data["iou"]["aeroplane"] == 1.0 and data["iou"]["bird"] is None
    assert data["miou"] == 1.0 and data["split"] == "val" and data["num_images"] == 1
    assert np.array(data["confusion_matrix"]).shape == (21, 21)
    md = (tmp_path / "m.md").read_text()
    assert all(name in md for name in VOC_CLASSES) and "100.0" in md
    with pytest.raises(ValueError, match="clash"):
        metrics_dict(cm, "t", VOC_CLASSES, extra={"miou": 0})


def _make_index(tmp_path, ids_sizes):
    records, gts = [], {}
    rng = np.random.default_rng(2)
    for image_id, (h, w) in ids_sizes.items():
        gt = rng.integers(0, 3, size=(h, w)).astype(np.uint8)
        gt[0, :] = 255
        path = tmp_path / "gt" / f"{image_id}.png"
        write_label_png(path, gt)
        gts[image_id] = gt
        records.append(ImageRecord(id=image_id, image="unused.jpg", height=h, width=w,
                                   splits=("val",), classes=(1, 2), gt_classes=(1, 2),
                                   gt_png=str(path)))
    records.append(ImageRecord(id="no_gt", image="unused.jpg", height=5, width=5,
                               splits=("val",), classes=(1,), gt_classes=()))
    index = DatasetIndex(records, {"val": list(ids_sizes) + ["no_gt"]}, dataset="test",
                         classes=voc_class_list())
    index.save(tmp_path / "index.json")
    return gts


def test_cli_scores_predictions_across_dirs(tmp_path):
    gts = _make_index(tmp_path, {"a": (6, 8), "b": (5, 7), "c": (4, 4)})
    expected = ConfusionMatrix(21)
    for k, (image_id, gt) in enumerate(gts.items()):
        pred = gt.copy()
        pred[1:, 0] = 0
        write_label_png(tmp_path / f"shard{k % 2}" / f"{image_id}.png", pred)
        expected.update(gt, pred)
    rc = pcam_main(["evaluate", "--index", str(tmp_path / "index.json"), "--split", "val",
                    "--pred-dirs", str(tmp_path / "shard0"), str(tmp_path / "shard1"),
                    "--out-json", str(tmp_path / "out.json"), "--out-md", str(tmp_path / "out.md"),
                    "--title", "demo"])
    assert rc == 0
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["num_images"] == 3  # the record without GT is not scored
    assert data["miou"] == pytest.approx(expected.miou())
    assert data["confusion_matrix"] == expected.matrix.tolist()
    assert (tmp_path / "out.md").read_text().startswith("# demo")


def test_cli_missing_prediction_is_an_error(tmp_path):
    gts = _make_index(tmp_path, {"a": (4, 4), "b": (4, 4), "c": (4, 4)})
    write_label_png(tmp_path / "pred" / "a.png", gts["a"])
    with pytest.raises(FileNotFoundError, match=r"2 of 3 val images.*'b'"):
        pcam_main(["evaluate", "--index", str(tmp_path / "index.json"), "--split", "val",
                   "--pred-dirs", str(tmp_path / "pred"), "--out-json", str(tmp_path / "o.json"),
                   "--out-md", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.json").exists()


def test_cli_size_mismatch_names_the_file(tmp_path):
    _make_index(tmp_path, {"a": (4, 4)})
    write_label_png(tmp_path / "pred" / "a.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png"):
        pcam_main(["evaluate", "--index", str(tmp_path / "index.json"), "--split", "val",
                   "--pred-dirs", str(tmp_path / "pred"), "--out-json", str(tmp_path / "o.json"),
                   "--out-md", str(tmp_path / "o.md")])
