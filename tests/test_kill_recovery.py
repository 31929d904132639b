"""Kill tests at the level of the DAG: killed anywhere, the same command finishes the run with
the outputs of an uninterrupted one.

Each long stage's job is SIGKILLed once, at a random point of its work, in one run of the
tiny config:

* with Snakemake itself (the whole process group: a workstation that loses power, an OOM
  killer that takes the group). Snakemake cannot clean up, so its lock and "incomplete"
  markers stay; the README's recovery is `snakemake --unlock`, then the same command (the
  local profile has ``rerun-incomplete``);
* or the job's processes alone (a cluster job killed at its memory limit or wall time):
  Snakemake sees the job fail, lets the others finish, and the same command reruns it.

The stages alternate between the two. Each kill run goes ``--until`` its stage (and so reruns
the stage killed before it, which it needs or, in another branch, leaves to the final run); the
final run is the user's plain command. It must finish; a training must lose at most one
checkpoint interval (measured from its log: steps done when killed, step it resumed from); and
every output (weights, CAM and walk stores, labels, predictions, calibrations, metrics) must
equal an uninterrupted run's, with no temporary or side file left behind.

The kill points are drawn from a seeded generator: set PCAM_KILL_SEED to replay a run.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from run_outputs import differences
from test_workflow import REPO, TINY_CONFIG, write_config

pytestmark = pytest.mark.workflow

# Trainings of 6+ steps that checkpoint every 2, so a kill lands between checkpoints and the
# loss bound means something.
EVERY = 2
KILL_CONFIG = copy.deepcopy(TINY_CONFIG)
KILL_CONFIG["cam"].update(epochs=2, checkpoint_every=EVERY)
KILL_CONFIG["irn"].update(epochs=2, checkpoint_every=EVERY)
KILL_CONFIG["deeplab"].update(iterations=12, checkpoint_every=EVERY)
R = "results/tiny"


@dataclass
class Stage:
    rule: str
    variant: str
    command: tuple[str, ...]  # the pcam command words that name the job's process
    trigger: str              # "checkpoint" | "writing" | "running"
    where: str = ""           # training: the output whose .ckpt/.jsonl sit beside it;
                              # writing: the folder the output's temp name appears in
    jsonl: str = ""

    @property
    def log(self) -> str:
        return f"{R}/logs/{self.variant}/{self.rule}.log"


# In DAG order: each depends on the one before, so it has not run when its turn comes.
PCAM_STAGES = [
    Stage("train_cam", "pcam", ("train-cam",), "checkpoint", f"{R}/pcam/cam/model.pt",
          f"{R}/pcam/cam/train_log.jsonl"),
    Stage("export_cams", "pcam", ("export-cams",), "writing", f"{R}/pcam/cam/maps"),
    Stage("calibrate_ir_labels", "pcam", ("calibrate-cams", "ir_labels"), "running"),
    Stage("mine_ir_labels", "pcam", ("mine-ir-labels",), "writing", f"{R}/pcam/irn/ir_labels"),
    Stage("train_irn", "pcam", ("train-irn",), "checkpoint", f"{R}/pcam/irn/model.pt",
          f"{R}/pcam/irn/train_log.jsonl"),
    Stage("random_walk", "pcam", ("random-walk",), "writing", f"{R}/pcam/pseudo/walk"),
    Stage("calibrate_walk", "pcam", ("calibrate-walk",), "running"),
    Stage("train_deeplab", "pcam", ("train-deeplab",), "checkpoint", f"{R}/pcam/deeplab/model.pt",
          f"{R}/pcam/deeplab/train_log.jsonl"),
    Stage("predict_val", "pcam", ("predict",), "writing", f"{R}/pcam/deeplab/predictions"),
]
# Two independent branches: each kill run goes --until its stage, so the other branch waits
# for its own turn; a stage that finished before the kill landed is forced to run again
# (_kill_stage's retry).
RELATED_STAGES = [
    Stage("point_blots", "pmp_blot", ("point-blots",), "writing", f"{R}/pmp_blot/pseudo"),
    Stage("train_wtp", "wtp", ("train-wtp",), "checkpoint", f"{R}/wtp/deeplab/model.pt",
          f"{R}/wtp/deeplab/train_log.jsonl"),
    Stage("train_deeplab", "pmp_blot", ("train-deeplab",), "checkpoint", f"{R}/pmp_blot/deeplab/model.pt",
          f"{R}/pmp_blot/deeplab/train_log.jsonl"),
]
SCENARIOS = {"pcam": (["pcam"], PCAM_STAGES), "wtp_and_pmp_blot": (["wtp", "pmp_blot"], RELATED_STAGES)}


# ---------------------------------------------------------------- processes
def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PCAM_NO_PROGRESS"] = "1"
    return env


def _command(workdir: Path, *extra: str) -> list[str]:
    """The user's command: the local profile (rerun-incomplete, keep-going) on 2 cores."""
    return [sys.executable, "-m", "snakemake", *extra, "--workflow-profile",
            str(REPO / "workflow/profiles/local"), "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--cores", "2"]


