"""One GPU per job: concurrent jobs claim different devices (a simulated device list on CPU)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pcam_core.common import gpu_lock

REPO = Path(__file__).resolve().parents[1]


def test_visible_gpus_honours_cuda_visible_devices(tmp_path):
    no_driver = tmp_path / "none"
    assert gpu_lock.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}, no_driver) == ["2", "5"]
    assert gpu_lock.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,3"}, no_driver) == ["1"]
    assert gpu_lock.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, no_driver) == []
    assert gpu_lock.visible_gpus({}, no_driver) == []
    driver = tmp_path / "gpus"
    for address in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (driver / address).mkdir(parents=True)
    assert gpu_lock.visible_gpus({}, driver) == ["0", "1", "2"]


def test_no_gpu_or_one_gpu_claims_nothing(tmp_path):
    environ = {}
    assert gpu_lock.claim_for("auto", environ, lock_dir=tmp_path, nvidia_gpus=tmp_path / "none") is None
    assert environ == {}
    environ = {"CUDA_VISIBLE_DEVICES": "3"}  # e.g. Slurm gave the job one GPU
    assert gpu_lock.claim_for("auto", environ, lock_dir=tmp_path) is None
    assert environ == {"CUDA_VISIBLE_DEVICES": "3"}


def test_cpu_and_explicit_devices_are_left_alone(tmp_path):
    for device in ("cpu", "cuda:1"):
        environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
        assert gpu_lock.claim_for(device, environ, lock_dir=tmp_path) is None
        assert environ["CUDA_VISIBLE_DEVICES"] == "0,1"


CLAIMING_JOB = textwrap.dedent("""
    import os, sys, time
    from pcam_core.common.gpu_lock import claim_for
    claim_for("auto", lock_dir=sys.argv[1], poll_s=0.05)
    print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _job(lock_dir: Path, visible: str, hold_s: float) -> subprocess.Popen:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": visible}
    return subprocess.Popen([sys.executable, "-c", CLAIMING_JOB, str(lock_dir), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_jobs_get_different_devices(tmp_path):
    """Two jobs started together on a workstation showing GPUs 4 and 7 (as Slurm or a user
    would set CUDA_VISIBLE_DEVICES) each see exactly one, and not the same one."""
    jobs = [_job(tmp_path, "4,7", 1.5) for _ in range(2)]
    seen = sorted(job.communicate(timeout=60)[0].strip() for job in jobs)
    assert seen == ["4", "7"]


def test_a_third_job_waits_for_a_free_device_and_a_killed_job_frees_its_own(tmp_path):
    holders = [_job(tmp_path, "0,1", 30) for _ in range(2)]
    claimed = [job.stdout.readline().strip() for job in holders]  # both devices are taken
    assert sorted(claimed) == ["0", "1"]
    waiting = _job(tmp_path, "0,1", 0)
    time.sleep(0.5)
    assert waiting.poll() is None  # every device is taken: it waits
    holders[0].kill()  # the kernel drops the dead job's lock
    holders[0].wait()
    out, err = waiting.communicate(timeout=30)
    assert out.strip() == claimed[0]
    assert "in use by other jobs; waiting" in err
    holders[1].kill()
    holders[1].wait()


def test_the_cli_claims_before_the_command_runs(tmp_path, monkeypatch):
    """`pcam <command> --device auto` narrows CUDA_VISIBLE_DEVICES before the command starts."""
    import types

    from pcam_core import cli

    seen = {}
    command = types.SimpleNamespace(
        add_arguments=lambda parser: parser.add_argument("--device", default="auto"),
        main=lambda args: seen.setdefault("visible", __import__("os").environ["CUDA_VISIBLE_DEVICES"]) and 0)
    monkeypatch.setitem(sys.modules, "fake_gpu_command", command)
    monkeypatch.setitem(cli.COMMANDS, "fake-gpu-command", ("fake_gpu_command", "test"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,9")
    monkeypatch.setenv(gpu_lock.LOCK_DIR_VARIABLE, str(tmp_path))
    assert cli.main(["fake-gpu-command"]) == 0
    assert seen["visible"] == "6"
    for handle in gpu_lock._held:
        handle.close()  # release this test process's claim
    gpu_lock._held.clear()
