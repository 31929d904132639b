"""The GPU suite's CPU-side machinery at tiny size: part selection and budgets, the table,
the timing arithmetic and extrapolation, the VOC-size data generator, the per-part processes.
The CUDA measurements themselves run on the lent GPU (benchmarks/gpu_suite.sh)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_suite  # noqa: E402
import paper_scale  # noqa: E402


# ----------------------------------------------------------------------------- parts and budgets
def test_parts_are_selected_in_suite_order_and_unknown_ones_named():
    assert gpu_suite.select_parts(None) == list(gpu_suite.PARTS)
    assert gpu_suite.select_parts("all") == list(gpu_suite.PARTS)
    assert gpu_suite.select_parts("speeds, cuda_tests") == ["cuda_tests", "speeds"]
    with pytest.raises(ValueError, match="speed"):
        gpu_suite.select_parts("cuda_tests,speed")


def test_budgets_fit_one_lent_command_and_can_be_overridden():
    # 600 s per command on the lent machine, minus the wheel install and a grace per part
    assert sum(gpu_suite.DEFAULT_BUDGETS.values()) + gpu_suite.GRACE_S * len(gpu_suite.PARTS) <= 560
    budgets = gpu_suite.parse_budgets(["speeds=30", "demo_dag=12.5"])
    assert budgets["speeds"] == 30 and budgets["demo_dag"] == 12.5
    assert budgets["header"] == gpu_suite.DEFAULT_BUDGETS["header"]
    for bad in ("speeds", "nope=3", "speeds=0"):
        with pytest.raises(ValueError):
            gpu_suite.parse_budgets([bad])


def test_budget_counts_down_and_says_why_it_skips():
    now = [100.0]
    budget = gpu_suite.Budget(60, clock=lambda: now[0])
    assert budget.allows(60) and budget.left() == 60
    now[0] += 45
    assert budget.left() == 15 and budget.allows(15) and not budget.allows(20)
    assert budget.skip_why(20) == "budget: 15 s left of 60 s, this needs ~20 s"
    now[0] += 100
    assert budget.left() == 0


def _context(tmp_path, part="speeds", size="tiny", device="cpu", seconds=60.0):
    args = argparse.Namespace(size=size, device=device, work=str(tmp_path))
    rows = []
    return gpu_suite.Context(part, args, gpu_suite.Budget(seconds), rows.append), rows


def test_goals_are_judged_only_at_paper_size_on_cuda(tmp_path):
    assert _context(tmp_path, size="tiny", device="cpu")[0].judged("FAIL") == (
        "info", "tiny size: the goal applies at the paper's sizes")
    assert _context(tmp_path, size="paper", device="cpu")[0].judged("pass")[0] == "info"
    assert _context(tmp_path, size="paper", device="cuda")[0].judged("FAIL") == ("FAIL", "")
    assert gpu_suite.at_least(1.8, 1.8) == "pass" and gpu_suite.at_least(1.79, 1.8) == "FAIL"
    assert gpu_suite.at_most(20.0, 20) == "pass" and gpu_suite.at_most(20.1, 20) == "FAIL"


def test_a_part_with_no_time_left_skips_every_measurement_and_says_why(tmp_path):
    ctx, rows = _context(tmp_path, seconds=0.0)
    gpu_suite.part_speeds(ctx)
    assert [r.item for r in rows] == ["CAM training", "IRNet training", "DeepLab training", "CAM export",
                                      "boundary inference", "random walk"]
    assert all(r.status == "skip" and r.why.startswith("budget: 0 s left") for r in rows)


# ----------------------------------------------------------------------------- the table
def test_table_has_one_row_per_result_escapes_pipes_and_counts_statuses():
    rows = [gpu_suite.Row("speeds", "CAM training", "fp32 1 | bf16 2", ">= 1.8x", "pass"),
            gpu_suite.Row("demo_dag", "tiny demo DAG", "not run", status="skip", why="no snakemake")]
    table = gpu_suite.format_table(rows)
    lines = table.splitlines()
    assert lines[0] == "| part | item | result | goal | status | why |"
    assert lines[2] == "| speeds | CAM training | fp32 1 \\| bf16 2 | >= 1.8x | pass |  |"
    assert lines[3].endswith("| skip | no snakemake |")
    assert lines[-1] == "1 pass, 0 FAIL, 1 skip, 0 info"
    with pytest.raises(ValueError):
        gpu_suite.Row("x", "y", "z", status="ok")


def test_junit_counts_read_pytests_report(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(textwrap.dedent("""\
        <testsuites><testsuite name="pytest" tests="4">
          <testcase name="test_a"/>
          <testcase name="test_b"><skipped message="no CUDA device visible"/></testcase>
          <testcase name="test_c"><failure message="assert 1 == 2"/></testcase>
          <testcase name="test_d"><error message="fixture broke"/></testcase>
        </testsuite></testsuites>"""))
    counts, others = gpu_suite.junit_counts(xml)
    assert counts == {"tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1}
    assert others == [("test_b", "skipped", "no CUDA device visible"), ("test_c", "failure", "assert 1 == 2"),
                      ("test_d", "error", "fixture broke")]


# ----------------------------------------------------------------------------- part processes
def _script(tmp_path, body: str) -> list[str]:
    path = tmp_path / "part.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path), str(tmp_path / "rows" / "speeds.jsonl")]


def test_a_part_over_its_budget_is_stopped_and_keeps_its_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "GRACE_S", 0.2)
    (tmp_path / "rows").mkdir()
    command = _script(tmp_path, """
        import json, sys, time
        with open(sys.argv[1], "a") as f:
            f.write(json.dumps({"part": "speeds", "item": "first", "result": "1 img/s"}) + "\\n")
        time.sleep(60)
    """)
    rows = gpu_suite.run_part("speeds", 1.0, argparse.Namespace(), tmp_path / "rows", command=command)
    assert [r.item for r in rows] == ["first", "part"]
    assert rows[1].status == "FAIL" and "over its 1 s budget" in rows[1].why


def test_a_failing_or_silent_part_is_a_failed_row(tmp_path):
    (tmp_path / "rows").mkdir()
    rows = gpu_suite.run_part("speeds", 10, argparse.Namespace(), tmp_path / "rows",
                              command=_script(tmp_path, "raise SystemExit(3)\n"))
    assert [(r.result, r.status) for r in rows] == [("exit 3", "FAIL")]
    rows = gpu_suite.run_part("speeds", 10, argparse.Namespace(), tmp_path / "rows",
                              command=_script(tmp_path, "pass\n"))
    assert [(r.result, r.status) for r in rows] == [("no result", "FAIL")]


def test_the_suite_runs_a_part_end_to_end_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu_suite.md"
    code = gpu_suite.main(["--parts", "header", "--size", "tiny", "--device", "cpu", "--out", str(out),
                           "--work", str(tmp_path / "work")])
    assert code == 0
    table = out.read_text()
    assert "| header | torch |" in table and "| header | cuda | no CUDA device visible |" in table
    assert "| suite | parts not selected | cuda_tests, demo_dag, speeds, paper_scale |" in table


# ----------------------------------------------------------------------------- demo DAG helpers
def test_the_demo_dag_uses_the_workflow_tests_tiny_config():
    import test_workflow

    assert gpu_suite.tiny_config() == test_workflow.TINY_CONFIG


def test_a_pcam_shim_is_put_on_path_when_pcam_is_not_installed(tmp_path):
    env = gpu_suite.pcam_on_path(tmp_path / "bin", {"PATH": "/usr/bin:/bin"})
    shim = tmp_path / "bin" / "pcam"
    assert env["PATH"].startswith(str(tmp_path / "bin")) and shim.exists()
    result = subprocess.run([str(shim), "make-shards", "--help"], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "--outputs" in result.stdout


# ----------------------------------------------------------------------------- paper-scale arithmetic
def test_paper_settings_and_full_schedule_match_the_paper():
    settings = paper_scale.voc_settings(paper_scale.SIZES["paper"])
    assert (settings["cam"]["backbone"], settings["cam"]["batch_size"], settings["cam"]["crop_size"]) == (
        "resnet50", 16, 512)
    assert (settings["irn"]["batch_size"], settings["irn"]["crop_size"]) == (32, 512)
    assert (settings["deeplab"]["backbone"], settings["deeplab"]["crop_size"]) == ("resnet101", 513)
    # spec: CAM 5 epochs x 661 = 3,305 steps; IRN 3 x 330 = 990; DeepLab 30k iterations
    assert paper_scale.schedule(settings) == {
        "train_cam": 3305, "export_cams": 12031, "mine_ir_labels": 10582, "train_irn": 990,
        "random_walk": 12031, "pseudo_labels": 12031, "train_deeplab": 30000, "predict_val": 1449}


def test_marginal_cost_separates_the_fixed_cost_from_the_per_image_cost():
    fixed, per = paper_scale.marginal_cost((10, 7.0), (40, 13.0))
    assert per == pytest.approx(0.2) and fixed == pytest.approx(5.0)
    assert paper_scale.marginal_cost((10, 7.0), (40, 6.0)) == (7.0, 0.0)  # noise: never negative
    with pytest.raises(ValueError):
        paper_scale.marginal_cost((10, 1.0), (10, 2.0))


def test_extrapolation_scales_per_unit_costs_by_voc_counts_and_jobs_by_shards():
    settings = paper_scale.voc_settings(paper_scale.SIZES["paper"])
    measured = {"train_cam": {"unit": "step", "per_unit_s": 0.5, "fixed_s": 20.0},
                "export_cams": {"unit": "image", "per_unit_s": 0.05, "fixed_s": 10.0}}
    costs = {c.stage: c for c in paper_scale.extrapolate(measured, settings)}
    assert costs["train_cam"].seconds == pytest.approx(20 + 3305 * 0.5)
    assert costs["export_cams"].jobs == 8  # config_voc2012.yaml: 8 shards
    assert costs["export_cams"].seconds == pytest.approx(8 * 10 + 12031 * 0.05)
    assert paper_scale.total_hours(list(costs.values())) == pytest.approx(
        (20 + 3305 * 0.5 + 80 + 12031 * 0.05) / 3600)
    assert paper_scale.format_hours(2.345) == "2.35 h" and paper_scale.format_hours(0.05) == "3.0 min"


def test_training_log_gives_each_steps_time_and_the_steady_median(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"event": "start", "step": 0},
             {"step": 1, "images_per_s": 4.0},   # batch 16: 4 s (warm-up)
             {"step": 2, "images_per_s": 16.0},  # 1 s
             {"step": 4, "images_per_s": 32.0},  # two steps logged at once: 0.5 s each
             {"step": 5, "images_per_s": 8.0},   # 2 s
             {"event": "done", "step": 5}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    seconds = paper_scale.log_step_seconds(log, batch_size=16)
    assert seconds == [4.0, 1.0, 0.5, 0.5, 2.0]
    assert paper_scale.steady_step_seconds(seconds, warmup=2) == 0.5
    with pytest.raises(ValueError):
        paper_scale.steady_step_seconds(seconds[:2], warmup=2)


# ----------------------------------------------------------------------------- the data generator
def test_generated_sample_is_a_voc_dataset_with_the_requested_sizes(tmp_path):
    from pcam_core.data.index_builder import build_index

    size = paper_scale.SampleSize("test", (40, 56), 3, 5, 1, 2, cam_epochs=1, irn_epochs=1, deeplab_iterations=1)
    data = paper_scale.generate_voc_sample(tmp_path, size)
    index = build_index("voc2012", data["voc_root"], data["sbd_root"], data["points"])
    assert sorted(index.splits["train_aug"]) == sorted(data["ids"]["train_small"] + data["ids"]["train_large"])
    assert sorted(index.splits["val"]) == sorted(data["ids"]["val_small"] + data["ids"]["val_large"])
    records = [index[i] for i in index.all_ids()]
    assert len(records) == 11 and all((r.height, r.width) == (40, 56) for r in records)
    assert all(r.classes and r.clicks for r in records)  # image-level labels and clicks
    assert sum(r.gt_png is not None for r in records) == 2 + 3  # VOC train (every 4th) + val
    assert sum(r.gt_mat is not None for r in records) == 6  # the SBD-only train_aug images
    assert paper_scale.SIZES["paper"].image_hw == (375, 500)
