"""pcam summary from hand-written metrics files: tables, checks, paper column, missing files."""

import json

import pytest

from pcam_core.cli import main as pcam_main
from pcam_core.evaluation.summary import build_summary, summary_markdown

MIOU = {("cam", "cam", "train"): 0.30, ("cam", "cam", "val"): 0.28,
        ("cam", "pseudo", "train"): 0.40, ("cam", "pseudo", "val"): 0.38,
        ("cam", "deeplab", "val"): 0.39,
        ("pcam", "cam", "train"): 0.45, ("pcam", "cam", "val"): 0.44,
        ("pcam", "pseudo", "train"): 0.62, ("pcam", "pseudo", "val"): 0.61,
        # pcam deeplab val left out: must show as missing
        }


def _write(results, skip=()):
    for (variant, stage, split), miou in MIOU.items():
        if (variant, stage, split) in skip:
            continue
        path = results / variant / stage / f"metrics_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"title": "t", "num_images": 3, "miou": miou,
                                    "iou": {"background": 0.9, "aeroplane": miou}}))


def _run(results, dataset):
    pcam_main(["summary", "--results-dir", str(results), "--variants", "cam", "pcam",
               "--dataset", dataset, "--out-md", str(results / "summary.md"),
               "--out-json", str(results / "summary.json")])
    return (results / "summary.md").read_text(), json.loads((results / "summary.json").read_text())


def test_demo_summary_tables_checks_and_missing(tmp_path):
    results = tmp_path / "demo"
    _write(results)
    md, report = _run(results, "demo")
    assert report["miou"]["pcam"]["refined"] == {"train": 0.62, "val": 0.61}
    assert report["miou"]["pcam"]["final"]["val"] is None
    assert report["paper"] is None and "paper" not in md.lower()
    assert "| PCAM (points) | 62.0 | 61.0 |" in md
    assert "| PCAM (points) | — |" in md  # Table 3 row of the missing file
    assert any("pcam/deeplab/metrics_val.json" in n for n in report["notes"])
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["CAM < PCAM (Table 1, val)"] == "pass"
    assert status["PCAM < refined PCAM (Tables 1-2, train)"] == "pass"
    assert status["CAM: final >= refined - 3 points (Tables 2-3, val)"] == "pass"
    assert status["PCAM: final >= refined - 3 points (Tables 2-3, val)"] == "not evaluated"


def test_voc_summary_quotes_the_paper(tmp_path):
    results = tmp_path / "voc"
    _write(results, skip={("cam", "cam", "train")})
    md, report = _run(results, "voc2012")
    assert report["paper"]["miou_percent"]["refined"]["pcam"] == {"train": 70.8, "val": 68.5}
    assert report["paper"]["miou_percent"]["final"]["pcam"]["val"] == 70.5
    assert "| PCAM (points) | 45.0 | 44.0 | 56.5 | 54.4 |" in md
    assert "| CAM (image labels) | — | 28.0 | 48.3 | 46.0 |" in md
    assert "| PCAM (points) | — | — |" in md  # Table 4 row without a final metrics file
    assert "QUOTED" in md and "Table 4" in md and "89.9" in md
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["CAM < PCAM (Table 1, train)"] == "not evaluated"


def test_failed_ordering_is_reported(tmp_path):
    results = tmp_path / "r"
    _write(results)
    path = results / "pcam" / "cam" / "metrics_val.json"
    path.write_text(json.dumps({"miou": 0.10, "iou": {}}))
    report = build_summary(results, ["cam", "pcam"], "demo")
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["CAM < PCAM (Table 1, val)"] == "fail"


def test_broken_metrics_file_is_an_error(tmp_path):
    results = tmp_path / "r"
    _write(results)
    (results / "cam" / "cam" / "metrics_val.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics_val.json"):
        build_summary(results, ["cam", "pcam"], "demo")


