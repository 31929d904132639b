"""Workflow tests: Snakemake on a tiny generated dataset.

Dry-run checks of the DAG and of config validation run in seconds. One real end-to-end run
(module fixture) builds the whole DAG on CPU; the rerun-scope checks then edit one config
value at a time and assert, from `snakemake -n`, which rules would run again.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Small enough for CI's 2 cores: the whole DAG in a couple of minutes.
TINY_CONFIG = {
    "run_name": "tiny",
    "variants": ["cam", "pcam", "wtp", "pmp_blot"],
    "shards": 2,
    "device": "cpu",
    "dataset": {"name": "demo", "demo": {"seed": 1, "num_train": 24, "num_extra_train": 6,
                                         "num_val": 10, "min_size": 64, "max_size": 96}},
    "cam": {"crop_size": 64, "resize_long": [64, 96], "epochs": 2, "batch_size": 8,
            "export_scales": [1.0, 0.5], "checkpoint_every": 5, "num_workers": 0},
    "irn": {"crop_size": 96, "epochs": 1, "batch_size": 8, "crf_iterations": 3,
            "checkpoint_every": 5, "num_workers": 0},
    "random_walk": {"exp_times": 6},
    "deeplab": {"crop_size": 64, "iterations": 12, "batch_size": 8, "checkpoint_every": 5,
                "num_workers": 0},
}


def snakemake(workdir: Path, *args: str, check: bool = True,
              snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with the test interpreter's tools."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PCAM_NO_PROGRESS"] = "1"
    # targets go before --resources, which would take them as more resources
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(snakefile),
           "--directory", str(workdir), "--cores", "2", "--resources", "gpu=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run ({} = nothing to do)."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match or match.group(1) == "total":
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


# ---------------------------------------------------------------- dry runs (fast)
def test_dry_run_lists_every_stage(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    # DeepLab on the pseudo labels of cam and pcam and on the point blots; wtp trains its own
    assert jobs["train_cam"] == 2 and jobs["train_deeplab"] == 3 and jobs["train_wtp"] == 1
    # one job per shard and variant for every per-image stage, never one per image
    for rule in ("export_cams", "mine_ir_labels", "random_walk", "pseudo_labels"):
        assert jobs[rule] == 4, rule
    assert jobs["point_blots"] == 2 and jobs["score_blots"] == 2  # per shard; per split
    assert jobs["predict_val"] == 8 and jobs["quality_gates"] == 4  # every variant
    for rule in ("calibrate_cam_threshold", "calibrate_ir_labels", "calibrate_walk"):
        assert jobs[rule] == 2, rule  # one per variant with CAMs
    assert "download_voc2012" not in jobs


def _told_threads(result: subprocess.CompletedProcess, command: str) -> set[int]:
    """The --threads values the printed shell commands of ``pcam <command>`` carry."""
    return {int(n) for n in re.findall(rf"pcam {command} .*?--threads (\d+)", result.stdout)}


@pytest.mark.parametrize("device, threads", [("cpu", 1), ("cuda", 2)])
def test_cpu_jobs_leave_room_for_the_other_variant(tmp_path, device, threads):
    """On 2 CPU cores a stage job gets one, so both variants' jobs run at once; on a GPU the
    GPU counter serialises them anyway and each job gets every core."""
    config = copy.deepcopy(TINY_CONFIG)
    config["device"] = device
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", "-p")
    for command in ("train-cam", "export-cams", "train-irn", "random-walk", "train-deeplab",
                    "train-wtp"):
        assert _told_threads(result, command) == {threads}, command


def test_misspelt_key_is_an_error_naming_it(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["random_walk"]["betta"] = 10
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "betta" in result.stdout + result.stderr


def test_voc2012_downloads_only_what_is_not_given(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"] = {"name": "voc2012"}
    config["cam"]["imagenet_weights"] = True
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    assert {"download_voc2012", "download_sbd", "download_points", "download_weights"} <= set(jobs)

    given = tmp_path / "given"
    for folder in ("VOCdevkit/VOC2012", "benchmark_RELEASE/dataset"):
        (given / folder).mkdir(parents=True)
    (given / "points.json").write_text("{}")
    config["dataset"] = {"name": "voc2012", "voc_root": str(given / "VOCdevkit/VOC2012"),
                         "sbd_root": str(given / "benchmark_RELEASE/dataset"),
                         "points": str(given / "points.json")}
    config["cam"]["imagenet_weights"] = False
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "-n"))
    assert not any(rule.startswith("download") for rule in jobs)


def test_lint_is_clean(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- one real run
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    write_config(workdir, TINY_CONFIG)
    snakemake(workdir)
    return workdir


# What a second run must reproduce byte for byte: every score, threshold and gate, and the
# summary built from them (timings, logs and the manifest legitimately differ).
DETERMINISTIC_OUTPUTS = ("**/metrics_*.json", "**/metrics_*.md", "**/calibration/*.json",
                         "**/quality_gates.json", "**/quality_gates.md", "summary.json", "summary.md")


@pytest.mark.workflow
def test_a_second_run_gives_identical_outputs(finished_run, tmp_path):
    """Same config, same machine, same threads: byte-identical metrics and summary, and the
    same weights, CAM and walk stores, labels and predictions (issue 12)."""
    from run_outputs import differences

    write_config(tmp_path, TINY_CONFIG)
    snakemake(tmp_path)
    first, second = finished_run / "results" / "tiny", tmp_path / "results" / "tiny"
    files = sorted({p.relative_to(first) for pattern in DETERMINISTIC_OUTPUTS for p in first.glob(pattern)})
    assert len(files) >= 20, files
    different = [str(f) for f in files if (first / f).read_bytes() != (second / f).read_bytes()]
    assert different == [], f"differ between two runs of the same config: {different}"
    assert differences(first, second) == []


@pytest.mark.workflow
def test_end_to_end_writes_summary_and_is_up_to_date(finished_run):
    results = finished_run / "results" / "tiny"
    summary = json.loads((results / "summary.json").read_text())
    assert (results / "summary.md").read_text().strip()
    assert summary  # the summary module's content is tested in test_summary.py
    for variant in ("cam", "pcam"):
        assert summary["calibration"][variant]["ir_labels_source"] == "calibrated"
        assert {g["name"] for g in summary["quality_gates"][variant]} == {
            "cam_image_loss", "ir_fg_precision", "ir_fg_coverage", "boundary_contrast",
            "pseudo_fg_fraction", "final_like_for_like"}
        assert summary["miou"][variant]["final_true_classes"]["val"] is not None
    for variant in ("cam", "pcam"):
        for split in ("train", "val"):
            metrics = json.loads((results / variant / "cam" / f"metrics_{split}.json").read_text())
            assert 0.0 <= metrics["miou"] <= 1.0
    # the branches without CAMs: their DeepLab scored, their own gates, the blots scored
    assert {g["name"] for g in summary["quality_gates"]["wtp"]} == {"final_fg_fraction"}
    assert {g["name"] for g in summary["quality_gates"]["pmp_blot"]} == {
        "blot_accuracy", "blot_coverage", "final_fg_fraction"}
    for variant in ("wtp", "pmp_blot"):
        assert summary["miou"][variant]["final"]["val"] is not None
        assert summary["miou"][variant]["final_true_classes"]["val"] is not None
        assert summary["miou"][variant]["cam"] == {"train": None, "val": None}
    assert summary["miou"]["pmp_blot"]["refined"]["train"] is not None
    assert 0 < summary["blot_coverage"]["train"] < 1
    assert {c["check"] for c in summary["checks"]} >= {"WTP < PCAM (Table 3, val)",
                                                       "PMP blots < PCAM (Table 3, val)"}
    assert not any("missing" in note for note in summary["notes"]), summary["notes"]
    blots = results / "pmp_blot" / "pseudo"
    assert len(list(blots.glob("*-of-2/*.png"))) > 0
    assert planned_jobs(snakemake(finished_run, "-n")) == {}
    assert (results / "data" / "data_report.md").exists()
    # the report's items exist without a browser too (the Chromium test below renders them)
    figures = [results / "report" / name for name in ("qualitative_grid.png", "data_report.png",
                                                      "run_costs.png")]
    figures += [results / "report" / v / f"{kind}.png" for v in ("cam", "pcam")
                for kind in ("class_iou", "training_cam", "training_irn", "training_deeplab",
                             "calibration_cam_threshold", "calibration_ir_labels", "calibration_walk")]
    figures += [results / "report" / v / f"{kind}.png" for v in ("wtp", "pmp_blot")
                for kind in ("class_iou", "training_deeplab")]
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    costs = json.loads((results / "report" / "run_costs.json").read_text())
    assert {r["rule"] for r in costs["rules"]} >= {"train_cam", "export_cams", "train_deeplab", "summary",
                                                   "train_wtp", "point_blots", "score_blots"}
    branches = costs["branches"]
    assert set(branches) == {"cam", "pcam", "wtp", "pmp_blot", "shared"}
    assert {r["rule"] for r in branches["wtp"]["rules"]} == {
        "train_wtp", "predict_val", "evaluate_labels", "evaluate_true_classes", "quality_gates"}
    assert {r["rule"] for r in branches["pmp_blot"]["rules"]} == {
        "point_blots", "score_blots", "train_deeplab", "predict_val", "evaluate_labels",
        "evaluate_true_classes", "quality_gates"}
    manifest = json.loads((results / "report" / "manifest.json").read_text())
    assert manifest["config"]["run_name"] == "tiny" and manifest["device"]["resolved"] == "cpu"
    assert "<table>" in (results / "summary.html").read_text()


# The report's own jobs: leaves that redraw what changed (and the manifest, which records the
# effective config, after any config edit). The method's stages are asserted without them.
REPORT_RULES = {"figure_training_curves", "figure_calibration", "figure_class_iou",
                "figure_data_report", "qualitative_grid", "run_costs", "run_manifest"}


def method_jobs(jobs: dict[str, int]) -> set[str]:
    return set(jobs) - REPORT_RULES


def _rerun_plan(workdir: Path, edit) -> dict[str, int]:
    config = copy.deepcopy(TINY_CONFIG)
    edit(config)
    write_config(workdir, config)
    try:
        return planned_jobs(snakemake(workdir, "-n"))
    finally:
        write_config(workdir, TINY_CONFIG)


@pytest.mark.workflow
def test_random_walk_change_reruns_only_downstream(finished_run):
    jobs = _rerun_plan(finished_run, lambda c: c["random_walk"].update(beta=8))
    assert method_jobs(jobs) == {"random_walk", "calibrate_walk", "pseudo_labels", "evaluate_labels",
                         "train_deeplab", "predict_val", "evaluate_true_classes", "quality_gates",
                         "summary", "all"}
    assert jobs["random_walk"] == 4


@pytest.mark.workflow
def test_walk_threshold_change_keeps_the_walk(finished_run):
    """The walk's maps are stored: its background threshold only re-cuts the labels."""
    jobs = _rerun_plan(finished_run, lambda c: c["random_walk"].update(bg_threshold=0.4))
    assert method_jobs(jobs) == {"calibrate_walk", "pseudo_labels", "evaluate_labels", "train_deeplab",
                         "predict_val", "evaluate_true_classes", "quality_gates", "summary", "all"}
    assert jobs["calibrate_walk"] == 2 and jobs["pseudo_labels"] == 4
    # redrawn: the walk's calibration curves and DeepLab's training curves, per variant
    assert jobs["figure_calibration"] == 2 and jobs["figure_training_curves"] == 2
    assert "figure_data_report" not in jobs


