"""The workflow on a real Slurm cluster, with the project's Slurm profile.

A module fixture installs Debian's Slurm and munge packages when they are missing, starts a
one-node cluster on localhost (tests/slurm/start_slurm.sh: munged, MariaDB + slurmdbd so that
`sacct` keeps every job's record, slurmctld, slurmd, two fake GPUs) and stops exactly the
daemons it started afterwards (tests/slurm/stop_slurm.sh, which cancels leftover jobs first).
The tiny workflow then runs twice: through Slurm with `--workflow-profile
workflow/profiles/slurm`, overriding only the threads (the profile's 4-16 CPUs per job do not
fit a 2-CPU node), and locally. The checks read Slurm's own accounting records (`sacct`):
every GPU rule's job was allocated a GPU, no tiny rule (Snakefile `localrules`) became a job,
each job was allocated as many CPUs as its command was told to use (`--threads N` in the
job's log), the profile's partitions, memory and wall times reached Slurm, and the results
equal the local run's.

Needs root (apt-get, daemons running as root). Without root it is skipped, saying why.
About 3.5 minutes on 2 cores (the package install adds 10-30 s the first time); every snakemake
call runs under an outer `timeout`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from test_workflow import TINY_CONFIG, planned_jobs, write_config

REPO = Path(__file__).resolve().parents[1]
SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE_DIR = REPO / "workflow" / "profiles" / "slurm"
PROFILE = yaml.safe_load((PROFILE_DIR / "profile.yaml").read_text())
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")

# Rules whose jobs must hold a GPU (the Slurm profile gives them `gpu: 1` and the GPU partition;
# predict_images is not in the default target's DAG).
GPU_RULES = {"train_cam", "export_cams", "train_irn", "random_walk", "train_deeplab", "predict_val"}

# Threads per job on the 2-CPU test node. Results depend on the threads of the training and
# inference stages, so they get 1, as stage_threads() gives every stage on 2 local cores.
# IR-label mining gets 2: its workers each mine whole images single-threaded, so its output
# does not depend on the count, and a 2-CPU allocation shows that the CPUs follow the threads.
MINING_THREADS = 2
SLURM_RUN_LIMIT_S = 480
LOCAL_RUN_LIMIT_S = 300


def slurm_test_config() -> dict:
    """The tiny config with device: auto (so that the GPU rules ask for a GPU on a cluster;
    the fake GPUs have no driver, so every job still computes on the CPU) and one variant:
    the job count, not the job size, sets this test's time (two Snakemake start-ups per Slurm job)."""
    config = copy.deepcopy(TINY_CONFIG)
    config["device"] = "auto"
    config["variants"] = ["pcam"]
    return config


def thread_overrides() -> list[str]:
    """`--set-threads` values: every rule the profile sizes, at the test node's size."""
    return [f"{rule}={MINING_THREADS if rule == 'mine_ir_labels' else 1}" for rule in PROFILE["set-threads"]]


def declared_localrules() -> set[str]:
    """The rule names of the Snakefile's `localrules:` directive."""
    match = re.search(r"^localrules:\n((?:[ \t]+\w+,?[ \t]*\n)+)", (REPO / "Snakefile").read_text(), re.M)
    assert match, "the Snakefile declares no localrules"
    return set(re.findall(r"\w+", match.group(1)))


def profile_resources(rule: str) -> dict:
    return {**PROFILE["default-resources"], **PROFILE["set-resources"].get(rule, {})}


