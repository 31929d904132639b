"""IRNet training: augmentation geometry, kill + resume from the side checkpoint, final output."""

import json

import numpy as np
import pytest
import torch

from irn_fixtures import make_data
from pcam_core.irn import training as irn_training
from pcam_core.common.training_loop import Checkpointer
from pcam_core.common.label_png import read_label_png, write_label_png

PARAMS = {"backbone": "resnet18", "imagenet_weights": False, "batch_size": 2, "crop_size": 32,
          "scale_range": [0.5, 1.5], "epochs": 2, "lr": 0.1, "momentum": 0.0, "weight_decay": 1e-4,
          "poly_power": 0.9, "radius": 4, "checkpoint_every": 1, "num_workers": 0, "seed": 0}


@pytest.fixture()
def data(tmp_path):
    data = make_data(tmp_path)
    label_dir = tmp_path / "ir" / "0-of-1"
    for record in data["records"]:  # GT with a void band stands in for mined IR labels
        label = read_label_png(record.gt_png)
        label[:, : record.width // 8] = 255
        write_label_png(label_dir / f"{record.id}.png", label)
    data["label_dirs"] = [label_dir]
    return data


def test_augment_fills_and_sizes():
    rng = np.random.default_rng(0)
    rgb = np.full((20, 30, 3), 255, np.uint8)
    label = np.full((20, 30), 7, np.uint8)
    image, out = irn_training.augment(rgb, label, {"scale_range": [1.0, 1.0], "crop_size": 40}, rng)
    assert image.shape == (40, 40, 3) and out.shape == (40, 40)
    assert (out == 7).sum() == 600 and (out == 255).sum() == 1600 - 600  # label fill 255
    assert np.count_nonzero(np.abs(image).sum(-1) == 0) == 1600 - 600  # image fill 0 (mean colour)


def test_epoch_batches_resume_position():
    full = irn_training.epoch_batches(10, 3, seed=0, epoch=1)
    assert len(full) == 3 and all(len(b) == 3 for b in full)  # drop_last
    assert irn_training.epoch_batches(10, 3, seed=0, epoch=1, start=2) == full[2:]
    assert full != irn_training.epoch_batches(10, 3, seed=0, epoch=2)


def _train(data, out, log):
    return irn_training.train_irn(data["index"], data["label_dirs"], PARAMS, out, log, device="cpu")


def test_killed_run_resumes_and_matches(data, tmp_path, monkeypatch):
    reference = tmp_path / "reference.pt"
    summary = _train(data, reference, None)
    assert summary["steps"] == 4 and summary["missing_labels"] == 0

    out = tmp_path / "model.pt"
    log = tmp_path / "log.jsonl"
    real_save = Checkpointer.save

    def save_then_die(self, state):
        real_save(self, state)
        if state["step"] == 2:
            raise KeyboardInterrupt  # the job is killed right after its step-2 checkpoint

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(data, out, log)
    assert not out.exists() and Checkpointer(out, 1).side_file.exists()
    monkeypatch.undo()

    summary = _train(data, out, log)
    assert summary["steps_run"] == 2  # continued at step 2 of 4
    assert out.exists() and not Checkpointer(out, 1).side_file.exists()
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    record = json.loads(log.read_text().splitlines()[-1])
    assert {"loss", "pos_bg", "pos_fg", "neg", "lr", "images_per_s"} <= set(record)

    final, ref = torch.load(out, weights_only=False), torch.load(reference, weights_only=False)
    assert final["depth"] == "resnet18" and final["config"]["radius"] == 4
    for key, value in ref["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=0)


def test_missing_labels_are_counted(data, tmp_path):
    (data["label_dirs"][0] / "img_3.png").unlink()
    params = {**PARAMS, "epochs": 1, "batch_size": 3}
    summary = irn_training.train_irn(data["index"], data["label_dirs"], params, tmp_path / "m.pt", device="cpu")
    assert summary["missing_labels"] == 1 and summary["steps"] == 1


def test_stale_side_file_is_ignored(data, tmp_path):
    out = tmp_path / "model.pt"
    side = Checkpointer(out, 1).side_file
    torch.save({"fingerprint": "other settings", "step": 3, "model": {}, "optimizer": {}, "rng": {}}, side)
    summary = _train(data, out, None)
    assert summary["steps_run"] == 4 and out.exists() and not side.exists()