@pytest.mark.workflow
def test_calibration_setting_reruns_only_its_dependents(finished_run):
    jobs = _rerun_plan(finished_run, lambda c: c.setdefault("calibration", {}).update(ir_fg_precision=0.7))
    assert jobs["calibrate_ir_labels"] == 2 and jobs["mine_ir_labels"] == 4 and jobs["random_walk"] == 4
    for upstream_or_aside in ("train_cam", "export_cams", "calibrate_cam_threshold", "evaluate_cams"):
        assert upstream_or_aside not in jobs
    jobs = _rerun_plan(finished_run, lambda c: c.setdefault("calibration", {}).update(mode="fixed"))
    assert jobs["calibrate_cam_threshold"] == 2 and jobs["calibrate_walk"] == 2
    assert "train_cam" not in jobs and "export_cams" not in jobs


@pytest.mark.workflow
def test_deeplab_change_reruns_only_deeplab(finished_run):
    jobs = _rerun_plan(finished_run, lambda c: c["deeplab"].update(iterations=13))
    # every DeepLab: on the pseudo labels, on the blots, and wtp's (it shares the settings)
    assert method_jobs(jobs) == {"train_deeplab", "train_wtp", "predict_val", "evaluate_labels",
                                 "evaluate_true_classes", "quality_gates", "summary", "all"}
    assert jobs["train_deeplab"] == 3 and jobs["train_wtp"] == 1
    assert jobs["evaluate_labels"] == 4  # deeplab val of each variant, not the pseudo labels