def run_snakemake(workdir: Path, *args: str, limit_s: int) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile, bounded by an outer `timeout` (TERM lets the
    Slurm plugin cancel its jobs; KILL 30 s later)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PCAM_NO_PROGRESS"] = "1"
    cmd = ["timeout", "-k", "30", str(limit_s), sys.executable, "-m", "snakemake",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit_s + 60)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed (rc {result.returncode}; 124 = timed out "
                             f"after {limit_s} s):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


# ---------------------------------------------------------------- the cluster
def why_no_cluster() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return ("needs root: it installs Debian's slurm and munge packages if missing and runs "
                "slurmctld/slurmd as root (run the tests as root, as CI does)")
    installed = all(subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                   text=True).stdout.endswith("installed") for p in PACKAGES) \
        if shutil.which("dpkg-query") else False
    if not installed and not shutil.which("apt-get"):
        return f"Slurm is not installed and there is no apt-get to install it ({', '.join(PACKAGES)})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node cluster for this module: installed if missing, started, stopped afterwards.

    Its partitions are the ones the profile names, so the profile's partitions need no
    override; the node advertises twice the profile's largest memory request (nothing enforces
    memory here, start_slurm.sh) and two fake GPUs, so that two GPU jobs run at once as two
    local jobs do. Its state lives in a fresh directory: job ids and accounting start empty.
    """
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    partitions = [PROFILE["default-resources"]["slurm_partition"]]
    for resources in PROFILE["set-resources"].values():
        if resources.get("slurm_partition", partitions[0]) not in partitions:
            partitions.append(resources["slurm_partition"])
    largest_mem = max(profile_resources(rule)["mem_mb"] for rule in [*PROFILE["set-resources"], "default"])
    # not under pytest's 0700 base temp: MariaDB runs as the mysql user and must reach its datadir
    run_dir = tempfile.mkdtemp(prefix="pcam-slurm-")
    env = {**os.environ, "SLURM_RUN_DIR": run_dir, "SLURM_PARTITIONS": " ".join(partitions),
           "SLURM_FAKE_GPUS": "2", "SLURM_NODE_MEM_MB": str(2 * largest_mem)}
    try:
        started = subprocess.run(["bash", str(SLURM_SCRIPTS / "start_slurm.sh")], env=env,
                                 capture_output=True, text=True, timeout=600)
        if started.returncode != 0:
            logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}"
                           for log in sorted(Path(run_dir, "log").glob("*.log")))
            pytest.fail(f"start_slurm.sh failed:\n{started.stdout}\n{started.stderr}{logs}")
        print(started.stdout)
        yield SimpleNamespace(env=env, partitions=partitions, start_output=started.stdout)
    finally:
        stopped = subprocess.run(["bash", str(SLURM_SCRIPTS / "stop_slurm.sh")], env=env,
                                 capture_output=True, text=True, timeout=240)
        print(stopped.stdout, stopped.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)


SACCT_FIELDS = ["JobIDRaw", "JobName", "Comment", "Partition", "AllocCPUS", "ReqMem", "Timelimit",
                "AllocTRES", "State", "WorkDir"]


def sacct_records(workdir: Path, since: datetime) -> list[dict]:
    """Slurm's accounting records of the jobs that ran in ``workdir`` (one row per job,
    steps left out), with the rule and wildcards the plugin wrote into each job's comment."""
    out = subprocess.run(["sacct", "-X", "-P", "--noheader", "--allusers",
                          "--starttime", since.strftime("%Y-%m-%dT%H:%M:%S"),
                          "-o", ",".join(SACCT_FIELDS)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    records = []
    for line in out.splitlines():
        record = dict(zip(SACCT_FIELDS, line.split("|")))
        if record["WorkDir"] != str(workdir):
            continue
        match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(.*))?", record["Comment"])
        assert match, f"job {record['JobIDRaw']} has no rule in its comment: {line}"
        record["rule"], record["wildcards"] = match.group(1), match.group(2) or ""
        record["tres"] = dict(item.split("=", 1) for item in record["AllocTRES"].split(",") if item)
        records.append(record)
    return records


def told_threads(workdir: Path, jobid: str) -> int:
    """The threads the job's command was given: `--threads N` in its shell command (the plugin's
    log of the job, kept with --slurm-keep-successful-logs), else Snakemake's default of 1."""
    logs = list((workdir / PROFILE["slurm-logdir"]).rglob(f"{jobid}.log"))
    assert len(logs) == 1, f"no Slurm log of job {jobid}"
    commands = [line for line in logs[0].read_text().splitlines() if line.startswith("Shell command:")]
    assert commands, f"no shell command in {logs[0]}"
    values = {int(n) for command in commands for n in re.findall(r"--threads (\d+)", command)}
    assert len(values) <= 1, f"{logs[0]}: several thread counts {values}"
    return values.pop() if values else 1


def excerpt(records: list[dict]) -> str:
    keys = ["JobIDRaw", "rule", "wildcards", "Partition", "AllocCPUS", "ReqMem", "Timelimit", "AllocTRES", "State"]
    return "\n".join("|".join(str(r[k]) for k in keys) for r in records)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """The same config run through Slurm with the project's profile, then locally."""
    config = slurm_test_config()
    on_slurm = tmp_path_factory.mktemp("on_slurm")
    write_config(on_slurm, config)
    since = datetime.now() - timedelta(minutes=1)
    slurm = run_snakemake(
        on_slurm, "--workflow-profile", str(PROFILE_DIR),
        "--set-threads", *thread_overrides(),
        # a status check every few seconds instead of the first after 40 s, and the job logs
        # (they hold each job's command) kept after success
        "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs",
        limit_s=SLURM_RUN_LIMIT_S)
    local = tmp_path_factory.mktemp("local")
    write_config(local, config)
    run_snakemake(local, "--cores", "2", "--resources", "gpu=1", limit_s=LOCAL_RUN_LIMIT_S)
    records = sacct_records(on_slurm, since)
    print(excerpt(records))
    return SimpleNamespace(slurm_dir=on_slurm, local_dir=local, jobs=planned_jobs(slurm),
                           records=records, run=config["run_name"])


# ---------------------------------------------------------------- the checks
@pytest.mark.workflow
def test_every_slurm_job_completed_and_the_tiny_rules_never_queued(runs):
    """Each job Snakemake planned is either a Slurm job or a local rule, never both."""
    local_rules = declared_localrules()
    assert runs.records, "sacct shows no job of the Slurm run"
    assert all(r["State"] == "COMPLETED" for r in runs.records), excerpt(runs.records)
    submitted: dict[str, int] = {}
    for record in runs.records:
        submitted[record["rule"]] = submitted.get(record["rule"], 0) + 1
    assert not set(submitted) & local_rules, excerpt(runs.records)
    expected = {rule: n for rule, n in runs.jobs.items() if rule not in local_rules}
    assert submitted == expected
    assert {"make_shards", "summary", "calibrate_walk", "figure_class_iou"} <= set(runs.jobs) & local_rules


@pytest.mark.workflow
def test_gpu_rules_were_allocated_a_gpu(runs):
    """GPU rules get one GPU in the GPU partition from `resources: gpu`; no other job gets one."""
    gpu_jobs = [r for r in runs.records if r["rule"] in GPU_RULES]
    assert {r["rule"] for r in gpu_jobs} == GPU_RULES, excerpt(runs.records)
    for record in runs.records:
        gpus = record["tres"].get("gres/gpu")
        assert gpus == ("1" if record["rule"] in GPU_RULES else None), excerpt([record])


@pytest.mark.workflow
def test_each_job_was_allocated_the_cpus_its_command_uses(runs):
    """AllocCPUS (Slurm) equals `--threads N` of the job's command, for every job."""
    for record in runs.records:
        threads = told_threads(runs.slurm_dir, record["JobIDRaw"])
        assert int(record["AllocCPUS"]) == threads, excerpt([record])
    mining = [r for r in runs.records if r["rule"] == "mine_ir_labels"]
    assert mining and all(int(r["AllocCPUS"]) == MINING_THREADS for r in mining), excerpt(mining)


@pytest.mark.workflow
def test_profile_partitions_memory_and_wall_times_reach_slurm(runs):
    for record in runs.records:
        wanted = profile_resources(record["rule"])
        hours, minutes = divmod(wanted["runtime"], 60)
        assert (record["Partition"], record["ReqMem"], record["Timelimit"]) == (
            wanted["slurm_partition"], f"{wanted['mem_mb']}M", f"{hours:02d}:{minutes:02d}:00"), excerpt([record])


@pytest.mark.workflow
def test_slurm_results_equal_the_local_run(runs):
    """Same threads per job, so the same numbers: summary, metrics, calibration, quality gates."""
    results = Path("results") / runs.run
    files = sorted(p.relative_to(runs.local_dir) for p in (runs.local_dir / results).rglob("*.json")
                   if p.parent.name != "report" and "data" not in p.relative_to(runs.local_dir / results).parts)
    assert results / "summary.json" in files and len(files) > 5, files
    for name in files:
        local = json.loads((runs.local_dir / name).read_text())
        on_slurm = json.loads((runs.slurm_dir / name).read_text())
        assert on_slurm == local, name
