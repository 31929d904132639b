"""Report figures: what each one draws, checked on tiny hand-made run outputs."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from PIL import Image

from pcam_core.common.class_list import ClassList
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.report.figures import (add_arguments, main, plot_calibration, plot_class_iou,
                                      plot_data_report, plot_training_curves)

GRID = [0.2, 0.4, 0.6, 0.8]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def cam_log(path, losses=(0.9, 0.7, 0.5, 0.4)):
    rows = [{"event": "start", "step": 0, "params": {"lr": 0.01}}]
    rows += [{"step": s, "loss": loss, "loss_img": loss / 2, "loss_pt": loss / 4, "lr": 0.01 / s,
              "lr_classifier": 0.1 / s, "images_per_s": 10.0 + s} for s, loss in enumerate(losses, start=1)]
    rows.append({"event": "done", "iterations": len(losses)})
    return write_jsonl(path, rows)


def panel(fig, title):
    (ax,) = [ax for ax in fig.axes if ax.get_title() == title]
    return ax


def metrics(path, iou: dict, miou=None):
    values = [v for v in iou.values() if v is not None]
    return write_json(path, {"title": path.stem, "num_images": 3,
                             "miou": miou if miou is not None else sum(values) / len(values),
                             "pixel_accuracy": 0.9, "iou": iou, "confusion_matrix": [[1]],
                             "split": "val", "dataset": "demo"})


def tiny_index(path, names=("background", "cat", "dog", "bird")):
    colours = [[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]][:len(names)]
    classes = ClassList.from_json({"names": list(names), "colours": colours})
    DatasetIndex([], {"train": [], "val": [], "train_aug": []}, "custom", classes).save(path)
    return path


def calibration(path, mode="auto", source="calibrated", curves=True):
    data = {"format": "pcam-calibration/1", "stage": "ir_labels", "mode": mode,
            "configured": {"ir_fg_threshold": 0.3, "ir_bg_threshold": 0.05}, "max_images": 300,
            "grid": GRID, "images": 5 if curves else 0}
    if curves:
        data["curves"] = {"threshold": GRID, "miou": [0.3, 0.5, 0.6, None],
                          "fg_precision": [0.4, 0.7, 0.85, 0.95], "fg_coverage": [0.9, 0.8, 0.6, 0.2],
                          "fg_detected": [1.0, 0.97, 0.8, 0.3]}
        data["targets"] = {"ir_fg_precision": 0.8, "ir_fg_min_coverage": 0.3, "ir_bg_object_recall": 0.95}
        data["measured_choice"] = {"ir_fg_threshold": 0.6, "ir_bg_threshold": 0.4}
    data["source"] = source
    data["note"] = f"calibration: {mode}"
    chosen = data["measured_choice"] if source == "calibrated" else data["configured"]
    data.update(chosen)
    return write_json(path, data)


DEMO_REPORT = {
    "dataset": "demo", "sources": {"points": "points.json"},
    "images": {"train": 8, "val": 3, "train_aug": 10},
    "clicks": {"images": 13, "clicks_in_file": 20, "valid_clicks": 17, "out_of_bounds": 1, "negative": 0,
               "unknown_class": 2, "malformed": 0, "empty_ids": 1, "missing_ids": 0, "ids_not_in_dataset": 0,
               "clicks_per_class": {"1": 9, "3": 8},
               "examples": {"out_of_bounds": ["demo_000004"], "unknown_class": ["a", "b"]}},
    "points_per_image_train_aug": {"mean": 1.7, "median": 2.0,
                                   "histogram": {"0": 1, "1": 2, "2": 6, "3": 1, "4": 0, "5+": 0}},
    "train_aug_without_valid_click": {"count": 1, "examples": ["demo_000007"], "left_out_of_training": 1,
                                      "note": "left out of training (no image-level label)"},
    "click_noise": {"on_gt_pixel": 17, "on_other_class": 3},
    "images_whose_click_classes_differ_from_gt_classes": 2,
    "image_labels": {"source": "xml", "images_without_xml": 0, "clicks_class_not_in_xml": 1,
                     "xml_classes_without_click": 2, "images_with_disagreement": 2, "examples": []},
    "build_seconds": 0.1,
}


def bar_values(ax, horizontal: bool) -> list[float]:
    return [p.get_width() if horizontal else p.get_height() for p in ax.patches]


def tick_labels(ax, axis="y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


# ----------------------------------------------------------------------------- training curves
def test_training_curves_have_a_panel_per_loss_term_plus_lr_and_throughput(tmp_path):
    log = cam_log(tmp_path / "train_log.jsonl")
    fig = plot_training_curves([log], ["PCAM"], "CAM training")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["total loss", "image-level classification loss", "point loss",
                      "learning rate", "throughput"]
    (line,) = panel(fig, "total loss").get_lines()
    assert list(line.get_xdata()) == [1, 2, 3, 4] and list(line.get_ydata()) == [0.9, 0.7, 0.5, 0.4]
    assert list(panel(fig, "point loss").get_lines()[0].get_ydata()) == [0.9 / 4, 0.7 / 4, 0.5 / 4, 0.4 / 4]
    lr_lines = panel(fig, "learning rate").get_lines()  # lr and lr_classifier share the panel
    assert [line.get_label() for line in lr_lines] == ["PCAM: lr", "PCAM: lr_classifier"]
    assert list(lr_lines[1].get_ydata()) == [0.1 / s for s in range(1, 5)]
    assert list(panel(fig, "throughput").get_lines()[0].get_ydata()) == [11.0, 12.0, 13.0, 14.0]
    assert fig.get_suptitle().startswith("CAM training")


def test_training_curves_of_a_resumed_log_plot_the_later_value_of_a_repeated_step(tmp_path):
    rows = [{"step": s, "loss": 1.0, "lr": 0.1} for s in (1, 2, 3)]
    rows += [{"event": "start", "step": 1}, {"step": 2, "loss": 0.2, "lr": 0.1}, {"step": 3, "loss": 0.3, "lr": 0.1},
             {"step": 4, "loss": 0.4, "lr": 0.1}]
    fig = plot_training_curves([write_jsonl(tmp_path / "log.jsonl", rows)], ["deeplab"], "t")
    (line,) = panel(fig, "total loss").get_lines()
    assert list(line.get_xdata()) == [1, 2, 3, 4] and list(line.get_ydata()) == [1.0, 0.2, 0.3, 0.4]
    assert "resumed or rerun 1x" in fig.get_suptitle()


def test_training_curves_draw_irnet_terms_and_overlay_several_logs(tmp_path):
    irn = write_jsonl(tmp_path / "irn.jsonl", [{"step": s, "loss": 0.5, "pos_bg": 0.1 * s, "pos_fg": 0.2,
                                                "neg": 0.3, "lr": 0.1, "images_per_s": 5.0} for s in (1, 2)])
    other = write_jsonl(tmp_path / "other.jsonl", [{"step": 1, "loss": 0.7, "lr": 0.1}])
    fig = plot_training_curves([irn, other], ["a", "b"], "IRNet")
    assert len(fig.axes) == 6  # loss, pos_bg, pos_fg, neg, lr, images/s
    assert list(panel(fig, "IRNet affinity loss: background pairs").get_lines()[0].get_ydata()) == [0.1, 0.2]
    assert [line.get_label() for line in panel(fig, "total loss").get_lines()] == ["a", "b"]
    with pytest.raises(ValueError, match="2 labels for 1 logs"):
        plot_training_curves([irn], ["a", "b"], "t")


def test_training_curves_refuse_a_log_without_steps_and_skip_a_truncated_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.jsonl: no step record"):
        plot_training_curves([empty], ["x"], "t")
    events = write_jsonl(tmp_path / "events.jsonl", [{"event": "start", "step": 0}, {"event": "done"}])
    with pytest.raises(ValueError, match="events.jsonl"):
        plot_training_curves([events], ["x"], "t")
    killed = write_jsonl(tmp_path / "killed.jsonl", [{"step": 1, "loss": 0.5}, '{"step": 2, "lo'])
    fig = plot_training_curves([killed], ["x"], "t")
    assert list(panel(fig, "total loss").get_lines()[0].get_ydata()) == [0.5]
    assert "1 unreadable line(s) skipped" in fig.get_suptitle()


# ----------------------------------------------------------------------------- class IoU
def test_class_iou_skips_absent_classes_and_ends_with_the_mean(tmp_path):
    cam = metrics(tmp_path / "cam.json", {"background": 0.9, "cat": 0.5, "dog": None, "bird": 0.3}, miou=0.55)
    dl = metrics(tmp_path / "dl.json", {"background": 0.95, "cat": 0.6, "dog": None, "bird": None}, miou=0.7)
    fig = plot_class_iou([cam, dl], ["CAM", "DeepLab"], "IoU")
    (ax,) = fig.axes
    assert tick_labels(ax) == ["background", "cat", "bird", "mean (mIoU)"]
    assert "3 of 4 classes present; 1 skipped" in ax.get_title()
    widths = bar_values(ax, horizontal=True)
    assert np.allclose(widths[:4], [90, 50, 30, 55]) and np.allclose(widths[4:], [95, 60, 0, 70])
    assert any(t.get_text() == "—" for t in ax.texts)  # DeepLab has no bird: marked, not a 0 bar
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["CAM (mIoU 55.0)", "DeepLab (mIoU 70.0)"]


def test_class_iou_takes_names_of_a_bare_list_from_the_index(tmp_path):
    index = tiny_index(tmp_path / "index.json")
    path = write_json(tmp_path / "m.json", {"iou": [0.8, None, 0.4, 0.2], "miou": 0.4667})
    (ax,) = plot_class_iou([path], ["x"], "t", index=index).axes
    assert tick_labels(ax) == ["background", "dog", "bird", "mean (mIoU)"]
    bad = write_json(tmp_path / "short.json", {"iou": [0.8, 0.2], "miou": 0.5})
    with pytest.raises(ValueError, match="short.json: 2 IoUs but the dataset index has 4"):
        plot_class_iou([bad], ["x"], "t", index=index)


def test_class_iou_refuses_bad_metrics_files(tmp_path):
    good = metrics(tmp_path / "a.json", {"background": 0.9, "cat": 0.5})
    other = metrics(tmp_path / "b.json", {"background": 0.9, "dog": 0.5})
    with pytest.raises(ValueError, match="b.json: its classes"):
        plot_class_iou([good, other], ["a", "b"], "t")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: cannot read"):
        plot_class_iou([broken], ["x"], "t")
    with pytest.raises(ValueError, match="no_iou.json: not a metrics file"):
        plot_class_iou([write_json(tmp_path / "no_iou.json", {"miou": 0.5})], ["x"], "t")


def test_class_iou_of_an_unscored_split_says_so(tmp_path):
    path = write_json(tmp_path / "m.json", {"iou": {"background": None, "cat": None}, "miou": None,
                                            "note": "not scored: no mask"})
    (ax,) = plot_class_iou([path], ["x"], "t").axes
    assert "not scored: no mask" in ax.texts[0].get_text()


# ----------------------------------------------------------------------------- calibration
def vlines(ax, prefix):
    return {line.get_gid().split(":", 1)[1]: line.get_xdata()[0] for line in ax.get_lines()
            if (line.get_gid() or "").startswith(prefix)}


def test_calibration_draws_every_curve_and_marks_the_chosen_thresholds(tmp_path):
    (ax,) = plot_calibration(calibration(tmp_path / "ir.json"), "IR labels").axes
    curves = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("curve:")]
    assert len(curves) == 4 and list(curves[1].get_xdata()) == GRID
    assert list(curves[1].get_ydata()) == [0.4, 0.7, 0.85, 0.95]
    assert math.isnan(curves[0].get_ydata()[3])  # a null mIoU is a gap, not a zero
    assert vlines(ax, "used:") == {"ir_fg_threshold": 0.6, "ir_bg_threshold": 0.4}
    assert vlines(ax, "auto:") == {}  # auto mode: the used values are the measured ones
    labels = ax.get_legend_handles_labels()[1]
    assert "used: IR fg 0.60" in labels and "used: IR bg 0.40" in labels
    assert "target fg precision 0.80" in labels


def test_calibration_in_fixed_mode_also_marks_what_auto_would_choose(tmp_path):
    (ax,) = plot_calibration(calibration(tmp_path / "ir.json", "fixed", "configured"), "t").axes
    assert vlines(ax, "used:") == {"ir_fg_threshold": 0.3, "ir_bg_threshold": 0.05}
    assert vlines(ax, "auto:") == {"ir_fg_threshold": 0.6, "ir_bg_threshold": 0.4}
    assert all(line.get_linestyle() == "--" for line in ax.get_lines()
               if (line.get_gid() or "").startswith("auto:"))


def test_calibration_fallback_without_curves_explains_itself(tmp_path):
    (ax,) = plot_calibration(calibration(tmp_path / "w.json", "auto", "fallback", curves=False), "t").axes
    text = ax.texts[0].get_text()
    assert "No masked train image was available" in text and "IR fg 0.30, IR bg 0.05" in text


def test_calibration_refuses_other_files(tmp_path):
    with pytest.raises(ValueError, match="x.json: not a pcam calibration file"):
        plot_calibration(write_json(tmp_path / "x.json", {"format": "other"}), "t")
    data = json.loads(calibration(tmp_path / "c.json").read_text())
    data["curves"]["miou"] = [0.1]
    with pytest.raises(ValueError, match="c.json: curve 'miou' has 1 values for 4 thresholds"):
        plot_calibration(write_json(tmp_path / "c.json", data), "t")


# ----------------------------------------------------------------------------- data report
def test_data_report_draws_points_per_image_clicks_per_class_and_quirks(tmp_path):
    index = tiny_index(tmp_path / "index.json")
    fig = plot_data_report(write_json(tmp_path / "r.json", DEMO_REPORT), "Data", index=index)
    assert len(fig.axes) == 4
    hist = panel(fig, "points per train_aug image (mean 1.70, median 2.00)")
    assert bar_values(hist, horizontal=False) == [1, 2, 6, 1, 0, 0]
    assert tick_labels(hist, "x") == ["0", "1", "2", "3", "4", "5+"]
    classes = panel(fig, "clicks per class (17 valid)")
    assert tick_labels(classes) == ["cat", "bird"] and bar_values(classes, horizontal=True) == [9, 8]
    quirks = panel(fig, "counted quirks and skips (17 valid of 20 clicks)")
    counts = dict(zip(tick_labels(quirks), bar_values(quirks, horizontal=True)))
    assert counts["unknown class"] == 2 and counts["negative coordinate"] == 0
    assert counts["valid clicks on another GT class's pixel"] == 3
    assert counts["XML classes without a click"] == 2
    assert "valid clicks" not in counts  # a total, not a quirk
    assert "out of bounds: demo_000004" in panel(fig, "context").texts[0].get_text()


def test_data_report_with_missing_keys_still_draws(tmp_path):
    report = {"dataset": "custom", "images": {"train": 3},
              "clicks": {"format": "coco", "valid_clicks": 4, "non_point_shape": 2, "image_not_found": 1,
                         "unknown_class_names": {"kitten": 2}},
              "masks_without_image": 1}
    fig = plot_data_report(write_json(tmp_path / "r.json", report), "Data")
    assert len(fig.axes) == 4
    counts = dict(zip(tick_labels(panel(fig, "counted quirks and skips")),
                      bar_values(panel(fig, "counted quirks and skips"), horizontal=True)))
    assert counts == {"non-point shape (ignored)": 2, "click for an image not in the dataset": 1,
                      "masks without an image": 1}
    assert "no distribution" in panel(fig, "points per train_aug image").texts[0].get_text()
    assert "'kitten' (2)" in panel(fig, "context").texts[0].get_text()
    with pytest.raises(ValueError, match="m.json: not a data report"):
        plot_data_report(write_json(tmp_path / "m.json", {"miou": 0.5}), "t")


# ----------------------------------------------------------------------------- command line
def run_cli(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(argv))


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        extrema = image.convert("L").getextrema()
    assert extrema[0] < extrema[1]  # not a single colour
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temp file left behind


def test_cli_writes_every_figure_as_a_png(tmp_path):
    log = cam_log(tmp_path / "train_log.jsonl")
    m = metrics(tmp_path / "m.json", {"background": 0.9, "cat": 0.5})
    cases = {
        "curves.png": ["training-curves", "--log", str(log), "--labels", "PCAM", "--title", "T"],
        "iou.png": ["class-iou", "--metrics", str(m), "--metrics", str(m), "--labels", "a", "b"],
        "cal.png": ["calibration", "--calibration", str(calibration(tmp_path / "c.json"))],
        "fallback.png": ["calibration", "--calibration",
                         str(calibration(tmp_path / "f.json", source="fallback", curves=False))],
        "data.png": ["data-report", "--report", str(write_json(tmp_path / "r.json", DEMO_REPORT))],
    }
    for name, argv in cases.items():
        out = tmp_path / "figures" / name
        assert run_cli(argv + ["--out", str(out)]) == 0
        assert_png(out)


def test_cli_error_names_the_file_and_writes_nothing(tmp_path):
    empty = tmp_path / "train_log.jsonl"
    empty.write_text("\n")
    out = tmp_path / "curves.png"
    with pytest.raises(ValueError, match="train_log.jsonl"):
        run_cli(["training-curves", "--log", str(empty), "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit):  # the figure is a required sub-command
        run_cli([])
