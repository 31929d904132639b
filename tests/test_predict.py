"""pcam predict on a random-weight checkpoint: sizes, palette PNGs, overlays, bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from pcam_core.cli import main as pcam_main
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.deeplab.model import DeepLabV3Plus, checkpoint_payload
from pcam_core.common.image_io import ImageReading
from pcam_core.deeplab.predict import group_by_size
from pcam_core.data.voc_reader import voc_class_list


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(checkpoint_payload(DeepLabV3Plus("resnet18", num_classes=21), voc_class_list(),
                                  ImageReading()), path)
    return path


def _images(folder, sizes):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (h, w), ext in sizes:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.{ext}")


def test_folder_of_mixed_sizes(checkpoint, tmp_path):
    folder = tmp_path / "in"
    _images(folder, [("a", (37, 50), "jpg"), ("b", (64, 21), "png"), ("c", (37, 50), "bmp")])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    pcam_main(["predict", "--checkpoint", str(checkpoint), str(folder), "--out-dir", str(out),
               "--overlay", "--batch-size", "4", "--device", "cpu", "--workers", "0"])
    for name, size in (("a", (50, 37)), ("b", (21, 64)), ("c", (50, 37))):
        with Image.open(out / f"{name}.png") as label:
            assert label.mode == "P" and label.size == size
            assert np.asarray(label).max() <= 20
        with Image.open(out / f"{name}_overlay.jpg") as overlay:
            assert overlay.mode == "RGB" and overlay.size == size
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == ["a.png", "b.png", "c.png"]


def test_batching_does_not_change_predictions(checkpoint, tmp_path):
    folder = tmp_path / "in"
    _images(folder, [("a", (40, 40), "png"), ("b", (40, 40), "png")])
    for batch in ("1", "2"):
        pcam_main(["predict", "--checkpoint", str(checkpoint), str(folder), "--out-dir",
                   str(tmp_path / batch), "--batch-size", batch, "--device", "cpu", "--workers", "0"])
    for name in ("a", "b"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "1" / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / "2" / f"{name}.png")))
    assert group_by_size({"x": (2, 3), "y": (2, 3), "z": (3, 2)}, 4) == [["x", "y"], ["z"]]


def test_unreadable_file_is_named_or_skipped(checkpoint, tmp_path, capsys):
    folder = tmp_path / "in"
    _images(folder, [("good", (30, 30), "jpg")])
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    args = ["predict", "--checkpoint", str(checkpoint), str(folder), "--device", "cpu",
            "--workers", "0"]
    with pytest.raises(ValueError, match="broken.jpg"):
        pcam_main(args + ["--out-dir", str(tmp_path / "strict")])
    pcam_main(args + ["--out-dir", str(tmp_path / "lenient"), "--skip-unreadable"])
    assert (tmp_path / "lenient" / "good.png").exists()
    assert "broken.jpg" in capsys.readouterr().out


def test_pipeline_mode_predicts_the_shard_split(checkpoint, tmp_path):
    _images(tmp_path / "img", [("v1", (33, 45), "jpg"), ("t1", (20, 20), "jpg")])
    records = [ImageRecord(id=i, image=str(tmp_path / "img" / f"{i}.jpg"), height=h, width=w,
                           splits=(s,), classes=(), gt_classes=())
               for i, h, w, s in (("v1", 33, 45, "val"), ("t1", 20, 20, "train_aug"))]
    DatasetIndex(records, {"val": ["v1"], "train_aug": ["t1"]}, "demo", voc_class_list()).save(
        tmp_path / "index.json")
    (tmp_path / "shard.txt").write_text("t1\nv1\n")
    out = tmp_path / "pred" / "0-of-1"
    pcam_main(["predict", "--checkpoint", str(checkpoint), "--index", str(tmp_path / "index.json"),
               "--shard", str(tmp_path / "shard.txt"), "--split", "val", "--out-dir", str(out),
               "--device", "cpu"])
    assert [p.name for p in out.iterdir()] == ["v1.png"]
    assert Image.open(out / "v1.png").size == (45, 33)
    assert [p.name for p in out.parent.iterdir()] == ["0-of-1"]  # no temp folder left behind

    # the predict target: every image of the shard, or only the listed ids
    base = ["predict", "--checkpoint", str(checkpoint), "--index", str(tmp_path / "index.json"),
            "--shard", str(tmp_path / "shard.txt"), "--split", "all", "--device", "cpu"]
    pcam_main(base + ["--out-dir", str(tmp_path / "all")])
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["t1.png", "v1.png"]
    (tmp_path / "ids.txt").write_text("# the one I care about\nt1\n")
    pcam_main(base + ["--ids", str(tmp_path / "ids.txt"), "--out-dir", str(tmp_path / "listed")])
    assert [p.name for p in (tmp_path / "listed").iterdir()] == ["t1.png"]
    (tmp_path / "ids.txt").write_text("t1\nnot_there\n")
    with pytest.raises(ValueError, match=r"ids.txt:2: 'not_there' is not an image id"):
        pcam_main(base + ["--ids", str(tmp_path / "ids.txt"), "--out-dir", str(tmp_path / "bad")])


def test_predict_reads_16_bit_and_exif_images_upright(checkpoint, tmp_path):
    """A phone photo's EXIF orientation and a 16-bit TIFF: labels in the upright frame."""
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 wide x 24 high, shown rotated: 24 wide x 40 high
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(folder / "phone.jpg", exif=exif)
    Image.fromarray((np.arange(30 * 20).reshape(20, 30) * 100).astype(np.uint16)).save(folder / "cells.tif")
    pcam_main(["predict", "--checkpoint", str(checkpoint), str(folder), "--out-dir", str(tmp_path / "out"),
               "--device", "cpu", "--overlay"])
    assert Image.open(tmp_path / "out" / "phone.png").size == (24, 40)
    assert Image.open(tmp_path / "out" / "cells.png").size == (30, 20)
    assert Image.open(tmp_path / "out" / "cells_overlay.jpg").size == (30, 20)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"weights": 1}, bad)
    _images(tmp_path / "in", [("a", (8, 8), "png")])
    with pytest.raises(ValueError, match="not a pcam DeepLab checkpoint"):
        pcam_main(["predict", "--checkpoint", str(bad), str(tmp_path / "in"), "--out-dir",
                   str(tmp_path / "o"), "--device", "cpu"])