# The jobs of one variant's branch after a change there, per rule: nothing of another branch.
WTP_BRANCH = {"train_wtp": 1, "predict_val": 2, "evaluate_labels": 1, "evaluate_true_classes": 1,
              "quality_gates": 1, "summary": 1, "all": 1}
PMP_BRANCH = {"point_blots": 2, "score_blots": 2, "train_deeplab": 1, "predict_val": 2,
              "evaluate_labels": 1, "evaluate_true_classes": 1, "quality_gates": 1, "summary": 1,
              "all": 1}


def _method_counts(jobs: dict[str, int]) -> dict[str, int]:
    return {rule: n for rule, n in jobs.items() if rule not in REPORT_RULES}


@pytest.mark.workflow
def test_each_related_method_is_its_own_cached_branch(finished_run):
    """A wtp: setting reruns only the wtp branch, a pmp: setting only pmp_blot's."""
    jobs = _rerun_plan(finished_run, lambda c: c.setdefault("wtp", {}).update(point_weighting="rank"))
    assert _method_counts(jobs) == WTP_BRANCH
    jobs = _rerun_plan(finished_run, lambda c: c.setdefault("pmp", {}).update(iterations=3))
    assert _method_counts(jobs) == PMP_BRANCH
    # the report redraws that branch's figures only (and the grid, costs and manifest)
    assert jobs["figure_class_iou"] == 1 and jobs["figure_training_curves"] == 1