@dataclass
class Proc:
    pid: int
    ppid: int
    session: int
    state: str
    argv: list[str]


def _processes() -> list[Proc]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        found.append(Proc(int(entry), int(fields[1]), int(fields[3]), fields[0],
                          [a.decode(errors="replace") for a in argv if a]))
    return found


def _job_process(session: int, words: tuple[str, ...]) -> Proc | None:
    """The `pcam <words>` process of the session (not the bash that started it)."""
    for proc in _processes():
        if proc.session != session or proc.state == "Z":
            continue
        argv = proc.argv
        for i, arg in enumerate(argv[:-len(words)] if len(argv) > len(words) else []):
            if (arg.endswith("/pcam") or arg == "pcam_core.cli") and tuple(argv[i + 1:i + 1 + len(words)]) == words:
                return proc
    return None


def _tree(root: Proc) -> list[int]:
    """The job: its shell, its process and every descendant (DataLoader workers)."""
    procs = _processes()
    members, grew = {root.pid}, True
    shell = next((p for p in procs if p.pid == root.ppid), None)
    if shell is not None and shell.argv and Path(shell.argv[0]).name in ("bash", "sh"):
        members.add(shell.pid)  # Snakemake's `bash -c`, unless it exec'd the command
    while grew:
        grew = False
        for proc in procs:
            if proc.ppid in members and proc.pid not in members and proc.ppid != 1:
                members.add(proc.pid)
                grew = True
    return sorted(members)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _signal_all(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _logged_steps(path: Path) -> list[int]:
    steps = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record.get("step"), int) and "event" not in record:
                steps.append(record["step"])
    return steps


# ---------------------------------------------------------------- one kill
@dataclass
class Kill:
    stage: str
    with_snakemake: bool
    delay_s: float
    attempts: int = 1
    steps_done: int | None = None
    notes: list[str] = field(default_factory=list)


