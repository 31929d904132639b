"""pcam qualitative-grid on a tiny hand-made run: the sample, the cells, missing maps, fallbacks, the PNG."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from cam_tiny_data import make_tiny_index
from pcam_core.calibration.calibration_file import CALIBRATION_FORMAT
from pcam_core.evaluation.cam_scores import threshold_labels
from pcam_core.cam.store import CamStore, CamStoreWriter
from pcam_core.common.dataset_index import DatasetIndex, hash_ordered
from pcam_core.common.label_colouring import VOID_COLOUR, colour_labels
from pcam_core.common.label_png import read_label_png, write_label_png
from pcam_core.report.qualitative_grid import (MISSING, NO_MASK, CamColumn, LabelColumn, build_grid, cam_column,
                                        sample_records)

NUM_TRAIN, NUM_VAL = 4, 5
H, W = 40, 52  # make_tiny_index's image size


@pytest.fixture()
def run(tmp_path):
    """Index, two CAM shard stores, a calibration JSON and two shard folders of label PNGs."""
    index_path = make_tiny_index(tmp_path / "data", num_train=NUM_TRAIN, num_val=NUM_VAL)
    index = DatasetIndex.load(index_path)
    rng = np.random.default_rng(0)
    ids = list(index.records)
    shards = [ids[0::2], ids[1::2]]
    stores = []
    for k, shard in enumerate(shards):
        stores.append(tmp_path / f"cam-{k}.h5")
        with CamStoreWriter(stores[-1]) as writer:
            for image_id in shard:
                keys = index[image_id].export_classes()
                high_res = rng.random((len(keys), H, W)).astype(np.float32)
                writer.add(image_id, keys, high_res[:, ::4, ::4], high_res)
    calibration = tmp_path / "cam_threshold.json"
    calibration.write_text(json.dumps({"format": CALIBRATION_FORMAT, "cam_eval_threshold": 0.45}))
    folders = [tmp_path / "deeplab" / f"{k}-of-2" for k in (1, 2)]
    for k, shard in enumerate(shards):
        for image_id in shard:
            write_label_png(folders[k] / f"{image_id}.png", rng.integers(0, 3, (H, W)).astype(np.uint8),
                            index.classes.palette())
    return {"index_path": index_path, "index": index, "stores": stores, "calibration": calibration,
            "folders": folders}


def _columns(run):
    cam = cam_column(["CAM", str(run["calibration"]), *map(str, run["stores"])])
    return [cam], [LabelColumn("DeepLab", tuple(run["folders"]))]


def test_sample_is_stable_and_independent_of_input_order(run):
    index = run["index"]
    sample = sample_records(index, "val", 3)
    assert sample.split == "val" and not sample.note
    val = index.split("val")
    assert [r.id for r in sample.records] == [r.id for r in hash_ordered(val)][:3]
    # the same index listed in reverse order gives the same sample
    reversed_index = DatasetIndex(list(index.records.values())[::-1],
                                  {name: ids[::-1] for name, ids in index.splits.items()},
                                  index.dataset, index.classes)
    assert [r.id for r in sample_records(reversed_index, "val", 3).records] == [r.id for r in sample.records]
    # shard stores and folders in another order give the same cells
    cams, labels = _columns(run)
    swapped_cams = [dataclasses.replace(cams[0], stores=cams[0].stores[::-1])]
    swapped_labels = [LabelColumn("DeepLab", labels[0].folders[::-1])]
    a = build_grid(index, sample, cams, labels)
    b = build_grid(reversed_index, sample_records(reversed_index, "val", 3), swapped_cams, swapped_labels)
    assert a.ids == b.ids
    for row_a, row_b in zip(a.rows, b.rows):
        for cell_a, cell_b in zip(row_a, row_b):
            assert (cell_a.rgb == cell_b.rgb).all()
    with pytest.raises(ValueError, match="at least 1"):
        sample_records(index, "val", 0)
    with pytest.raises(KeyError, match="unknown split"):
        sample_records(index, "test", 3)


def test_cells_are_the_evaluations_label_maps_coloured(run):
    index = run["index"]
    cams, labels = _columns(run)
    assert cams[0].threshold == 0.45  # read from the calibration JSON
    sample = sample_records(index, "val", NUM_VAL)
    grid = build_grid(index, sample, cams, labels)
    assert grid.columns == ["image", "clicks", "CAM", "DeepLab", "ground truth"]
    assert "val" in grid.title and grid.missing == {"CAM": 0, "DeepLab": 0, "ground truth": 0}
    preds = {p.stem: p for folder in run["folders"] for p in folder.glob("*.png")}
    with CamStore(run["stores"]) as store:
        for image_id, (image, clicks, cam, deeplab, gt) in zip(grid.ids, grid.rows):
            record = index[image_id]
            assert (image.rgb == index.read_image(record)).all() and not image.points
            expected = threshold_labels(store[image_id], 0.45)
            assert (cam.label == expected).all()
            assert (cam.rgb == colour_labels(expected, index.classes)).all()
            assert (deeplab.label == read_label_png(preds[image_id])).all()
            assert (gt.label == record.load_gt_mask()).all()
            assert (gt.rgb[gt.label == 255] == VOID_COLOUR).all()
            assert [(x, y) for x, y, _ in clicks.points] == [(c.x, c.y) for c in record.clicks]
            assert [colour for _, _, colour in clicks.points] == [index.classes.colours[c.cls]
                                                                  for c in record.clicks]
    names = [name for name, _ in grid.legend]
    assert names == ["background", "aeroplane", "bicycle", "void"]  # present ids, in id order


def test_missing_maps_give_missing_cells(run):
    index = run["index"]
    cams, labels = _columns(run)
    sample = sample_records(index, "val", 2)
    first, second = (r.id for r in sample.records)
    for folder in run["folders"]:
        (folder / f"{first}.png").unlink(missing_ok=True)
    # the CAM column gets only the store that lacks the second image
    only = [s for s in run["stores"] if first in CamStore(s)]
    grid = build_grid(index, sample, [dataclasses.replace(cams[0], stores=tuple(only))], labels)
    assert grid.rows[0][3].text == MISSING and grid.rows[0][3].rgb is None
    assert grid.rows[0][2].text is None and grid.rows[1][3].text is None
    assert grid.rows[1][2].text == MISSING
    assert grid.missing["DeepLab"] == 1 and grid.missing["CAM"] == 1


def _strip_masks(index: DatasetIndex, splits: tuple[str, ...]) -> DatasetIndex:
    records = [dataclasses.replace(r, gt_png=None, gt_mat=None) if set(r.splits) & set(splits) else r
               for r in index.records.values()]
    return DatasetIndex(records, index.splits, index.dataset, index.classes)


def test_without_val_masks_falls_back_to_train_then_to_no_masks(run):
    no_val = _strip_masks(run["index"], ("val",))
    sample = sample_records(no_val, "val", 3)
    assert sample.split == "train" and "val has no image with a ground-truth mask" in sample.note
    assert [r.id for r in sample.records] == [r.id for r in hash_ordered(no_val.split("train"))][:3]
    grid = build_grid(no_val, sample)
    assert "3 train images" in grid.title and "val has no" in grid.title
    none = _strip_masks(run["index"], ("val", "train"))
    sample = sample_records(none, "val", 3)
    assert sample.split == "val" and "no image has a ground-truth mask" in sample.note
    grid = build_grid(none, sample)
    assert [row[-1].text for row in grid.rows] == [NO_MASK] * 3
    assert grid.missing["ground truth"] == 0


def test_cli_writes_a_png(run, tmp_path, monkeypatch, capsys):
    from pcam_core import cli

    monkeypatch.setitem(cli.COMMANDS, "qualitative-grid", ("pcam_core.report.qualitative_grid", "qualitative grid"))
    out = tmp_path / "figs" / "grid.png"
    (run["folders"][0] / sorted(p.name for p in run["folders"][0].glob("*.png"))[0]).unlink()
    argv = ["qualitative-grid", "--index", str(run["index_path"]), "--count", "5",
            "--cam", "CAM", str(run["calibration"]), *map(str, run["stores"]),
            "--cam", "PCAM", "0.3", *map(str, run["stores"]),
            "--labels", "DeepLab", *map(str, run["folders"]), "--out", str(out)]
    assert cli.main(argv) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 500 and image.height > 300
    assert not [p for p in out.parent.iterdir() if p.name != "grid.png"]  # no temp file left
    printed = capsys.readouterr().out
    assert "5 val images x 6 columns" in printed and "missing maps:" in printed
    with pytest.raises(SystemExit, match="NAME first"):
        cli.main(["qualitative-grid", "--index", str(run["index_path"]), "--cam", str(run["calibration"]),
                  *map(str, run["stores"]), "--out", str(out)])
