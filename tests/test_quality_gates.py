"""Quality gates: each measurement against a hand computation."""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from pcam_core.evaluation.quality_gates import (boundary_regions, class_prior_loss, final_image_loss,
                                     foreground_fraction_gate, like_for_like_gate)


def test_class_prior_loss_is_the_soft_margin_loss_of_the_prior():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)
    prior = labels.mean(axis=0)
    logits = torch.tensor(np.log(prior / (1 - prior)), dtype=torch.float32).expand(4, 3)
    expected = F.multilabel_soft_margin_loss(logits, torch.from_numpy(labels)).item()
    assert abs(class_prior_loss(labels) - expected) < 1e-5


def test_final_image_loss_uses_the_last_tenth_and_the_last_entry_of_a_resumed_step(tmp_path):
    log = tmp_path / "train_log.jsonl"
    rows = [{"step": s, "loss_img": 1.0} for s in range(1, 19)]
    rows += [{"step": 19, "loss_img": 9.0}, {"step": 19, "loss_img": 0.2}, {"step": 20, "loss_img": 0.4}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert abs(final_image_loss(log) - 0.3) < 1e-9  # steps 19 (resumed: 0.2) and 20


def test_boundary_regions_on_a_hand_drawn_mask():
    mask = np.zeros((16, 16), np.uint8)
    mask[0:8, 0:8] = 8  # the 2x2 top-left cells are object interior
    mask[8:16, 8:16] = 255  # an all-void corner: in no region
    mask[4:8, 8:10] = 255  # void beside background (like VOC's outline bands): an edge
    regions = boundary_regions(mask, (4, 4))
    assert regions["interior"][:2, :2].all() and regions["interior"].sum() == 4
    assert regions["edge"][1, 2] and regions["edge"].sum() == 1
    assert not regions["edge"][2:, 2:].any() and not regions["background"][2:, 2:].any()
    assert regions["background"].sum() == 16 - 4 - 1 - 4
    # a cell holding two classes is an edge; odd sizes are padded with the border values
    mask = np.zeros((7, 9), np.uint8)
    mask[:, 3:] = 3
    regions = boundary_regions(mask, (2, 3))
    assert regions["edge"][:, 0].all() and regions["interior"][:, 1:].all()


def _metrics(matrix):
    return {"miou": 0.5, "confusion_matrix": matrix}


def test_foreground_fraction_gate_reads_the_confusion_matrix():
    # rows = ground truth, columns = prediction: 60 true background, 40 true object;
    # the labels call 20 + 40 = 60 pixels foreground -> ratio 1.5
    gate = foreground_fraction_gate(_metrics([[40, 20], [0, 40]]))
    assert gate["predicted"] == 0.6 and gate["masks"] == 0.4 and gate["value"] == 1.5
    assert gate["status"] == "pass"
    assert foreground_fraction_gate(_metrics([[10, 50], [0, 40]]))["status"] == "warn"
    assert foreground_fraction_gate(None)["status"] == "not measured"


def test_like_for_like_gate():
    gate = like_for_like_gate({"miou": 0.60}, {"miou": 0.50}, {"miou": 0.58})
    assert gate["value"] == -0.02 and gate["status"] == "pass"
    gate = like_for_like_gate({"miou": 0.60}, {"miou": 0.50}, {"miou": 0.55})
    assert gate["status"] == "warn" and "deeplab" in gate["advice"]


def test_blot_gates_read_the_blot_scores():
    from pcam_core.evaluation.quality_gates import BLOT_ACCURACY_MIN, BLOT_COVERAGE_MIN, blot_gates

    accuracy, coverage = blot_gates({"miou": 0.9, "pixel_accuracy": 0.98, "coverage": 0.14,
                                     "object_coverage": 0.2})
    assert accuracy["value"] == 0.98 and accuracy["status"] == "pass"
    assert coverage["value"] == 0.14 and coverage["status"] == "pass" and coverage["object_coverage"] == 0.2
    accuracy, coverage = blot_gates({"miou": 0.5, "pixel_accuracy": BLOT_ACCURACY_MIN - 0.01,
                                     "coverage": BLOT_COVERAGE_MIN - 0.01})
    assert accuracy["status"] == "warn" and "pmp." in accuracy["advice"]
    assert coverage["status"] == "warn" and "pmp." in coverage["advice"]
    assert [g["status"] for g in blot_gates(None)] == ["not measured", "not measured"]


def test_final_foreground_fraction_gate_of_deeplab_predictions():
    from pcam_core.evaluation.quality_gates import final_foreground_fraction_gate

    # 60 true background, 40 true object; DeepLab calls 5 + 10 pixels foreground: ratio 0.375
    gate = final_foreground_fraction_gate(_metrics([[55, 5], [30, 10]]), "wtp")
    assert gate["predicted"] == 0.15 and gate["masks"] == 0.4 and gate["value"] == 0.375
    assert gate["status"] == "warn" and "objectness" in gate["advice"]
    assert final_foreground_fraction_gate(_metrics([[50, 10], [5, 35]]), "pmp_blot")["status"] == "pass"


def _gate_args(tmp_path, variant, **files):
    import argparse

    from pcam_core.evaluation.quality_gates import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--index", str(tmp_path / "index.json"), "--variant", variant,
            "--deeplab-val", files.pop("deeplab_val"), "--deeplab-true-classes-val", files.pop("true"),
            "--out-json", str(tmp_path / "g.json"), "--out-md", str(tmp_path / "g.md")]
    for key, value in files.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return parser.parse_args(argv)


def test_each_branch_gets_its_own_gates(tmp_path):
    import pytest

    from pcam_core.evaluation.quality_gates import quality_gates

    val = tmp_path / "val.json"
    val.write_text(json.dumps(_metrics([[50, 10], [5, 35]])))
    blots = tmp_path / "blots.json"
    blots.write_text(json.dumps({"miou": 0.9, "pixel_accuracy": 0.98, "coverage": 0.14}))
    report = quality_gates(_gate_args(tmp_path, "wtp", deeplab_val=str(val), true=str(val)))
    assert [g["name"] for g in report["gates"]] == ["final_fg_fraction"]
    report = quality_gates(_gate_args(tmp_path, "pmp_blot", deeplab_val=str(val), true=str(val),
                                      blots_train=str(blots)))
    assert [g["name"] for g in report["gates"]] == ["blot_accuracy", "blot_coverage", "final_fg_fraction"]
    assert report["warnings"] == 0
    with pytest.raises(ValueError, match="--blots-train"):
        quality_gates(_gate_args(tmp_path, "pmp_blot", deeplab_val=str(val), true=str(val)))
    with pytest.raises(ValueError, match="--cam-log"):
        quality_gates(_gate_args(tmp_path, "pcam", deeplab_val=str(val), true=str(val)))