def _wait(condition, snakemake: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if snakemake.poll() is not None:
            raise _Missed(f"Snakemake ended (rc {snakemake.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class _Missed(Exception):
    """The job finished before the kill landed: try again."""


def _kill_once(workdir: Path, stage: Stage, kill: Kill, rng: random.Random, forcerun: bool) -> None:
    # --until: only the stage and what it needs run, so a job of another branch cannot finish
    # before its own turn (it then would be forced, and a forced run killed leaves its output
    # missing under still-present downstream outputs, which the plain command rightly ignores).
    extra = ("--until", stage.rule) + (("--forcerun", stage.rule) if forcerun else ())
    output = open(workdir.parent / f"snakemake_{stage.rule}_{kill.attempts}.log", "w")  # for a failure's story
    snakemake = subprocess.Popen(_command(workdir, *extra), cwd=workdir, env=_env(), start_new_session=True,
                                 stdout=output, stderr=subprocess.STDOUT)
    session = snakemake.pid
    try:
        job: list[Proc] = []

        def job_started():
            found = _job_process(session, stage.command)
            if found:
                job[:] = [found]
            return bool(found)

        _wait(job_started, snakemake, f"a {stage.rule} job")
        if stage.trigger == "checkpoint":
            side = workdir / (stage.where + ".ckpt")
            _wait(side.exists, snakemake, f"{side.name} (the first checkpoint)")
            # then a random number of further steps: anywhere within a checkpoint interval
            target = max(_logged_steps(workdir / stage.jsonl), default=0) + rng.randrange(EVERY)
            _wait(lambda: max(_logged_steps(workdir / stage.jsonl), default=0) >= target or
                  not _alive(job[0].pid), snakemake, f"step {target}")
        elif stage.trigger == "writing":
            folder = workdir / stage.where

            def temporaries():
                return {p.name for p in folder.iterdir() if p.name.endswith(".tmp")} if folder.is_dir() else set()

            earlier = temporaries()  # a killed attempt's leftovers do not count
            _wait(lambda: bool(temporaries() - earlier), snakemake, f"an output being written in {stage.where}")
        time.sleep(kill.delay_s)
        # Freeze first, so that the check "still running" and the kill see the same moment.
        pids = [session] if kill.with_snakemake else _tree(job[0])
        if kill.with_snakemake:
            os.killpg(session, signal.SIGSTOP)
        else:
            _signal_all(pids, signal.SIGSTOP)
        if not _alive(job[0].pid):
            # Too late: stop everything (the later stages wait for their turn) and try again.
            os.killpg(session, signal.SIGKILL)
            snakemake.wait(timeout=600)
            subprocess.run(_command(workdir, "--unlock"), env=_env(), check=True, capture_output=True)
            raise _Missed(f"the {stage.rule} job ended before the kill")
        if stage.jsonl:
            kill.steps_done = max(_logged_steps(workdir / stage.jsonl), default=0)
        if kill.with_snakemake:
            os.killpg(session, signal.SIGKILL)
        else:
            _signal_all(pids, signal.SIGKILL)
        snakemake.wait(timeout=600)  # alone, it lets the other jobs finish, then fails
        if not kill.with_snakemake:
            assert snakemake.returncode != 0, f"Snakemake did not notice the killed {stage.rule} job"
    finally:
        if snakemake.poll() is None:
            os.killpg(session, signal.SIGKILL)
            snakemake.wait()
        output.close()
    if kill.with_snakemake:  # the README's recovery after a hard stop: unlock, same command
        subprocess.run(_command(workdir, "--unlock"), env=_env(), check=True, capture_output=True)


def _kill_stage(workdir: Path, stage: Stage, rng: random.Random, with_snakemake: bool) -> Kill:
    # A random point: training anywhere in a checkpoint interval (above), an output being
    # written or a short job anywhere in its first few tenths of a second.
    kill = Kill(stage.rule, with_snakemake, delay_s=round(rng.uniform(0, 0.2 if stage.trigger != "running" else 0.1), 3))
    for attempt in range(1, 4):
        kill.attempts = attempt
        try:
            _kill_once(workdir, stage, kill, rng, forcerun=attempt > 1)
            return kill
        except _Missed as missed:  # the job was quicker than the delay: again, at once
            kill.notes.append(str(missed))
            kill.delay_s = 0.0
    raise AssertionError(f"could not kill {stage.rule} while it ran: {kill.notes}")


# ---------------------------------------------------------------- the tests
def _resumed_at(log: Path) -> int | None:
    match = re.search(r"resuming from \S+ at step (\d+)", log.read_text()) if log.exists() else None
    return int(match.group(1)) if match else None


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_killed_anywhere_the_same_command_finishes_with_the_same_outputs(scenario, tmp_path):
    variants, stages = SCENARIOS[scenario]
    config = {**KILL_CONFIG, "variants": variants}
    uninterrupted = tmp_path / "uninterrupted"
    write_config(uninterrupted, config)
    subprocess.run(_command(uninterrupted), env=_env(), check=True, capture_output=True)

    seed = int(os.environ.get("PCAM_KILL_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    workdir = tmp_path / "killed"
    write_config(workdir, config)
    kills = [_kill_stage(workdir, stage, rng, with_snakemake=i % 2 == 0) for i, stage in enumerate(stages)]
    final = subprocess.run(_command(workdir), env=_env(), capture_output=True, text=True)
    report = f"PCAM_KILL_SEED={seed}; kills: {kills}"
    assert final.returncode == 0, f"{report}\n{final.stdout[-3000:]}\n{final.stderr[-3000:]}"

    for stage, kill in zip(stages, kills):
        if stage.trigger != "checkpoint":
            continue
        resumed = _resumed_at(workdir / stage.log)
        assert resumed is not None, f"{stage.rule} ({stage.variant}) did not resume from its side checkpoint; {report}"
        lost = kill.steps_done - resumed
        print(f"{stage.rule} ({stage.variant}): killed after step {kill.steps_done}, resumed at {resumed}: "
              f"{lost} step(s) lost")
        assert 0 <= lost <= EVERY, f"{stage.rule} lost {lost} steps (> {EVERY}); {report}"

    problems = differences(uninterrupted / "results/tiny", workdir / "results/tiny")
    assert problems == [], f"{report}\n" + "\n".join(problems)
    planned = subprocess.run(_command(workdir, "-n"), env=_env(), capture_output=True, text=True)
    assert "Nothing to be done" in planned.stdout + planned.stderr, report


def test_a_killed_writers_leftovers_are_removed_by_the_next_writer(tmp_path):
    """SIGKILL leaves the temp name behind; the next write of the same output removes it (and
    nothing that belongs to another output, such as the side checkpoint's temp file)."""
    from pcam_core.common.atomic_output import atomic_directory, write_text

    for leftover in (".model.pt.k1ll3d_x.tmp", ".1-of-2.h5.abcdefgh.tmp", ".1-of-2.old-4242"):
        (tmp_path / leftover).mkdir() if "old" in leftover else (tmp_path / leftover).write_text("half")
    (tmp_path / ".1-of-2.q9w8e7r6.tmp").mkdir()
    (tmp_path / ".model.pt.ckpt.abcdefgh.tmp").write_text("another output's")
    write_text(tmp_path / "model.pt", "done")
    write_text(tmp_path / "1-of-2.h5", "done")
    with atomic_directory(tmp_path / "1-of-2") as folder:
        (folder / "a.png").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".model.pt.ckpt.abcdefgh.tmp", "1-of-2", "1-of-2.h5", "model.pt"]
