"""Random-walk stage: label values, full-resolution size at any image size, skip counts."""

import argparse

import numpy as np
import pytest
import torch

from irn_fixtures import make_data
from pcam_core import pseudo_labels
from pcam_core.irnet import IRNetBoundary, save_irnet
from pcam_core.label_png import read_label_png

PARAMS = {"beta": 12, "exp_times": 3, "radius": 5, "bg_threshold": 0.30}


@pytest.fixture()
def irn(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "irn.pt"
    torch.save(save_irnet(IRNetBoundary("resnet18"), {"backbone": "resnet18"}), path)
    return path


def test_random_walk_shard(tmp_path, irn):
    # sizes include odd ones and one whose stride-4 grid is narrower than the path radius
    data = make_data(tmp_path, sizes=((37, 53), (130, 70), (48, 48), (64, 40), (9, 13)),
                     classes=((8,), (3, 12), (), (12,), (3,)), split="val")
    out_dir = tmp_path / "pseudo"
    counts = pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                             out_dir, device="cpu", threads=1)
    assert counts == {"shard": 5, "written": 4, "not_in_store": 1, "no_classes": 1}
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["img_0.png", "img_1.png", "img_2.png", "img_4.png"]
    for record in data["records"]:
        if record.id == "img_3":
            continue
        label = read_label_png(out_dir / f"{record.id}.png")
        assert label.shape == (record.height, record.width)
        values = set(np.unique(label).tolist())
        assert values <= {0} | set(record.classes)
        if record.classes:
            assert values - {0}, f"{record.id}: no object pixel at all"
    assert set(np.unique(read_label_png(out_dir / "img_2.png")).tolist()) == {0}


def test_pseudo_label_follows_the_cams(irn):
    """With no boundary evidence the walk only smooths: the labelled class sits on its CAM."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cam = np.zeros((2, 10, 15), np.float32)
    cam[0, 2:8, 1:6] = 1.0
    cam[1, 2:8, 9:14] = 1.0
    from pcam_core.irnet import load_irnet

    label = pseudo_labels.pseudo_label(load_irnet(irn), rgb, cam, np.array([3, 12]), PARAMS, torch.device("cpu"))
    assert label.shape == (40, 60)
    assert label[20, 12] == 3 and label[20, 46] == 12 and label[1, 30] == 0


def test_cli_main(tmp_path, irn, capsys):
    data = make_data(tmp_path)
    args = argparse.Namespace(index=str(data["index"]), shard=str(data["shard"]), cams=str(data["cams"]),
                              irn=str(irn), params=PARAMS, out_dir=str(tmp_path / "p"), device="cpu",
                              threads=1)
    assert pseudo_labels.main(args) == 0
    assert "3 pseudo labels written" in capsys.readouterr().out


def test_batched_walk_equals_one_image_at_a_time():
    """Padding boundaries with 1.0 (and CAMs with 0) isolates the padding exactly."""
    from pcam_core import random_walk

    rng = np.random.default_rng(3)
    items = []
    for (h, w), keys in (((7, 11), [3]), ((12, 9), [8, 15]), ((5, 5), [])):
        cam = rng.random((len(keys), h, w)).astype(np.float32)
        boundary = (rng.random((h, w)) ** 3).astype(np.float32)
        items.append(((4 * h - 1, 4 * w - 2), cam, np.array(keys, np.int64), boundary))
    walked = [it for it in items if len(it[2])]
    cams, boundaries = pseudo_labels.pad_for_batch([it[1] for it in walked], [it[3] for it in walked])
    together = random_walk.propagate_batch(cams, boundaries, PARAMS["beta"], PARAMS["exp_times"], PARAMS["radius"])
    batched = pseudo_labels.pseudo_labels_batch(items, PARAMS, torch.device("cpu"))
    for (size, cam, keys, boundary), label in zip(items, batched):
        assert label.shape == size
        if not len(keys):
            assert not label.any()
            continue
        alone = random_walk.propagate(torch.from_numpy(cam), torch.from_numpy(boundary), PARAMS["beta"],
                                      PARAMS["exp_times"], PARAMS["radius"])
        j = [id(it[1]) for it in walked].index(id(cam))
        k, h, w = cam.shape
        torch.testing.assert_close(together[j, :k, :h, :w], alone, rtol=1e-6, atol=1e-7)
        assert not together[j, :, h:].any() and not together[j, :, :, w:].any() and not together[j, k:].any()
        expected = random_walk.labels_from_propagated(alone, keys, *size, PARAMS["bg_threshold"])
        np.testing.assert_array_equal(label, expected)


@pytest.mark.parametrize("split, labelled", [("val", True), ("train_aug", False)])
def test_only_a_known_empty_image_gets_a_background_label(tmp_path, irn, split, labelled):
    """An image without classes is left out of the CAM store. A scored (val/train) image whose
    mask holds no object is an empty tile: background. A train_aug-only image without a click
    carries no label at all: no pseudo label, so DeepLab never learns its objects as background."""
    data = make_data(tmp_path, sizes=((37, 53), (30, 40)), classes=((8,), ()), split=split, not_stored=(1,))
    out_dir = tmp_path / "pseudo"
    counts = pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                             out_dir, device="cpu", threads=1)
    assert (out_dir / "img_1.png").exists() == labelled
    assert counts["not_in_store"] == (0 if labelled else 1) and counts["no_classes"] == int(labelled)
    if labelled:
        assert set(np.unique(read_label_png(out_dir / "img_1.png")).tolist()) == {0}
