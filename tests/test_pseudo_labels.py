"""Random-walk store + pseudo-label PNGs: label values, sizes, counts, and the split into a
costly walk and a cheap threshold step that gives the labels of the former one-step code."""

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from irn_fixtures import make_data
from pcam_core.irn import pseudo_label_pngs
from pcam_core.irn import pseudo_labels
from pcam_core.irn import random_walk
from pcam_core.cam.store import CamStore
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.irn.net import IRNetBoundary, infer_boundary, load_irnet, save_irnet
from pcam_core.common.label_png import read_label_png
from pcam_core.irn.walk_store import WalkStore

PARAMS = {"beta": 12, "exp_times": 3, "radius": 5}
BG = 0.30


@pytest.fixture()
def irn(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "irn.pt"
    torch.save(save_irnet(IRNetBoundary("resnet18"), {"backbone": "resnet18"}), path)
    return path


def _labels_cli(data, out_dir, *threshold):
    """Run ``pcam pseudo-labels`` through its own argument parser."""
    parser = argparse.ArgumentParser()
    pseudo_label_pngs.add_arguments(parser)
    return pseudo_label_pngs.main(parser.parse_args(
        ["--index", str(data["index"]), "--shard", str(data["shard"]), "--walk", str(data["walk"]),
         *threshold, "--out-dir", str(out_dir)]))


def _one_step_labels(data, irn, bg_threshold):
    """The labels of the one-step ``random_walk_shard`` before the walk store: boundary per
    image, one walk batch (sorted by size, no-class images out), ``labels_from_propagated``
    on the batch's slices."""
    index = DatasetIndex.load(data["index"])
    model = load_irnet(irn)
    with CamStore(data["cams"]) as store:
        todo = sorted((i for i in store.ids() if len(store[i].keys)),
                      key=lambda i: (index[i].height, index[i].width))
        items = [(i, store[i].cam, store[i].keys, infer_boundary(model, index.read_image(index[i]), "cpu"))
                 for i in todo]
    cams, boundaries = pseudo_labels.pad_for_batch([it[1] for it in items], [it[3] for it in items])
    propagated = random_walk.propagate_batch(cams, boundaries, beta=float(PARAMS["beta"]),
                                             exp_times=PARAMS["exp_times"], radius=PARAMS["radius"])
    labels = {}
    for j, (image_id, cam, keys, _) in enumerate(items):
        k, h, w = cam.shape
        labels[image_id] = random_walk.labels_from_propagated(
            propagated[j, :k, :h, :w], keys, index[image_id].height, index[image_id].width, bg_threshold)
    return labels


def test_random_walk_shard_and_pseudo_labels(tmp_path, irn, capsys):
    # sizes include odd ones and one whose stride-4 grid is narrower than the path radius
    data = make_data(tmp_path, sizes=((37, 53), (130, 70), (48, 48), (64, 40), (9, 13)),
                     classes=((8,), (3, 12), (), (12,), (3,)), split="val")
    data["walk"] = tmp_path / "walk.h5"
    counts = pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn,
                                             {**PARAMS, "bg_threshold": 0.9}, data["walk"],
                                             device="cpu", threads=1)
    assert counts == {"shard": 5, "stored": 5, "not_in_store": 0, "no_classes": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with WalkStore(data["walk"]) as store:
        assert sorted(store.ids()) == ["img_0", "img_1", "img_2", "img_3", "img_4"]
        for record in data["records"]:
            walk = store[record.id]
            grid = ((record.height + 3) // 4, (record.width + 3) // 4)
            assert walk.keys.tolist() == list(record.classes)
            assert walk.propagated.shape == (len(record.classes), *grid) and walk.boundary.shape == grid
            assert (walk.height, walk.width) == (record.height, record.width)
            assert ((walk.boundary >= 0) & (walk.boundary <= 1)).all()

    out_dir = tmp_path / "pseudo"
    assert _labels_cli(data, out_dir, "--bg-threshold", str(BG)) == 0
    assert ("5 pseudo labels written" in capsys.readouterr().out)
    written = sorted(p.name for p in out_dir.iterdir())
    assert written == ["img_0.png", "img_1.png", "img_2.png", "img_3.png", "img_4.png"]
    for record in data["records"]:
        label = read_label_png(out_dir / f"{record.id}.png")
        assert label.shape == (record.height, record.width)
        values = set(np.unique(label).tolist())
        assert values <= {0} | set(record.classes)
        if record.classes:
            assert values - {0}, f"{record.id}: no object pixel at all"
    assert set(np.unique(read_label_png(out_dir / "img_2.png")).tolist()) == {0}

    # the two steps give exactly the labels of the former one-step code
    expected = _one_step_labels(data, irn, BG)
    assert sorted(expected) == ["img_0", "img_1", "img_3", "img_4"]
    for image_id, label in expected.items():
        np.testing.assert_array_equal(read_label_png(out_dir / f"{image_id}.png"), label)


def test_threshold_change_needs_no_walk(tmp_path, irn, monkeypatch):
    """A new threshold relabels from the store alone: no IRNet, no CAMs, no images, no walk."""
    data = make_data(tmp_path, sizes=((37, 53), (64, 40)), classes=((8,), (3, 12)), not_stored=())
    data["walk"] = tmp_path / "walk.h5"
    pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                    data["walk"], device="cpu", threads=1)
    data["cams"].unlink()
    irn.unlink()
    shutil.rmtree(tmp_path / "img")

    def no_walk(*args, **kwargs):
        raise AssertionError("the threshold step ran a walk")

    monkeypatch.setattr(random_walk, "propagate_batch", no_walk)
    monkeypatch.setattr(pseudo_labels, "infer_boundary", no_walk)
    labels = {}
    for threshold in (0.05, 0.6):
        _labels_cli(data, tmp_path / str(threshold), "--bg-threshold", str(threshold))
        labels[threshold] = {i: read_label_png(tmp_path / str(threshold) / f"{i}.png") for i in ("img_0", "img_1")}
    for image_id in ("img_0", "img_1"):
        low, high = labels[0.05][image_id], labels[0.6][image_id]
        assert (low > 0).sum() > (high > 0).sum() > 0  # a higher threshold: more background
        assert ((high == 0) | (high == low)).all()  # only object pixels turn background


def test_calibration_file(tmp_path, irn, capsys):
    data = make_data(tmp_path, sizes=((37, 53),), classes=((8,),), not_stored=())
    data["walk"] = tmp_path / "walk.h5"
    pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                    data["walk"], device="cpu", threads=1)
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"format": "pcam-calibration/1", "walk_bg_threshold": 0.45, "other": 1}))
    _labels_cli(data, tmp_path / "calibrated", "--calibration", str(calibration))
    assert "threshold 0.45 (from " in capsys.readouterr().out
    _labels_cli(data, tmp_path / "given", "--bg-threshold", "0.45")
    np.testing.assert_array_equal(read_label_png(tmp_path / "calibrated" / "img_0.png"),
                                  read_label_png(tmp_path / "given" / "img_0.png"))

    calibration.write_text(json.dumps({"format": "pcam-calibration/1", "bg_threshold": 0.45}))
    with pytest.raises(ValueError, match=r"calibration.json: not a pcam calibration file holding 'walk_bg_threshold'"):
        _labels_cli(data, tmp_path / "bad", "--calibration", str(calibration))
    calibration.write_text(json.dumps({"format": "pcam-calibration/1", "walk_bg_threshold": "high"}))
    with pytest.raises(ValueError, match=r"calibration.json: walk_bg_threshold must be .* in \[0, 1\], got 'high'"):
        _labels_cli(data, tmp_path / "bad", "--calibration", str(calibration))
    with pytest.raises(ValueError, match=r"--bg-threshold: .* got 1.5"):
        _labels_cli(data, tmp_path / "bad", "--bg-threshold", "1.5")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):  # one threshold source, exactly
        _labels_cli(data, tmp_path / "bad", "--bg-threshold", "0.3", "--calibration", str(calibration))