@pytest.mark.workflow
def test_pcam_settings_rerun_neither_related_method(finished_run):
    for edit in (lambda c: c["cam"].update(alpha=0.2), lambda c: c["random_walk"].update(beta=8),
                 lambda c: c.setdefault("calibration", {}).update(mode="fixed")):
        jobs = _rerun_plan(finished_run, edit)
        assert "train_wtp" not in jobs and "point_blots" not in jobs and "score_blots" not in jobs
        # DeepLab of cam and pcam only: not the blots' (the third)
        assert jobs["train_deeplab"] <= 2 and jobs["predict_val"] <= 4 and jobs["quality_gates"] <= 2


@pytest.mark.workflow
def test_cam_threshold_change_rescores_only_that_variant(finished_run):
    jobs = _rerun_plan(finished_run, lambda c: c["cam"].setdefault("eval_threshold", {}).update(pcam=0.25))
    assert jobs == {"calibrate_cam_threshold": 1, "evaluate_cams": 2, "summary": 1, "all": 1,
                    # the report redraws that variant's curves, its IoU bars and the grid
                    "figure_calibration": 1, "figure_class_iou": 1, "qualitative_grid": 1,
                    "run_costs": 1, "run_manifest": 1}


@pytest.mark.workflow
def test_mining_change_keeps_cam_training(finished_run):
    jobs = _rerun_plan(finished_run, lambda c: c["irn"].update(fg_threshold=0.35))
    assert "train_cam" not in jobs and "export_cams" not in jobs and "evaluate_cams" not in jobs
    assert jobs["calibrate_ir_labels"] == 2 and jobs["mine_ir_labels"] == 4 and jobs["train_irn"] == 2


@pytest.mark.workflow
def test_data_target_alone(tmp_path):
    write_config(tmp_path, TINY_CONFIG)
    snakemake(tmp_path, "data")
    assert (tmp_path / "results/tiny/data/index.json").exists()
    assert planned_jobs(snakemake(tmp_path, "-n", "data")) == {}


