"""Interrupted training: SIGTERM checkpoints, exits 143 and resumes exactly; a side checkpoint
of other code is never resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pcam_core.common.training_loop import SIGTERM_EXIT_STATUS
from pcam_core.deeplab.training import train_deeplab
from test_deeplab_training import PARAMS, tiny_data  # noqa: F401  (a module fixture)

REPO = Path(__file__).resolve().parents[1]
# Long enough that the signal lands mid-training; checkpoints only by the signal.
SIGTERM_PARAMS = {**PARAMS, "iterations": 300, "checkpoint_every": 10_000}


def _command(root: Path, label_dirs, out: Path) -> list[str]:
    return [sys.executable, "-m", "pcam_core.cli", "train-deeplab", "--index", str(root / "index.json"),
            "--label-dirs", *map(str, label_dirs), "--params", json.dumps(SIGTERM_PARAMS),
            "--out", str(out), "--log-jsonl", str(out.with_suffix(".jsonl")), "--threads", "1",
            "--device", "cpu"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PCAM_NO_PROGRESS": "1"}


def test_sigterm_writes_a_checkpoint_exits_143_and_the_rerun_resumes_exactly(tiny_data, tmp_path):  # noqa: F811
    root, index, label_dirs = tiny_data
    reference = tmp_path / "reference.pt"
    train_deeplab(index, label_dirs, SIGTERM_PARAMS, reference, device="cpu", threads=1)

    out = tmp_path / "model.pt"
    job = subprocess.Popen(_command(root, label_dirs, out), env=_env(), stderr=subprocess.PIPE, text=True)
    log = out.with_suffix(".jsonl")
    deadline = time.monotonic() + 120
    while not (log.exists() and "start" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # some steps into the run
    signalled = time.monotonic()
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert time.monotonic() - signalled < 30, "not stopped within Slurm's default 30 s grace"
    assert job.returncode == SIGTERM_EXIT_STATUS, stderr[-2000:]
    assert "stopped by SIGTERM at step" in stderr
    side = out.with_name(out.name + ".ckpt")
    assert side.exists() and not out.exists()
    stopped_at = torch.load(side, map_location="cpu", weights_only=False)["step"]
    assert 0 < stopped_at < SIGTERM_PARAMS["iterations"]

    rerun = subprocess.run(_command(root, label_dirs, out), env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from {side} at step {stopped_at}" in rerun.stdout + rerun.stderr
    expected = torch.load(reference, map_location="cpu", weights_only=False)["state_dict"]
    got = torch.load(out, map_location="cpu", weights_only=False)["state_dict"]
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


FINISHED_THEN_SIGTERM = """
import os, signal, sys, time
from pcam_core.common.training_loop import Checkpointer
checkpointer = Checkpointer(sys.argv[1], 5)
checkpointer.finish({"done": True})
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("survived")
"""


def test_after_training_sigterm_ends_the_process_as_usual(tmp_path):
    result = subprocess.run([sys.executable, "-c", FINISHED_THEN_SIGTERM, str(tmp_path / "m.pt")],
                            env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGTERM and "survived" not in result.stdout


def test_a_side_checkpoint_of_other_code_is_not_resumed(tmp_path, capsys):
    from pcam_core.common.training_loop import Checkpointer

    written = Checkpointer(tmp_path / "model.pt", 5, command="train-deeplab")
    written.save({"step": 5})
    assert Checkpointer(tmp_path / "model.pt", 5, command="train-deeplab").load()["step"] == 5
    edited = Checkpointer(tmp_path / "model.pt", 5, command="train-deeplab")
    edited.code = "an-edited-tree"  # what command_fingerprint gives after a code edit
    assert edited.load() is None
    assert "written by other pcam code" in capsys.readouterr().err
