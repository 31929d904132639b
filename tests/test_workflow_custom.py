"""The whole DAG on the custom example (16-bit TIFF tiles, nested ids, the users' click formats):
once with masks for the val images (mIoU in the summary) and once without any mask (every
stage still runs, predictions are written, the summary says why there is no mIoU)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcam_core.data.example_dataset import make_example
from test_workflow import TINY_CONFIG, planned_jobs, snakemake, write_config

EXAMPLE = {"seed": 1, "num_train": 24, "num_val": 8, "min_size": 64, "max_size": 80}
CLASSES = ["nucleus", "mitotic_cell", "debris"]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells") / "example"
    make_example(EXAMPLE, root)
    return root


def custom_config(root: Path, **dataset) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["run_name"] = "cells"
    config["dataset"] = {"name": "custom", "images": str(root / "images"), "classes": CLASSES,
                         "clicks": str(root / "clicks" / "annotations.xml"),
                         "masks": str(root / "masks"), "val": str(root / "val.txt"), **dataset}
    return config


def test_custom_dataset_needs_its_keys(tmp_path, example):
    config = custom_config(example)
    del config["dataset"]["classes"]
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0 and "dataset.classes" in result.stdout + result.stderr


def test_predict_target_plans_one_job_per_shard_and_variant(tmp_path, example):
    config = custom_config(example)
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n", "predict"))
    assert jobs["predict_images"] == config["shards"] * len(config["variants"]) and "summary" not in jobs
    assert "predict_images" not in planned_jobs(snakemake(tmp_path, "-n"))  # predict.images ""


@pytest.mark.workflow
def test_custom_dag_with_masks_scores_val(tmp_path, example):
    write_config(tmp_path, custom_config(example))
    snakemake(tmp_path)
    results = tmp_path / "results" / "cells"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["num_classes"] == 4 and summary["unscored_splits"] == ["train"]
    for variant in ("cam", "pcam"):
        for stage in ("cam", "refined", "final"):
            assert 0.0 <= summary["miou"][variant][stage]["val"] <= 1.0, (variant, stage)
    metrics = json.loads((results / "pcam" / "deeplab" / "metrics_val.json").read_text())
    assert list(metrics["iou"]) == ["background", *CLASSES]
    report = json.loads((results / "data" / "data_report.json").read_text())
    assert report["clicks"]["valid_clicks"] > 0 and report["clicks"]["unknown_class"] == 1
    # nested ids give nested outputs, in the dataset's own colours
    predictions = sorted((results / "pcam" / "deeplab" / "predictions").rglob("*.png"))
    assert len(predictions) == EXAMPLE["num_val"]
    assert all(p.parent.name in ("plate1", "plate2") for p in predictions)
    with Image.open(predictions[0]) as label:
        assert label.mode == "P" and set(np.unique(np.asarray(label))) <= {0, 1, 2, 3}
    assert planned_jobs(snakemake(tmp_path, "-n")) == {}


@pytest.mark.workflow
def test_custom_dag_without_masks_predicts_and_explains(tmp_path, example):
    config = custom_config(example, masks="", val="", val_fraction=0.25,
                           clicks=str(example / "clicks" / "napari"))
    config["predict"] = {"images": "all"}
    write_config(tmp_path, config)
    snakemake(tmp_path)
    results = tmp_path / "results" / "cells"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["unscored_splits"] == ["train", "val"]
    assert all(v is None for stages in summary["miou"].values() for s in stages.values() for v in s.values())
    text = (results / "summary.md").read_text()
    assert "mIoU needs ground-truth masks" in text
    # calibration: auto without any masked train image falls back, and the summary says so
    for variant in ("cam", "pcam"):
        entry = summary["calibration"][variant]
        assert {entry[f"{s}_source"] for s in ("cam_threshold", "ir_labels", "walk")} == {"fallback"}
        assert entry["ir_fg_threshold"] == 0.3 and entry["walk_bg_threshold"] == 0.3
    assert "no train image has a ground-truth mask, so the configured thresholds are used" in text
    index = json.loads((results / "data" / "index.json").read_text())
    assert index["report"]["clicks"]["format"] == "napari"
    for variant in ("cam", "pcam"):
        assert (results / variant / "deeplab" / "model.pt").is_file()
        assert list((results / variant / "pseudo").rglob("*.png"))
        predicted = {p.relative_to(p.parents[1]).with_suffix("").as_posix()
                     for p in (results / variant / "deeplab" / "predict").rglob("*.png")}
        assert predicted == set(index["images"])  # every image, nested ids kept