def test_table4_lists_each_variants_final_per_class_iou_for_any_dataset():
    from pcam_core.evaluation.summary import TABLE4_WIDE_MAX_CLASSES, _table4_markdown

    report = {"paper": None, "miou": {"pcam": {"final": {"val": 0.5}}},
              "per_class_final": {"pcam": {"background": 0.9, "nucleus": 0.1}}}
    lines = _table4_markdown(report)
    assert lines[3] == "| row | background | nucleus | mean |"
    assert lines[5] == "| PCAM (points) | 90.0 | 10.0 | 50.0 |"
    many = {f"class{i}": 0.5 for i in range(TABLE4_WIDE_MAX_CLASSES + 1)}
    report["per_class_final"] = {"pcam": many}
    lines = _table4_markdown(report)
    assert lines[3] == "| class | PCAM (points) |"
    assert lines[-1] == "| **mean** | 50.0 |"
    assert len(lines) == 4 + 1 + len(many) + 1


def _write_branch(results, variant, final, true_classes, blots=None):
    for name, miou in (("metrics_val.json", final), ("metrics_val_true_classes.json", true_classes)):
        path = results / variant / "deeplab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"miou": miou, "iou": {"background": 0.9, "aeroplane": miou}}))
    for split, (miou, coverage) in (blots or {}).items():
        path = results / variant / "pseudo" / f"blot_metrics_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"miou": miou, "coverage": coverage, "labelled_pixels_only": True,
                                    "iou": {"background": 0.99, "aeroplane": miou}}))


def test_variants_without_cams_show_dashes_their_blots_and_the_orderings(tmp_path):
    results = tmp_path / "demo"
    _write(results)
    (results / "pcam" / "deeplab").mkdir(parents=True, exist_ok=True)
    (results / "pcam" / "deeplab" / "metrics_val.json").write_text(json.dumps({"miou": 0.60, "iou": {}}))
    _write_branch(results, "wtp", 0.35, 0.40)
    _write_branch(results, "pmp_blot", 0.65, 0.66, blots={"train": (0.95, 0.14), "val": (0.94, 0.13)})
    report = build_summary(results, ["cam", "pcam", "wtp", "pmp_blot"], "demo")
    md = summary_markdown(report)
    # Table 1 does not apply to either; Table 2 of pmp_blot is its blots; no "missing" notes
    assert report["miou"]["wtp"]["cam"] == {"train": None, "val": None}
    assert report["miou"]["pmp_blot"]["refined"] == {"train": 0.95, "val": 0.94}
    assert report["not_applicable"] == {"wtp": ["cam", "refined"], "pmp_blot": ["cam"]}
    assert not any("wtp/cam" in n or "pmp_blot/cam" in n or "calibration" in n and "wtp" in n
                   for n in report["notes"])
    assert "| WTP (points, What's the point) | — | — |" in md
    assert "| PMP point blots, labelled pixels only † | 95.0 | 94.0 |" in md
    assert "14.0 % (train) and 13.0 % (val)" in md
    assert "— for wtp, pmp_blot: their branch has no such stage" in md
    assert "| WTP (points, What's the point) | 35.0 |" in md  # Table 3
    assert set(report["calibration"]) == {"cam", "pcam"}
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["WTP < PCAM (Table 3, val)"] == "pass"
    assert status["PMP blots < PCAM (Table 3, val)"] == "fail"  # 65 > 60: the papers' order fails
    assert not any(c["check"].startswith(("WTP:", "PMP blots:", "WTP <", "PMP blots <"))
                   and "refined" in c["check"] for c in report["checks"])


def test_voc_summary_quotes_the_related_papers(tmp_path):
    results = tmp_path / "voc"
    _write_branch(results, "wtp", 0.30, 0.33)
    report = build_summary(results, ["wtp"], "voc2012")
    md = summary_markdown(report)
    assert report["num_classes"] == 2  # found in the DeepLab metrics (no CAM stage)
    assert "| WTP (points, What's the point) | 30.0 | 35.1 |" in md
    assert "| WTP from image labels alone (paper only) | — | 29.8 |" in md
    assert "Bearman" in report["paper"]["source"] and "Akiva" in report["paper"]["source"]
