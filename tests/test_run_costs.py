"""Run costs from Snakemake benchmark files, and the run manifest."""

from __future__ import annotations

import json
import subprocess

import pytest

from pcam_core.report import run_manifest
from pcam_core.report.run_costs import per_rule, read_benchmark, run_costs

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path, seconds, rss="-", cpu="-"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t0\t{cpu}\n")
    return path


def test_jobs_are_summed_per_rule_and_the_largest_rule_comes_first(tmp_path):
    files = [write_benchmark(tmp_path / "export_cams/pcam_1-of-2.tsv", 30.0, "800.5", "55"),
             write_benchmark(tmp_path / "export_cams/pcam_2-of-2.tsv", 40.0, "900.0", "70"),
             write_benchmark(tmp_path / "train_cam/pcam.tsv", 90.0, "1500", "170"),
             write_benchmark(tmp_path / "summary/summary.tsv", 0.4)]
    table = per_rule([read_benchmark(f) for f in files])
    assert [r["rule"] for r in table] == ["train_cam", "export_cams", "summary"]
    export = table[1]
    assert export == {"rule": "export_cams", "jobs": 2, "total_s": 70.0, "max_job_s": 40.0,
                      "cpu_s": 125.0, "peak_rss_mb": 900.0}
    assert table[2]["peak_rss_mb"] is None  # '-' = not measured (a job under a second)

    out = tmp_path / "out"
    run_costs(files, out / "c.md", out / "c.json", out / "c.png")
    md = (out / "c.md").read_text()
    assert "| export_cams | 2 | 70.0 | 44 % | 40.0 | 125 | 900 |" in md
    assert json.loads((out / "c.json").read_text())["rules"][0]["rule"] == "train_cam"
    assert (out / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    bad = tmp_path / "rule/job.tsv"
    bad.parent.mkdir()
    bad.write_text("hello\tworld\n1\t2\n")
    with pytest.raises(ValueError, match="job.tsv: not a Snakemake benchmark"):
        read_benchmark(bad)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_benchmark(tmp_path / "missing.tsv")


def test_manifest_records_commit_packages_device_and_config(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    manifest = run_manifest.build_manifest({"device": "cpu", "shards": 2}, repo)
    assert manifest["git"] == {"commit": head, "dirty": False}
    assert manifest["device"]["resolved"] == "cpu" and manifest["device"]["name"]
    assert manifest["packages"]["torch"]
    assert manifest["config"] == {"device": "cpu", "shards": 2}
    (repo / "f.txt").write_text("b")
    assert run_manifest.git_state(repo)["dirty"] is True
    md = run_manifest.markdown(run_manifest.build_manifest({"device": "cpu"}, repo))
    assert f"- code: {head} (with uncommitted changes to tracked files)" in md
    assert "| torch |" in md and "device: cpu" in md


def test_outside_git_the_manifest_says_so(tmp_path):
    state = run_manifest.git_state(tmp_path)
    assert state["commit"] is None and "not a git checkout" in state["note"]


def test_jobs_are_summed_per_branch_by_their_variant_name(tmp_path):
    from pcam_core.report.run_costs import job_variant, per_branch

    variants = ["cam", "pcam", "pcam_full", "pmp_blot", "wtp"]
    assert job_variant("pcam_full_1-of-2", variants) == "pcam_full"  # not pcam's
    assert job_variant("cam_pseudo_train", variants) == "cam"
    assert job_variant("pmp_blot_deeplab_val", variants) == "pmp_blot"
    assert job_variant("index", variants) is None
    files = [write_benchmark(tmp_path / "point_blots/pmp_blot_1-of-2.tsv", 3.0),
             write_benchmark(tmp_path / "point_blots/pmp_blot_2-of-2.tsv", 4.0),
             write_benchmark(tmp_path / "train_deeplab/pmp_blot.tsv", 50.0),
             write_benchmark(tmp_path / "train_deeplab/pcam.tsv", 60.0),
             write_benchmark(tmp_path / "train_wtp/wtp.tsv", 55.0),
             write_benchmark(tmp_path / "build_index/index.tsv", 2.0)]
    branches = per_branch([read_benchmark(f) for f in files], ["pcam", "wtp", "pmp_blot"])
    assert branches["pmp_blot"]["total_s"] == 57.0 and branches["pmp_blot"]["jobs"] == 3
    assert [r["rule"] for r in branches["pmp_blot"]["rules"]] == ["train_deeplab", "point_blots"]
    assert branches["wtp"]["total_s"] == 55.0 and branches["shared"]["total_s"] == 2.0

    out = tmp_path / "out"
    run_costs(files, out / "c.md", out / "c.json", variants=["pcam", "wtp", "pmp_blot"])
    md = (out / "c.md").read_text()
    assert "## Cost per branch" in md
    assert "| pmp_blot | 3 | 57.0 | train_deeplab 50.0, point_blots 7.0 |" in md
    assert json.loads((out / "c.json").read_text())["branches"]["pcam"]["total_s"] == 60.0
