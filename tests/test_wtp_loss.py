""""What's the point": the loss terms (Eq. 2-3) against hand computations, the click-carrying
augmentation, and train-wtp (exact resume, a checkpoint that pcam predict reads)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pcam_core.cli import main as pcam_main
from pcam_core.common.dataset_index import Click, DatasetIndex, ImageRecord
from pcam_core.common.image_io import IMAGENET_MEAN, IMAGENET_STD
from pcam_core.data.voc_reader import voc_class_list
from pcam_core.deeplab.model import load_deeplab
from pcam_core.wtp.augment import click_sample, click_weights, image_level_sets
from pcam_core.wtp.loss import image_level_loss, point_loss, wtp_loss
from pcam_core.wtp.training import train_wtp

# One image, 3 classes (background, 1, 2), 1 x 2 pixels: logits per pixel.
LOGITS = [[[1.0, 0.0]], [[0.0, 2.0]], [[-1.0, 0.5]]]  # (C, H, W)


def _softmax_by_hand():
    """S[c][i] for the two pixels, computed without torch."""
    columns = [[LOGITS[c][0][i] for c in range(3)] for i in range(2)]
    s = [[math.exp(v) / sum(math.exp(u) for u in col) for v in col] for col in columns]
    return [[s[i][c] for i in range(2)] for c in range(3)]


def test_image_level_loss_is_eq2_by_hand():
    logits = torch.tensor([LOGITS])
    s = _softmax_by_hand()
    present = torch.tensor([[True, True, False]])
    absent = torch.tensor([[False, False, True]])
    # L = {0, 1}: -(log max_i S_i0 + log max_i S_i1) / 2;  L' = {2}: -log(1 - max_i S_i2)
    expected = -(math.log(max(s[0])) + math.log(max(s[1]))) / 2 - math.log(1 - max(s[2]))
    got = image_level_loss(torch.log_softmax(logits, 1), present, absent)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # an empty L' contributes nothing
    got = image_level_loss(torch.log_softmax(logits, 1), present, torch.zeros(1, 3, dtype=torch.bool))
    assert got.item() == pytest.approx(-(math.log(max(s[0])) + math.log(max(s[1]))) / 2, rel=1e-6)


def test_image_level_gradient_reaches_only_each_class_argmax_pixel():
    logits = torch.tensor([LOGITS], requires_grad=True)
    loss = image_level_loss(torch.log_softmax(logits, 1), torch.tensor([[False, True, False]]),
                            torch.zeros(1, 3, dtype=torch.bool))
    loss.backward()
    # class 1 is most probable at pixel 1: pixel 0 gets no gradient at all
    assert torch.all(logits.grad[0, :, 0, 0] == 0)
    assert torch.any(logits.grad[0, :, 0, 1] != 0)


def test_point_loss_is_eq3_click_term_by_hand():
    logits = torch.tensor([LOGITS])
    s = _softmax_by_hand()
    labels = torch.tensor([[[255, 1]]])  # a click of class 1 at pixel 1
    weights = torch.tensor([[[0.0, 0.5]]])
    got = point_loss(torch.log_softmax(logits, 1), labels, weights)
    assert got.item() == pytest.approx(-0.5 * math.log(s[1][1]), rel=1e-6)
    # two clicks: the weighted sum
    labels = torch.tensor([[[0, 2]]])
    weights = torch.tensor([[[0.5, 0.25]]])
    expected = -0.5 * math.log(s[0][0]) - 0.25 * math.log(s[2][1])
    assert point_loss(torch.log_softmax(logits, 1), labels, weights).item() == pytest.approx(expected, rel=1e-6)


def test_total_is_the_batch_mean_of_image_plus_point_terms():
    logits = torch.tensor([LOGITS, LOGITS]).float()
    present = torch.tensor([[True, True, False], [True, False, False]])
    absent = torch.tensor([[False, False, True], [False, True, True]])
    labels = torch.tensor([[[255, 1]], [[255, 255]]])
    weights = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])
    total, terms = wtp_loss(logits, present, absent, labels, weights)
    log_probs = torch.log_softmax(logits, 1)
    per_image = image_level_loss(log_probs, present, absent) + point_loss(log_probs, labels, weights)
    assert total.item() == pytest.approx(per_image.mean().item(), rel=1e-6)
    assert terms["loss_img"] + terms["loss_pt"] == pytest.approx(total.item(), rel=1e-6)


def test_a_saturated_absent_class_gives_a_large_finite_loss():
    logits = torch.tensor([[[[0.0]], [[0.0]], [[200.0]]]])
    loss = image_level_loss(torch.log_softmax(logits, 1), torch.tensor([[True, False, False]]),
                            torch.tensor([[False, False, True]]))
    assert torch.isfinite(loss).all() and loss.item() > 10


def test_click_weights_uniform_and_rank():
    clicks = [Click(1, 1, 1, 1), Click(1, 2, 2, 2), Click(2, 3, 3, 1), Click(1, 4, 4, 3)]
    assert click_weights(clicks, "uniform") == [0.25] * 4  # alpha = 1/n (the paper's 1Point)
    assert click_weights(clicks, "rank") == [1.0, 0.5, 1.0, 0.25]  # 1/2^(r-1)
    with pytest.raises(ValueError, match="point_weighting"):
        click_weights(clicks, "other")


def test_image_level_sets_of_a_crop():
    present, absent = image_level_sets(image_classes=(1, 3), clicked={3}, num_classes=5)
    assert present.tolist() == [True, False, False, True, False]  # background + clicked classes
    assert absent.tolist() == [False, False, True, False, True]  # class 1: in the image, unknown here


@pytest.mark.parametrize("seed", range(12))
def test_clicks_move_with_the_image_through_scale_crop_and_flip(seed):
    """Each click's pixel keeps its own colour: a unique colour is painted under every click."""
    rng = np.random.default_rng(100 + seed)
    h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
    rgb = np.full((h, w, 3), 40, np.uint8)
    clicks = []
    for k, cls in enumerate((1, 2, 3)):  # one click in each third of the width: no overlap
        r, c = int(rng.integers(0, h)), int(rng.integers(k * w // 3 + 2, (k + 1) * w // 3 - 2))
        rgb[max(0, r - 2):r + 3, max(0, c - 2):c + 3] = (200, 60 * k, 250 - 60 * k)
        clicks.append(Click(cls, c + 0.5, r + 0.5, 1))
    weights = click_weights(clicks, "uniform")
    image, labels, point_weights, clicked = click_sample(rgb, clicks, weights, 32, (0.8, 1.2),
                                                         np.random.default_rng(seed))
    assert image.shape == (32, 32, 3) and labels.shape == (32, 32)
    assert clicked == {int(v) for v in labels[labels != 255]}
    for cls in clicked:
        k = cls - 1
        colour = np.array((200, 60 * k, 250 - 60 * k)) / 255.0
        expected = (colour - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        (r,), (c,) = np.nonzero(labels == cls)
        # bilinear resizing blurs only the rim of the 5x5 patch painted around the click
        assert np.allclose(image[r, c], expected, atol=0.05), (cls, image[r, c], expected)
        assert point_weights[r, c] == pytest.approx(1 / 3)
    assert np.all(point_weights[labels == 255] == 0)


def test_click_sample_draws_as_deeplab_does():
    """Same seed, same crop as train-deeplab's augmentation (the image part is identical)."""
    from pcam_core.deeplab.training import random_scale_crop_flip

    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    ours, *_ = click_sample(rgb, [], [], 32, (0.5, 1.5), np.random.default_rng(7))
    theirs, _ = random_scale_crop_flip(rgb, np.zeros((50, 70), np.uint8), 32, (0.5, 1.5),
                                       np.random.default_rng(7))
    assert np.array_equal(ours, theirs)


# ----------------------------------------------------------------------------- training
PARAMS = {"backbone": "resnet18", "imagenet_weights": False, "iterations": 5, "batch_size": 2,
          "crop_size": 32, "scale_range": [0.8, 1.2], "lr": 0.007, "momentum": 0.9,
          "nesterov": True, "weight_decay": 4e-5, "poly_power": 0.9, "lr_groups": "single",
          "checkpoint_every": 2, "num_workers": 0, "seed": 0}
WTP = {"point_weighting": "uniform"}


@pytest.fixture(scope="module")
def click_data(tmp_path_factory):
    """4 train_aug images (3 with clicks) and 1 val image."""
    root = tmp_path_factory.mktemp("wtp_data")
    rng = np.random.default_rng(0)
    records = []
    for i in range(5):
        h, w = 28 + 2 * i, 36 - 2 * i
        path = root / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        clicks = () if i == 3 else (Click(1 + i % 2, 10.5, 12.0, 1), Click(7, 20.0, 5.5, 1))
        records.append(ImageRecord(id=f"img{i}", image=str(path), height=h, width=w,
                                   splits=("val",) if i == 4 else ("train_aug",),
                                   classes=tuple(sorted({c.cls for c in clicks})), gt_classes=(),
                                   clicks=clicks))
    index = DatasetIndex(records, {"train_aug": ["img0", "img1", "img2", "img3"], "val": ["img4"]},
                         dataset="demo", classes=voc_class_list())
    index.save(root / "index.json")
    return root, index


def test_killed_wtp_run_resumes_exactly_and_predict_reads_its_checkpoint(click_data, tmp_path):
    root, index = click_data
    reference = tmp_path / "ref" / "model.pt"
    log = tmp_path / "ref" / "log.jsonl"
    report = train_wtp(index, WTP, PARAMS, reference, log_jsonl=log, device="cpu")
    assert report["images"] == 3 and report["clicks"] == 6  # img3 has no click: left out
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in rows if "step" in r and "loss" in r]
    assert len(steps) == 5 and all(r["loss_img"] > 0 and r["loss_pt"] >= 0 for r in steps)

    out = tmp_path / "run" / "model.pt"

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_wtp(index, WTP, PARAMS, out, device="cpu", on_step=kill)
    assert not out.exists() and (out.parent / "model.pt.ckpt").exists()
    assert train_wtp(index, WTP, PARAMS, out, device="cpu")["resumed_from"] == 2
    assert not (out.parent / "model.pt.ckpt").exists()
    a = torch.load(reference, weights_only=False)
    b = torch.load(out, weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key

    # the checkpoint is a train-deeplab one: pcam predict segments the val images with it
    model, payload = load_deeplab(out)
    assert payload["wtp"] == WTP and payload["num_classes"] == 21
    shard = tmp_path / "shard.txt"
    shard.write_text("img4\n")
    pcam_main(["predict", "--checkpoint", str(out), "--index", str(root / "index.json"),
               "--shard", str(shard), "--split", "val", "--out-dir", str(tmp_path / "pred"),
               "--device", "cpu"])
    assert (tmp_path / "pred" / "img4.png").exists()


def test_a_checkpoint_of_other_wtp_settings_is_not_resumed(click_data, tmp_path):
    _, index = click_data
    out = tmp_path / "model.pt"

    def kill(step):
        if step == 2:
            raise KeyboardInterrupt

    params = dict(PARAMS, iterations=3)
    with pytest.raises(KeyboardInterrupt):
        train_wtp(index, WTP, params, out, device="cpu", on_step=kill)
    assert train_wtp(index, {"point_weighting": "rank"}, params, out, device="cpu")["resumed_from"] == 0


def test_cli_trains_and_checks_its_sections(click_data, tmp_path):
    root, _ = click_data
    args = ["train-wtp", "--index", str(root / "index.json"), "--deeplab-params",
            json.dumps(dict(PARAMS, iterations=1)), "--out", str(tmp_path / "m.pt"), "--device", "cpu"]
    with pytest.raises(ValueError, match="point_weighting"):
        pcam_main([*args, "--params", json.dumps({})])
    assert pcam_main([*args, "--params", json.dumps(WTP)]) == 0
    assert (tmp_path / "m.pt").exists()
