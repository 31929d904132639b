"""Calibration: threshold sweeps on hand-made maps with a known optimum, the precision
criteria, the fixed mode and the fallback without masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irn_fixtures import make_data
from pcam_core.calibration.calibration_file import read_calibration
from pcam_core.calibration.cams import calibrate_cams
from pcam_core.calibration.thresholds import GRID, ThresholdSweep, best_miou_threshold, ir_thresholds
from pcam_core.calibration.walk import calibrate_walk

CONFIGURED = {"cam_eval_threshold": 0.3, "ir_fg_threshold": 0.3, "ir_bg_threshold": 0.05}


def hand_made_image():
    """20x20 mask with a 10x10 object (class 8): maps 0.62 inside, 0.5 on the object's outer
    ring, 0.42 on a 2-pixel background ring around it, 0.08 elsewhere.

    Every τ in [0.42, 0.5) labels exactly the object, so the grid's only perfect τ is 0.45.
    """
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 8
    maps = np.full((1, 20, 20), 0.08, np.float32)
    maps[0, 3:17, 3:17] = 0.42
    maps[0, 5:15, 5:15] = 0.5
    maps[0, 6:14, 6:14] = 0.62
    return maps, gt


def sweep_of_hand_made() -> dict:
    sweep = ThresholdSweep(num_classes=21)
    maps, gt = hand_made_image()
    sweep.add(maps, [8], gt)
    return sweep.curves()


def test_sweep_picks_the_known_optimum():
    curves = sweep_of_hand_made()
    assert best_miou_threshold(curves) == 0.45
    assert curves["miou"][GRID.index(0.45)] == 1.0
    assert curves["miou"][GRID.index(0.4)] < 1.0 and curves["miou"][GRID.index(0.5)] < 1.0


def test_precision_and_coverage_curves_by_hand():
    curves = sweep_of_hand_made()
    at = {t: i for i, t in enumerate(curves["threshold"])}
    # τ = 0.05: every pixel is foreground, 100 of 400 are the object
    assert curves["fg_precision"][at[0.05]] == 0.25
    assert curves["bg_precision"][at[0.05]] is None  # no background pixel at all
    # τ = 0.10 .. 0.40: object + ring (196 pixels) are foreground
    assert curves["fg_precision"][at[0.2]] == round(100 / 196, 5)
    assert curves["fg_coverage"][at[0.2]] == 1.0
    assert curves["bg_precision"][at[0.2]] == 1.0
    assert curves["bg_coverage"][at[0.2]] == round(204 / 300, 5)
    # τ = 0.50: the object's outer ring (36 pixels) falls to background
    assert curves["fg_coverage"][at[0.5]] == 0.64 and curves["fg_detected"][at[0.5]] == 0.64
    assert curves["bg_precision"][at[0.5]] == round(300 / 336, 5)


def test_ir_thresholds_follow_the_precision_targets():
    curves = sweep_of_hand_made()
    # lowest τ with precision >= 0.8 is 0.45; highest τ below it keeping >= 95 % of the object
    # out of the background: 0.40 (at 0.50 the object's outer ring, 36 %, would be background)
    assert ir_thresholds(curves, 0.8, 0.95)[:2] == (0.45, 0.4)
    # a lax foreground target admits the background ring: τ_fg 0.10, τ_bg the grid's bottom
    assert ir_thresholds(curves, 0.5, 0.95)[:2] == (0.1, 0.05)
    # an unreachable target takes the purest threshold and says so
    tau_fg, _, note = ir_thresholds({**curves, "fg_precision": [min(p, 0.7) if p else p
                                                                 for p in curves["fg_precision"]]}, 0.9, 0.95)
    assert "no threshold reaches foreground precision 0.9" in note
    # a coverage floor: 0.50 would be pure but labels only 64 % of the object
    assert ir_thresholds(curves, 0.8, 0.95, fg_min_coverage=0.9)[:2] == (0.45, 0.4)
    capped = {**curves, "fg_precision": [min(p, 0.9) if p else p for p in curves["fg_precision"]]}
    tau_fg, _, note = ir_thresholds(capped, 0.95, 0.95, fg_min_coverage=0.9)
    assert tau_fg == 0.45 and "keeps that coverage" in note  # not 0.50: it would cover 64 %
    # weak maps that never reach the floor: the threshold of the most coverage, with a note
    weak = {**curves, "fg_coverage": [0.1 if c else c for c in curves["fg_coverage"]]}
    tau_fg, tau_bg, note = ir_thresholds(weak, 0.8, 0.95, fg_min_coverage=0.3)
    assert (tau_fg, tau_bg) == (0.05, 0.05) and "no threshold labels 0.3 of the object pixels" in note
    # no background threshold keeps enough of the object: the lowest, with a note
    leaky = {**curves, "fg_detected": [0.5] * len(curves["fg_detected"])}
    tau_fg, tau_bg, note = ir_thresholds(leaky, 0.8, 0.95)
    assert (tau_fg, tau_bg) == (0.45, 0.05) and "fewer than 0.95 of the object pixels" in note


def test_sweep_ignores_void_and_rejects_a_size_mismatch():
    maps, gt = hand_made_image()
    gt[0:3, :] = 255
    sweep = ThresholdSweep(num_classes=21)
    sweep.add(maps, [8], gt)
    assert sweep.matrices[0].sum() == 400 - 60
    with pytest.raises(ValueError, match="size"):
        sweep.add(maps[:, :10], [8], gt)


def _params(mode="auto"):
    return {"mode": mode, "max_images": 50, "ir_fg_precision": 0.8, "ir_bg_object_recall": 0.95,
            "ir_fg_min_coverage": 0.3, **CONFIGURED}


def test_calibrate_cams_auto_and_fixed(tmp_path):
    data = make_data(tmp_path, split="train", not_stored=(2,))
    stores = [data["cams"]]
    auto = calibrate_cams(data["index"], stores, _params("auto"), tmp_path / "a.json", "cam_threshold")
    assert auto["source"] == "calibrated" and auto["images"] == 3
    assert auto["cam_eval_threshold"] == best_miou_threshold(auto["curves"])
    ir = calibrate_cams(data["index"], stores, _params("auto"), tmp_path / "ir.json", "ir_labels")
    assert ir["ir_bg_threshold"] < ir["ir_fg_threshold"]
    assert (ir["ir_fg_threshold"], ir["ir_bg_threshold"]) == ir_thresholds(ir["curves"], 0.8, 0.95)[:2]
    assert read_calibration(tmp_path / "ir.json", "ir_fg_threshold") == ir["ir_fg_threshold"]
    assert "ir_fg_threshold" not in auto and "cam_eval_threshold" not in ir

    for step, measured in (("cam_threshold", auto), ("ir_labels", ir)):
        fixed = calibrate_cams(data["index"], stores, _params("fixed"), tmp_path / "f.json", step)
        assert fixed["source"] == "configured"
        assert {k: fixed[k] for k in fixed["configured"]} == {k: CONFIGURED[k] for k in fixed["configured"]}
        # what auto would pick is still measured and recorded
        assert fixed["measured_choice"] == measured["measured_choice"]


def test_calibrate_cams_falls_back_without_masked_train_images(tmp_path):
    data = make_data(tmp_path, split="train_aug")  # no train split: nothing has a scored mask
    result = calibrate_cams(data["index"], [data["cams"]], _params("auto"), tmp_path / "c.json", "ir_labels")
    assert result["source"] == "fallback" and result["images"] == 0
    assert (result["ir_fg_threshold"], result["ir_bg_threshold"]) == (0.3, 0.05)
    assert "no train image has a ground-truth mask" in result["note"]
    assert json.loads((tmp_path / "c.json").read_text())["source"] == "fallback"


def test_read_calibration_names_the_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="other.json"):
        read_calibration(path, "walk_bg_threshold")
    with pytest.raises(ValueError, match="missing.json"):
        read_calibration(tmp_path / "missing.json", "walk_bg_threshold")


def test_calibrate_walk_picks_the_best_label_threshold(tmp_path):
    """The walk step's choice equals the argmax over the grid of the mIoU of the very labels
    `pcam pseudo-labels` would cut (WalkRecord.labels), scored by the evaluation's matrix."""
    from pcam_core.cam.store import CamStore
    from pcam_core.common.dataset_index import DatasetIndex
    from pcam_core.evaluation.miou import ConfusionMatrix
    from pcam_core.irn.walk_store import WalkStore, WalkStoreWriter

    data = make_data(tmp_path, split="train", not_stored=(2,))
    walk = tmp_path / "walk.h5"
    rng = np.random.default_rng(0)
    with CamStore(data["cams"]) as cams, WalkStoreWriter(walk) as writer:
        for image_id in cams.ids():
            record = cams[image_id]
            # a walk-like map: the seeds, squared and smeared a little by noise
            propagated = record.cam ** 2 + 0.05 * rng.random(record.cam.shape).astype(np.float32)
            h, w = record.high_res.shape[1:]
            writer.add(image_id, record.keys, propagated, np.zeros(record.cam.shape[1:], np.float32), h, w)
    result = calibrate_walk(data["index"], [walk], {"mode": "auto", "max_images": 50, "walk_bg_threshold": 0.3},
                            tmp_path / "walk.json")
    index = DatasetIndex.load(data["index"])
    scores = []
    with WalkStore(walk) as store:
        for tau in GRID:
            cm = ConfusionMatrix(index.classes.num_classes)
            for image_id in store.ids():
                cm.update(index[image_id].load_gt_mask(), store[image_id].labels(tau))
            scores.append(cm.miou())
    assert result["source"] == "calibrated" and result["images"] == 3
    assert result["walk_bg_threshold"] == GRID[int(np.argmax(scores))]
    assert np.allclose(result["curves"]["miou"], scores, atol=1e-5)


def test_empty_maps_fall_back_to_the_configured_thresholds(tmp_path):
    """CAMs that never label an object pixel (an untrained network) cannot choose IR
    thresholds: the configured ones are used and the note says why, the run goes on."""
    from pcam_core.cam.store import CamStore, CamStoreWriter

    data = make_data(tmp_path, split="train", not_stored=(2,))
    empty = tmp_path / "empty.h5"
    with CamStore(data["cams"]) as cams, CamStoreWriter(empty) as writer:
        for image_id in cams.ids():
            record = cams[image_id]
            writer.add(image_id, record.keys, np.zeros_like(record.cam), np.zeros_like(record.high_res))
    result = calibrate_cams(data["index"], [empty], _params("auto"), tmp_path / "ir.json", "ir_labels")
    assert result["source"] == "fallback" and result["images"] == 3
    assert (result["ir_fg_threshold"], result["ir_bg_threshold"]) == (0.3, 0.05)
    assert "no threshold labels any object pixel" in result["note"]
