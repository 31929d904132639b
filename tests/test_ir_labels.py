"""IR-label mining: the §3.4 combination table, thresholds, the CRF, and the shard command."""

import argparse

import numpy as np
import pytest

from irn_fixtures import make_data
from pcam_core.irn import ir_labels
from pcam_core.common.label_png import read_label_png

PARAMS = {"fg_threshold": 0.30, "bg_threshold": 0.05, "crf": True, "crf_iterations": 10}


def test_combination_table():
    # fg says class / bg / bg / bg ; bg says anything / bg / class / class
    fg = np.array([[3, 0, 0, 12], [0, 0, 8, 0]])
    bg = np.array([[0, 0, 12, 12], [3, 0, 8, 15]])
    expected = np.array([[3, 0, 255, 12], [255, 0, 8, 255]], np.uint8)
    out = ir_labels.combine(fg, bg)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_threshold_argmax_ties_go_to_background():
    maps = np.array([[[0.3, 0.5, 0.1]], [[0.2, 0.6, 0.3]]], np.float32)  # K=2, 1x3
    np.testing.assert_array_equal(ir_labels.threshold_argmax(maps, 0.3), [[0, 2, 0]])
    np.testing.assert_array_equal(ir_labels.threshold_argmax(maps, 0.05), [[1, 2, 2]])


def test_crf_removes_a_speck_against_the_image():
    rgb = np.zeros((24, 24, 3), np.uint8)
    rgb[:, 12:] = 200  # two flat colour regions
    labels = np.zeros((24, 24), np.int64)
    labels[:, 12:] = 1
    labels[5, 3] = 1  # a speck that contradicts the image
    out = ir_labels.crf_refine(rgb, labels, 2, 10)
    assert out[5, 3] == 0
    assert (out[:, :12] == 0).all() and (out[:, 12:] == 1).all()


@pytest.mark.parametrize("crf,threads", [(True, 1), (False, 1), (False, 2)])
def test_mine_shard(tmp_path, crf, threads):
    data = make_data(tmp_path)
    out_dir = tmp_path / "ir"
    counts = ir_labels.mine_shard(data["index"], data["shard"], data["cams"],
                                  {**PARAMS, "crf": crf}, out_dir, threads)
    # img_2 has no classes
    assert counts == {"shard_train_aug": 4, "written": 3, "not_in_store": 0, "no_classes": 1}
    assert sorted(p.name for p in out_dir.iterdir()) == ["img_0.png", "img_1.png", "img_3.png"]
    for record in (data["records"][i] for i in (0, 1, 3)):
        label = read_label_png(out_dir / f"{record.id}.png")
        assert label.shape == (record.height, record.width)
        values = set(np.unique(label).tolist())
        assert values <= set(range(21)) | {255}
        assert values - {0, 255} <= set(record.classes)
        assert {0, 255} <= values and values - {0, 255}  # confident bg, unsure and fg all occur


def test_cli_main(tmp_path, capsys):
    data = make_data(tmp_path)
    args = argparse.Namespace(index=str(data["index"]), shard=str(data["shard"]), cams=str(data["cams"]),
                              params=PARAMS, out_dir=str(tmp_path / "ir"), threads=1, calibration=None)
    assert ir_labels.main(args) == 0
    assert "0 not in the CAM store, 1 with no classes" in capsys.readouterr().out


def test_cli_takes_the_thresholds_from_the_calibration(tmp_path, capsys):
    import json

    data = make_data(tmp_path)
    calibration = tmp_path / "ir_labels.json"
    calibration.write_text(json.dumps({"format": "pcam-calibration/1", "ir_fg_threshold": 0.6,
                                       "ir_bg_threshold": 0.2}))
    crf_only = {k: v for k, v in PARAMS.items() if k not in ("fg_threshold", "bg_threshold")}
    args = argparse.Namespace(index=str(data["index"]), shard=str(data["shard"]), cams=str(data["cams"]),
                              params=crf_only, out_dir=str(tmp_path / "ir"), threads=1,
                              calibration=str(calibration))
    assert ir_labels.main(args) == 0
    assert "foreground threshold 0.6, background 0.2" in capsys.readouterr().err
    expected = tmp_path / "expected"
    ir_labels.mine_shard(data["index"], data["shard"], data["cams"],
                         {**crf_only, "fg_threshold": 0.6, "bg_threshold": 0.2}, expected)
    for png in expected.glob("*.png"):
        assert png.read_bytes() == (tmp_path / "ir" / png.name).read_bytes()
    with pytest.raises(SystemExit, match="give --calibration"):
        ir_labels.main(argparse.Namespace(**{**vars(args), "calibration": None}))
