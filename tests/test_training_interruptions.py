"""Interrupted training: SIGTERM checkpoints, exits 143 and resumes exactly, for each of the
three trainings and with DataLoader workers; a side checkpoint of other code is never resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cam_tiny_data import TINY_PARAMS as CAM_PARAMS, make_tiny_index
from pcam_core.common.training_loop import SIGTERM_EXIT_STATUS
from test_deeplab_training import PARAMS as DEEPLAB_PARAMS, tiny_data  # noqa: F401  (a module fixture)
from test_irn_training import PARAMS as IRN_PARAMS, data as irn_data  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parents[1]


# Long enough that the signal lands mid-training; checkpoints only by the signal. Both runs
# use 2 threads (results are reproducible for a given thread count); the reference loads with
# no DataLoader worker, the signalled run with two: the result may depend on neither the
# worker count nor the stop.
def _cam_case(tmp_path, tiny_data, irn_data):  # noqa: F811
    index = make_tiny_index(tmp_path / "cam_data", num_train=6, num_val=1)
    params = {**CAM_PARAMS, "epochs": 14, "checkpoint_every": 10_000}
    return ["train-cam", "--index", str(index), "--variant", "pcam"], params, 42


def _irn_case(tmp_path, tiny_data, irn_data):  # noqa: F811
    params = {**IRN_PARAMS, "epochs": 20, "checkpoint_every": 10_000}
    return (["train-irn", "--index", str(irn_data["index"]),
             "--ir-label-dirs", *map(str, irn_data["label_dirs"])], params, 40)


def _deeplab_case(tmp_path, tiny_data, irn_data):  # noqa: F811
    root, index, label_dirs = tiny_data
    params = {**DEEPLAB_PARAMS, "iterations": 40, "checkpoint_every": 10_000}
    return ["train-deeplab", "--index", str(root / "index.json"), "--label-dirs", *map(str, label_dirs)], params, 40


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PCAM_NO_PROGRESS": "1"}


def _state_dict(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("case", [_cam_case, _irn_case, _deeplab_case], ids=["cam", "irn", "deeplab"])
def test_sigterm_writes_a_checkpoint_exits_143_and_the_rerun_resumes_exactly(
        case, tiny_data, irn_data, tmp_path):  # noqa: F811
    command, params, total = case(tmp_path, tiny_data, irn_data)

    def argv(workers: int, out: Path) -> list[str]:
        return [sys.executable, "-m", "pcam_core.cli", *command, "--params",
                json.dumps({**params, "num_workers": workers}), "--threads", "2", "--out", str(out),
                "--log-jsonl", str(out.with_suffix(".jsonl")), "--device", "cpu"]

    reference = tmp_path / "reference" / "model.pt"
    subprocess.run(argv(0, reference), env=_env(), check=True, capture_output=True)

    out = tmp_path / "model.pt"
    log = out.with_suffix(".jsonl")
    # Slurm signals every process of the job: the trainer and its DataLoader workers alike.
    job = subprocess.Popen(argv(2, out), env=_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while not (log.exists() and '"step": 3' in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)  # some steps into the run, the workers running
    signalled = time.monotonic()
    os.killpg(job.pid, signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=60)
    assert time.monotonic() - signalled < 30, "not stopped within Slurm's default 30 s grace"
    assert job.returncode == SIGTERM_EXIT_STATUS, stderr[-2000:]
    assert "stopped by SIGTERM at step" in stderr
    side = out.with_name(out.name + ".ckpt")
    assert side.exists() and not out.exists()
    stopped_at = torch.load(side, map_location="cpu", weights_only=False)["step"]
    logged = max(json.loads(line).get("step", 0) for line in log.read_text().splitlines())
    assert 0 < stopped_at < total and stopped_at >= logged, "every step done before the signal is kept"

    rerun = subprocess.run(argv(2, out), env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from {side} at step {stopped_at}" in rerun.stdout + rerun.stderr
    expected, got = _state_dict(reference), _state_dict(out)
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