def test_walk_from_another_index_is_refused(tmp_path, irn):
    data = make_data(tmp_path, sizes=((37, 53),), classes=((8,),), not_stored=())
    data["walk"] = tmp_path / "walk.h5"
    pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                    data["walk"], device="cpu", threads=1)
    index = json.loads(data["index"].read_text())
    index["images"]["img_0"]["height"] = 40
    data["index"].write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"walk.h5: image 'img_0' was walked at 37x53 but is 40x53"):
        _labels_cli(data, tmp_path / "p", "--bg-threshold", "0.3")


def test_pseudo_label_follows_the_cams(irn):
    """With no boundary evidence the walk only smooths: the labelled class sits on its CAM."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cam = np.zeros((2, 10, 15), np.float32)
    cam[0, 2:8, 1:6] = 1.0
    cam[1, 2:8, 9:14] = 1.0
    label = pseudo_labels.pseudo_label(load_irnet(irn), rgb, cam, np.array([3, 12]), PARAMS, BG,
                                       torch.device("cpu"))
    assert label.shape == (40, 60)
    assert label[20, 12] == 3 and label[20, 46] == 12 and label[1, 30] == 0


def test_cli_main(tmp_path, irn, capsys):
    data = make_data(tmp_path)
    args = argparse.Namespace(index=str(data["index"]), shard=str(data["shard"]), cams=str(data["cams"]),
                              irn=str(irn), params=PARAMS, out=str(tmp_path / "walk.h5"), device="cpu",
                              threads=1)
    assert pseudo_labels.main(args) == 0
    assert "4 walks stored in" in capsys.readouterr().out


def test_batched_walk_equals_one_image_at_a_time():
    """Padding boundaries with 1.0 (and CAMs with 0) isolates the padding exactly."""
    rng = np.random.default_rng(3)
    items = []
    for (h, w), keys in (((7, 11), [3]), ((12, 9), [8, 15]), ((5, 5), [])):
        cam = rng.random((len(keys), h, w)).astype(np.float32)
        boundary = (rng.random((h, w)) ** 3).astype(np.float32)
        items.append(((4 * h - 1, 4 * w - 2), cam, np.array(keys, np.int64), boundary))
    walked = [it for it in items if len(it[2])]
    cams, boundaries = pseudo_labels.pad_for_batch([it[1] for it in walked], [it[3] for it in walked])
    together = random_walk.propagate_batch(cams, boundaries, PARAMS["beta"], PARAMS["exp_times"], PARAMS["radius"])
    maps = pseudo_labels.walk_batch([it[1] for it in items], [it[3] for it in items], PARAMS, torch.device("cpu"))
    batched = pseudo_labels.pseudo_labels_batch(items, PARAMS, BG, torch.device("cpu"))
    for (size, cam, keys, boundary), label, walk in zip(items, batched, maps):
        assert label.shape == size and walk.dtype == np.float32 and walk.shape == cam.shape
        if not len(keys):
            assert not label.any()
            continue
        alone = random_walk.propagate(torch.from_numpy(cam), torch.from_numpy(boundary), PARAMS["beta"],
                                      PARAMS["exp_times"], PARAMS["radius"])
        j = [id(it[1]) for it in walked].index(id(cam))
        k, h, w = cam.shape
        torch.testing.assert_close(together[j, :k, :h, :w], alone, rtol=1e-6, atol=1e-7)
        assert not together[j, :, h:].any() and not together[j, :, :, w:].any() and not together[j, k:].any()
        assert walk.tobytes() == together[j, :k, :h, :w].numpy().tobytes()
        expected = random_walk.labels_from_propagated(alone, keys, *size, BG)
        np.testing.assert_array_equal(label, expected)


@pytest.mark.parametrize("split, labelled", [("val", True), ("train_aug", False)])
def test_only_a_known_empty_image_gets_a_background_label(tmp_path, irn, split, labelled, capsys):
    """An image without classes is left out of the CAM store, hence of the walk store. A scored
    (val/train) image whose mask holds no object is an empty tile: background. A train_aug-only
    image without a click carries no label at all: no pseudo label, so DeepLab never learns its
    objects as background."""
    data = make_data(tmp_path, sizes=((37, 53), (30, 40)), classes=((8,), ()), split=split, not_stored=(1,))
    data["walk"] = tmp_path / "walk.h5"
    counts = pseudo_labels.random_walk_shard(data["index"], data["shard"], data["cams"], irn, PARAMS,
                                             data["walk"], device="cpu", threads=1)
    assert counts == {"shard": 2, "stored": 1, "not_in_store": 1, "no_classes": 0}
    out_dir = tmp_path / "pseudo"
    counts = pseudo_label_pngs.write_pseudo_labels(data["index"], data["shard"], data["walk"], BG, out_dir)
    assert counts == {"shard": 2, "written": 1 + labelled, "from_walk": 1, "known_empty": int(labelled),
                      "skipped": int(not labelled)}
    assert (out_dir / "img_1.png").exists() == labelled
    if labelled:
        assert set(np.unique(read_label_png(out_dir / "img_1.png")).tolist()) == {0}
        assert read_label_png(out_dir / "img_1.png").shape == (30, 40)
