"""A NaN or Inf loss stops each training before its optimizer step, with an error naming the
stage and the step; the side checkpoint of the last good step stays and no output appears.
Non-finite weights are never written either."""

import json
import math

import pytest
import torch

from cam_tiny_data import TINY_PARAMS, make_tiny_index
from pcam_core.cam import training as cam_training
from pcam_core.cam.loss import CamLoss
from pcam_core.common.training_loop import Checkpointer, NonFiniteTraining
from pcam_core.deeplab.training import train_deeplab
from pcam_core.irn import training as irn_training
from test_deeplab_training import PARAMS as DEEPLAB_PARAMS, tiny_data  # noqa: F401  (a module fixture)
from test_irn_training import PARAMS as IRN_PARAMS, data as irn_data  # noqa: F401  (a fixture)
from test_wtp_loss import PARAMS as WTP_DEEPLAB_PARAMS, WTP, click_data  # noqa: F401  (a module fixture)

NAN = float("nan")


def _spoiled_at(real, call, spoil):
    """The loss function ``real``, whose ``call``-th result (counted from 1) goes through ``spoil``."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        return spoil(result) if len(calls) == call else result

    return wrapper


def _side(out):
    return out.with_name(out.name + ".ckpt")


def _check_stopped(error, stage, step, out, kept_step):
    message = str(error.value)
    assert message.startswith(f"{stage}: the loss is not finite at step {step} (loss = nan")
    assert f"Kept: the side checkpoint {_side(out)} of step {kept_step}, the last good state" in message
    assert "a rerun with other training settings (say a lower learning rate) ignores it" in message
    assert torch.load(_side(out), weights_only=False)["step"] == kept_step
    assert not out.exists()
    return message


def _nan_point_term(losses):
    bad = losses.point * NAN
    return CamLoss(total=losses.image + bad, image=losses.image, point=bad,
                                images_with_points=losses.images_with_points)


def test_train_cam(tmp_path, monkeypatch):
    index = make_tiny_index(tmp_path / "data", num_train=6, num_val=1)
    out, log = tmp_path / "cam" / "model.pt", tmp_path / "cam" / "log.jsonl"
    # 6 images, batch 2, 2 epochs: 6 steps, checkpoints after steps 2 and 4; step 5 turns NaN
    monkeypatch.setattr(cam_training, "cam_loss", _spoiled_at(cam_training.cam_loss, 5, _nan_point_term))
    with pytest.raises(NonFiniteTraining) as error:
        cam_training.train_cam(index, "pcam", TINY_PARAMS, out, log_jsonl=log, device="cpu")
    message = _check_stopped(error, "train-cam", 5, out, kept_step=4)
    assert "loss_pt = nan" in message and "loss_img" not in message  # the culprit term only
    assert "Lower cam.lr_backbone / cam.lr_classifier" in message
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]

    monkeypatch.undo()  # the same settings, without the NaN: resumes at the kept step
    summary = cam_training.train_cam(index, "pcam", TINY_PARAMS, out, log_jsonl=log, device="cpu")
    assert summary["start_step"] == 4 and out.exists() and not _side(out).exists()


def test_train_cam_before_any_checkpoint(tmp_path, monkeypatch):
    index = make_tiny_index(tmp_path / "data", num_train=4, num_val=1)
    out = tmp_path / "model.pt"
    def inf_image_term(losses):
        return CamLoss(losses.total * math.inf, losses.image * math.inf, None, 0)

    monkeypatch.setattr(cam_training, "cam_loss", _spoiled_at(cam_training.cam_loss, 1, inf_image_term))
    with pytest.raises(NonFiniteTraining, match=r"train-cam: the loss is not finite at step 1 \(loss = inf, "
                                                r"loss_img = inf\); stopped before its optimizer step\. "
                                                r"No side checkpoint exists yet \(the first is written after "
                                                r"step 2\); a rerun starts over\."):
        cam_training.train_cam(index, "cam", TINY_PARAMS, out, device="cpu")
    assert not out.exists() and not _side(out).exists()


def test_train_irn(irn_data, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "irn.pt"
    params = {**IRN_PARAMS, "checkpoint_every": 2}  # 4 steps; checkpoints after 2; step 3 turns NaN
    def nan_neg_term(result):
        total, terms = result
        return total * NAN, {**terms, "neg": NAN}

    monkeypatch.setattr(irn_training, "affinity_loss", _spoiled_at(irn_training.affinity_loss, 3, nan_neg_term))
    with pytest.raises(NonFiniteTraining) as error:
        irn_training.train_irn(irn_data["index"], irn_data["label_dirs"], params, out, device="cpu")
    message = _check_stopped(error, "train-irn", 3, out, kept_step=2)
    assert "neg = nan" in message and "pos_bg" not in message and "Lower irn.lr" in message


def test_train_deeplab(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    _, index, label_dirs = tiny_data
    out = tmp_path / "deeplab.pt"
    # 6 iterations, checkpoints after 2 and 4; step 5 turns NaN
    loss = _spoiled_at(torch.nn.functional.cross_entropy, 5, lambda value: value * NAN)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", loss)
    with pytest.raises(NonFiniteTraining) as error:
        train_deeplab(index, label_dirs, DEEPLAB_PARAMS, out, device="cpu")
    message = _check_stopped(error, "train-deeplab", 5, out, kept_step=4)
    assert "Lower deeplab.lr, or check the pseudo labels (rule pseudo_labels)." in message


def test_train_wtp(click_data, tmp_path, monkeypatch):  # noqa: F811
    from pcam_core.wtp import training as wtp_training

    _, index = click_data
    out = tmp_path / "wtp.pt"
    # 5 iterations, checkpoints after 2 and 4; step 5's point term turns NaN
    def nan_point_term(result):
        total, terms = result
        return total * NAN, {**terms, "loss_pt": NAN}

    monkeypatch.setattr(wtp_training, "wtp_loss", _spoiled_at(wtp_training.wtp_loss, 5, nan_point_term))
    with pytest.raises(NonFiniteTraining) as error:
        wtp_training.train_wtp(index, WTP, WTP_DEEPLAB_PARAMS, out, device="cpu")
    message = _check_stopped(error, "train-wtp", 5, out, kept_step=4)
    assert "loss_pt = nan" in message and "Lower deeplab.lr." in message


def test_a_stale_side_file_is_named_as_not_resumed(tmp_path):
    out = tmp_path / "model.pt"
    Checkpointer(out, 2, command="train-irn").save({"step": 2, "fingerprint": "old settings"})
    checkpointer = Checkpointer(out, 2, command="train-irn")
    assert checkpointer.load(fingerprint="new settings") is None
    with pytest.raises(NonFiniteTraining, match=rf"No checkpoint of this run exists yet \({_side(out)} is from "
                                                "other settings or code and is not resumed"):
        checkpointer.check_loss(1, torch.tensor(NAN))
    checkpointer.check_loss(2, torch.tensor(0.5))  # a finite loss passes


def test_non_finite_weights_are_never_written(tmp_path):
    """A finite loss can still end in a non-finite update: neither a checkpoint nor the output
    is written from it, and the last good side file stays."""
    out = tmp_path / "model.pt"
    checkpointer = Checkpointer(out, 2, command="train-irn", hint="Lower irn.lr.")
    checkpointer.save({"step": 2, "model": {"w": torch.ones(3)}, "rng": {"torch": torch.get_rng_state()}})
    bad = {"step": 4, "model": {"w": torch.ones(3)},
           "optimizer": {"state": {0: {"momentum_buffer": torch.tensor([1.0, math.inf])}}}}
    with pytest.raises(NonFiniteTraining, match=r"train-irn: optimizer\.state\.0\.momentum_buffer holds NaN "
                                                r"or Inf after step 4 \(its loss was finite, its update was "
                                                r"not\); nothing was written\. Kept: the side checkpoint .* of "
                                                r"step 2.* Lower irn\.lr\."):
        checkpointer.save(bad)
    assert torch.load(_side(out), weights_only=False)["step"] == 2
    with pytest.raises(NonFiniteTraining, match=r"state_dict\.w holds NaN or Inf"):
        checkpointer.finish({"state_dict": {"w": torch.tensor([NAN])}})
    assert not out.exists() and _side(out).exists()