def test_restricted_label_decides_object_first_then_the_image_class():
    """Background where it holds >= half the probability; elsewhere the best allowed object
    class, even where an absent class or background is the plain argmax."""
    from pcam_core.deeplab.predict import restricted_label

    # channels: background, class 1, class 2; four pixels
    probs = torch.tensor([[[0.60, 0.40, 0.30, 0.50]],   # background
                          [[0.10, 0.25, 0.30, 0.20]],   # class 1
                          [[0.30, 0.35, 0.40, 0.30]]])  # class 2
    logits = probs.log()
    # pixel 1: background is the plain argmax (0.40) but objects hold 0.60 -> an object;
    # pixel 3: background exactly half -> background.
    np.testing.assert_array_equal(restricted_label(logits, [0, 1]), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(restricted_label(logits, [0, 2]), [[0, 2, 2, 0]])
    np.testing.assert_array_equal(restricted_label(logits, [0, 1, 2]), [[0, 2, 2, 0]])
    np.testing.assert_array_equal(restricted_label(logits, [0]), [[0, 0, 0, 0]])
    assert restricted_label(logits, [0, 1]).dtype == np.uint8


def test_true_classes_predictions(checkpoint, tmp_path):
    """Restricted predictions hold only 0 and each image's GT classes, equal the normal one
    wherever that is already allowed, and exist only for images whose classes are known."""
    _images(tmp_path / "img", [("v1", (33, 45), "jpg"), ("v2", (40, 40), "jpg"), ("t1", (20, 20), "jpg")])
    (tmp_path / "gt.png").write_bytes(b"")  # known_empty() only asks whether a mask exists
    rows = (("v1", 33, 45, "val", (1, 9), None),  # objects in the mask
            ("v2", 40, 40, "val", (), str(tmp_path / "gt.png")),  # an empty tile
            ("t1", 20, 20, "train_aug", (), None))  # no mask: classes unknown
    records = [ImageRecord(id=i, image=str(tmp_path / "img" / f"{i}.jpg"), height=h, width=w,
                           splits=(s,), classes=gt, gt_classes=gt, gt_png=png)
               for i, h, w, s, gt, png in rows]
    DatasetIndex(records, {"val": ["v1", "v2"], "train_aug": ["t1"]}, "demo", voc_class_list()).save(
        tmp_path / "index.json")
    (tmp_path / "shard.txt").write_text("t1\nv1\nv2\n")
    pcam_main(["predict", "--checkpoint", str(checkpoint), "--index", str(tmp_path / "index.json"),
               "--shard", str(tmp_path / "shard.txt"), "--split", "all", "--device", "cpu",
               "--out-dir", str(tmp_path / "pred"), "--true-classes-out-dir", str(tmp_path / "true")])
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["t1.png", "v1.png", "v2.png"]
    assert sorted(p.name for p in (tmp_path / "true").iterdir()) == ["v1.png", "v2.png"]
    normal = np.asarray(Image.open(tmp_path / "pred" / "v1.png"))
    restricted = np.asarray(Image.open(tmp_path / "true" / "v1.png"))
    assert Image.open(tmp_path / "true" / "v1.png").mode == "P" and restricted.shape == (33, 45)
    assert set(np.unique(restricted).tolist()) <= {0, 1, 9}
    allowed = np.isin(normal, [1, 9])  # an allowed object class wins the plain argmax
    assert allowed.any() and not np.isin(normal, [0, 1, 9]).all()  # the restriction has work
    np.testing.assert_array_equal(restricted[allowed], normal[allowed])
    assert not np.asarray(Image.open(tmp_path / "true" / "v2.png")).any()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_true_classes_need_the_index(checkpoint, tmp_path):
    _images(tmp_path / "in", [("a", (8, 8), "png")])
    with pytest.raises(SystemExit, match="--true-classes-out-dir needs --index"):
        pcam_main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "in"), "--out-dir",
                   str(tmp_path / "o"), "--true-classes-out-dir", str(tmp_path / "t"), "--device", "cpu"])