def _plan_with_edited_module(finished_run, tmp_path, relative: str) -> dict[str, int]:
    """Dry-run plan of the finished run with a copy of the repository where one module is edited.

    Snakemake puts the Snakefile's folder first on sys.path, so the copy's code is the one
    fingerprinted.
    """
    import shutil

    copy = tmp_path / "edited_repo"
    copy.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "pcam_core"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    module = copy / relative
    module.write_text(module.read_text() + "\n# an edit\n")
    return planned_jobs(snakemake(finished_run, "-n", snakefile=copy / "Snakefile"))


@pytest.mark.workflow
def test_code_change_reruns_only_that_stage(finished_run, tmp_path):
    """random_walk.py is imported directly by the walk and, through the walk store, by the
    walk's calibration, the label cutting and the quality gates: those rerun, nothing before."""
    jobs = _plan_with_edited_module(finished_run, tmp_path, "pcam_core/irn/random_walk.py")
    assert method_jobs(jobs) == {"random_walk", "calibrate_walk", "pseudo_labels", "evaluate_labels",
                                 "train_deeplab", "predict_val", "evaluate_true_classes",
                                 "quality_gates", "summary", "all"}
    assert jobs["random_walk"] == 4 and jobs["train_deeplab"] == 2


@pytest.mark.workflow
def test_indirectly_imported_module_reruns_exactly_its_dependents(finished_run, tmp_path):
    """click_formats.py is imported by no command module directly: only index_builder ->
    custom_dataset -> click_formats. A hand-kept list missed such chains; the import closure
    finds it, so the index is rebuilt (and everything after it), and nothing else changes:
    the demo generator, which does not import it, is not rerun."""
    jobs = _plan_with_edited_module(finished_run, tmp_path, "pcam_core/data/click_formats.py")
    assert "build_index" in jobs and "make_demo_dataset" not in jobs
    jobs = _plan_with_edited_module(finished_run, tmp_path / "second", "pcam_core/evaluation/__init__.py")
    # a package __init__ runs on every import from the package: each scoring rule reruns,
    # no stage that produces what they score
    assert method_jobs(jobs) == {"evaluate_cams", "evaluate_labels", "evaluate_true_classes",
                                 "score_blots", "quality_gates", "summary", "all"}


@pytest.mark.workflow
def test_code_of_a_related_method_reruns_only_its_branch(finished_run, tmp_path):
    jobs = _plan_with_edited_module(finished_run, tmp_path, "pcam_core/wtp/loss.py")
    assert _method_counts(jobs) == WTP_BRANCH
    jobs = _plan_with_edited_module(finished_run, tmp_path / "second", "pcam_core/pmp/colour_walk.py")
    assert _method_counts(jobs) == PMP_BRANCH


@pytest.mark.workflow
def test_html_report_renders_every_figure_in_chromium(finished_run, tmp_path):
    """`snakemake --report` of the tiny run, opened in headless Chromium (Debian's package)."""
    from report_in_chromium import chromium, rendered_report

    if chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    report = tmp_path / "report.html"
    snakemake(finished_run, "--report", str(report))
    text, figures = rendered_report(report, tmp_path)
    for category in ("Summary", "Quality gates", "Figures", "Data", "Run"):
        assert category in text, f"the rendered report has no {category!r} category"
    drawn = {Path(f["path"]).relative_to("results/tiny").as_posix(): f for f in figures}
    expected = {"report/qualitative_grid.png", "report/data_report.png", "report/run_costs.png"}
    for variant in ("cam", "pcam"):
        expected.add(f"report/{variant}/class_iou.png")
        expected |= {f"report/{variant}/training_{m}.png" for m in ("cam", "irn", "deeplab")}
        expected |= {f"report/{variant}/calibration_{s}.png" for s in ("cam_threshold", "ir_labels", "walk")}
    for variant in ("wtp", "pmp_blot"):
        expected |= {f"report/{variant}/class_iou.png", f"report/{variant}/training_deeplab.png"}
    assert expected <= set(drawn), f"not in the report: {sorted(expected - set(drawn))}"
    for name in expected:
        figure = drawn[name]
        assert "error" not in figure, (name, figure)
        # drawn by the browser, larger than an icon and not one flat colour
        assert figure["width"] > 200 and figure["height"] > 100, (name, figure)
        assert figure["colours"] > 5, (name, figure)
