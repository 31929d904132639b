"""train-cam: a run killed mid-way resumes from its side checkpoint and finishes cleanly."""

import json

import pytest
import torch

from pcam_core.cam.net import load_cam_model
from pcam_core.cam.training import train_cam

from cam_tiny_data import TINY_PARAMS, make_tiny_index


class Killed(Exception):
    pass


def _kill_at(step_to_die):
    def hook(step):
        if step == step_to_die:
            raise Killed(step)
    return hook


@pytest.mark.parametrize("variant", ["pcam", "pcam_full"])
def test_killed_run_resumes_from_checkpoint(tmp_path, variant):
    index = make_tiny_index(tmp_path / "data", num_train=6, num_val=1)
    out = tmp_path / "cam" / "model.pt"
    log = tmp_path / "cam" / "train_log.jsonl"
    # 6 images, batch 2, 2 epochs -> 6 steps; checkpoints after steps 2 and 4.
    with pytest.raises(Killed):
        train_cam(index, variant, TINY_PARAMS, out, log_jsonl=log, device="cpu", step_hook=_kill_at(3))
    side = out.with_name("model.pt.ckpt")
    assert side.exists() and not out.exists()
    assert torch.load(side, weights_only=False)["step"] == 2

    seen = []
    summary = train_cam(index, variant, TINY_PARAMS, out, log_jsonl=log, device="cpu", step_hook=seen.append)
    assert summary["start_step"] == 2 and seen == [3, 4, 5, 6]
    assert out.exists() and not side.exists()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 3, 4, 5, 6]  # killed run's lines kept, then resumed
    assert all(r["loss_pt"] > 0 for r in lines)  # both variants have points in every batch here
    model, saved = load_cam_model(out)
    assert saved["backbone"] == "resnet18" and saved["variant"] == variant and saved["steps"] == 6


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Per-step sampling and augmentation seeds make resume exact (CPU, fp32)."""
    index = make_tiny_index(tmp_path / "data", num_train=4, num_val=1)
    params = {**TINY_PARAMS, "epochs": 2}  # 4 steps, checkpoint after 2
    straight = tmp_path / "a" / "model.pt"
    train_cam(index, "pcam", params, straight, device="cpu")
    resumed = tmp_path / "b" / "model.pt"
    with pytest.raises(Killed):
        train_cam(index, "pcam", params, resumed, device="cpu", step_hook=_kill_at(3))
    train_cam(index, "pcam", params, resumed, device="cpu")
    a = torch.load(straight, weights_only=False)["state_dict"]
    b = torch.load(resumed, weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_cam_variant_has_no_point_term_and_stale_checkpoint_is_ignored(tmp_path, capsys):
    index = make_tiny_index(tmp_path / "data", num_train=4, num_val=1)
    out = tmp_path / "model.pt"
    params = {**TINY_PARAMS, "epochs": 2}
    with pytest.raises(Killed):
        train_cam(index, "cam", params, out, device="cpu", step_hook=_kill_at(3))
    # The config changed before the restart: the side file must not be resumed.
    log = tmp_path / "log.jsonl"
    summary = train_cam(index, "cam", {**params, "alpha": 0.5, "lr_backbone": 0.02}, out,
                        log_jsonl=log, device="cpu")
    assert summary["start_step"] == 0 and "ignoring" in capsys.readouterr().err
    assert all(json.loads(line)["loss_pt"] == 0.0 for line in log.read_text().splitlines())
