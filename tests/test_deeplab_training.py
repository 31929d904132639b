"""train-deeplab: crop padding, poly LR, exact resume after a kill, the final payload."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pcam_core.common import training_loop as tl
from pcam_core.cli import main as pcam_main
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.deeplab.model import load_deeplab
from pcam_core.deeplab.training import (SamplePlan, find_pseudo_labels, random_scale_crop_flip,
                                        train_deeplab)
from pcam_core.common.image_io import IMAGENET_MEAN, IMAGENET_STD
from pcam_core.common.label_png import write_label_png
from pcam_core.data.voc_reader import VOC_CLASSES
from pcam_core.data.voc_reader import voc_class_list

PARAMS = {"backbone": "resnet18", "imagenet_weights": False, "iterations": 6, "batch_size": 2,
          "crop_size": 32, "scale_range": [0.5, 1.5], "lr": 0.007, "momentum": 0.9,
          "nesterov": True, "weight_decay": 4e-5, "poly_power": 0.9, "lr_groups": "single",
          "checkpoint_every": 2, "num_workers": 0, "seed": 0}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """5 train_aug images (4 with a pseudo label in two shard folders) and 1 val image."""
    root = tmp_path_factory.mktemp("deeplab_data")
    rng = np.random.default_rng(0)
    records, train_aug = [], []
    for i in range(6):
        image_id = f"img{i}"
        h, w = 24 + 4 * i, 40 - 2 * i
        path = root / f"{image_id}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        split = ("val",) if i == 5 else ("train_aug",)
        records.append(ImageRecord(id=image_id, image=str(path), height=h, width=w, splits=split,
                                   classes=(1,), gt_classes=()))
        if i < 5:
            train_aug.append(image_id)
        if i < 4:
            label = np.zeros((h, w), np.uint8)
            label[h // 4:, : w // 2] = 1 + i % 2
            write_label_png(root / "pseudo" / f"{i % 2}-of-2" / f"{image_id}.png", label)
    index = DatasetIndex(records, {"train_aug": train_aug, "val": ["img5"]}, dataset="demo",
                         classes=voc_class_list())
    index.save(root / "index.json")
    return root, index, [root / "pseudo" / "0-of-2", root / "pseudo" / "1-of-2"]


def test_label_padding_is_ignore_never_background():
    rgb = np.full((10, 12, 3), 200, np.uint8)
    label = np.ones((10, 12), np.uint8)
    image, crop = random_scale_crop_flip(rgb, label, 32, (1.0, 1.0), np.random.default_rng(3))
    assert crop.shape == (32, 32) and image.shape == (32, 32, 3)
    assert (crop == 1).sum() == 10 * 12  # the whole image is inside the canvas
    assert set(np.unique(crop)) == {1, 255}  # padding is ignore, never 0
    assert np.all(image[crop == 255] == 0.0)  # image padding = 0 in normalised space (mean)


def test_crop_of_large_image_keeps_labels_aligned():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, (80, 90), dtype=np.uint8)
    rgb = np.repeat(label[..., None] * 100, 3, axis=2).astype(np.uint8)  # colour encodes class
    image, crop = random_scale_crop_flip(rgb, label, 48, (1.0, 1.0), rng)
    assert 255 not in crop
    expected = ((crop[..., None] * 100 / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD))
    assert np.allclose(image, expected, atol=1e-5)


def test_poly_lr_schedule_values():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.007)
    total = 100
    assert tl.apply_poly_lr(opt, 0, total, 0.9) == pytest.approx(0.007)
    assert tl.apply_poly_lr(opt, 50, total, 0.9) == pytest.approx(0.007 * 0.5 ** 0.9)
    assert tl.apply_poly_lr(opt, 99, total, 0.9) == pytest.approx(0.007 * 0.01 ** 0.9)


def test_sample_plan_resumes_the_same_stream():
    full = list(SamplePlan(5, 2, 0, 6, seed=0))
    assert list(SamplePlan(5, 2, 2, 6, seed=0)) == full[4:]
    assert sorted(i for i, _ in full[:5]) == list(range(5))  # each epoch is a permutation


def test_find_pseudo_labels_rejects_overlapping_shards(tmp_path):
    for shard in ("a", "b"):
        write_label_png(tmp_path / shard / "x.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="two pseudo labels"):
        find_pseudo_labels([tmp_path / "a", tmp_path / "b"])


def test_killed_run_resumes_exactly_and_writes_a_complete_payload(tiny_data, tmp_path):
    root, index, label_dirs = tiny_data
    reference = tmp_path / "ref" / "model.pt"
    log_ref = tmp_path / "ref" / "log.jsonl"
    report = train_deeplab(index, label_dirs, PARAMS, reference, log_jsonl=log_ref, device="cpu")
    assert report["images"] == 4 and report["missing_labels"] == 1  # img4 has no label

    # Kill at step 3: the side checkpoint holds step 2; the declared output does not exist.
    out = tmp_path / "run" / "model.pt"

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_deeplab(index, label_dirs, PARAMS, out, device="cpu", on_step=kill)
    assert not out.exists() and (out.parent / "model.pt.ckpt").exists()
    report = train_deeplab(index, label_dirs, PARAMS, out, device="cpu")
    assert report["resumed_from"] == 2
    assert not (out.parent / "model.pt.ckpt").exists()

    a = torch.load(reference, weights_only=False)
    b = torch.load(out, weights_only=False)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert b["class_names"] == list(VOC_CLASSES)
    assert b["mean"] == list(IMAGENET_MEAN) and b["std"] == list(IMAGENET_STD)
    assert b["backbone"] == "resnet18"

    lrs = [r["lr"] for r in map(json.loads, log_ref.read_text().splitlines()) if "lr" in r]
    assert lrs[0] == pytest.approx(0.007)
    assert lrs[3] == pytest.approx(0.007 * 0.5 ** 0.9)
    assert lrs[-1] == pytest.approx(0.007 * (1 / 6) ** 0.9)
    model, payload = load_deeplab(out)
    assert not model.training and payload["training"]["iterations"] == 6


def test_cli_checks_weights_flag(tiny_data, tmp_path):
    root, _, label_dirs = tiny_data
    params = dict(PARAMS, imagenet_weights=True)
    with pytest.raises(ValueError, match="--weights"):
        pcam_main(["train-deeplab", "--index", str(root / "index.json"), "--label-dirs",
                   *map(str, label_dirs), "--params", json.dumps(params), "--out",
                   str(tmp_path / "m.pt"), "--device", "cpu"])


def test_side_checkpoint_of_other_labels_is_not_resumed(tiny_data, tmp_path):
    root, index, shared_dirs = tiny_data
    label_dirs = [shutil.copytree(d, tmp_path / "labels" / d.name) for d in shared_dirs]
    out = tmp_path / "model.pt"

    def kill(step):
        if step == 2:
            raise KeyboardInterrupt

    params = dict(PARAMS, iterations=3)
    with pytest.raises(KeyboardInterrupt):
        train_deeplab(index, label_dirs, params, out, device="cpu", on_step=kill)
    assert (tmp_path / "model.pt.ckpt").exists()
    # Same settings but one label regenerated upstream: start over, do not resume.
    label = next(label_dirs[0].glob("*.png"))
    write_label_png(label, np.zeros(Image.open(label).size[::-1], np.uint8))
    assert train_deeplab(index, label_dirs, params, out, device="cpu")["resumed_from"] == 0


def test_a_batch_without_a_labelled_pixel_teaches_nothing_and_stops_nothing(tiny_data, tmp_path):
    """Sparse labels (point blots) can give crops with no labelled pixel: cross-entropy's mean
    over no pixel is NaN, which would stop the training; such a batch gives loss 0 instead."""
    root, index, _ = tiny_data
    unlabelled = tmp_path / "unlabelled"
    for record in index.training_records():
        write_label_png(unlabelled / f"{record.id}.png", np.full((record.height, record.width), 255, np.uint8))
    out = tmp_path / "model.pt"
    train_deeplab(index, [unlabelled], {**PARAMS, "iterations": 2}, out, device="cpu", log_jsonl=tmp_path / "log.jsonl")
    losses = [json.loads(line).get("loss") for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert out.exists() and all(loss in (None, 0.0) for loss in losses)
