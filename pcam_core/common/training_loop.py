"""What every training stage shares: device and precision, poly LR, auto-resume, logs.

Each stage (CAM net, IRNet, DeepLab) owns its model, data and loss; this module owns the
mechanics so that all three resume, log and checkpoint the same way:

* a side checkpoint (``<output>.ckpt``) every N steps, written atomically; a restart of the
  same command continues from it (DINO-style auto-resume, idempotent under SLURM requeue or
  Snakemake ``--retries``);
* the declared output is written once, at the end, atomically; the side file is then removed;
* a NaN or Inf loss stops the run before its optimizer step (``Checkpointer.check_loss``), and
  no checkpoint or output is written from non-finite weights: the last good side file stays;
* a JSON-lines log (step, loss terms, lr, images/s); progress is pcam_core/common/progress.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcam_core.common.atomic_output import atomic_path


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` = the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain fp32 on CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_seed_fn(worker_id: int) -> None:
    """DataLoader worker init: derive numpy/random seeds from torch's per-worker seed.

    Workers ignore SIGTERM: Slurm signals every process of the job, and a worker that died
    on it would make the main process fail on its next batch before it could checkpoint.
    They end with the main process (SIGKILL follows the grace period in any case)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def set_cpu_threads(threads: int) -> None:
    """Use the threads Snakemake gave the job (it also exports OMP_NUM_THREADS)."""
    if threads > 0:
        torch.set_num_threads(threads)


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """lr_t = lr_0 (1 - t/T)^power, t = 0..T-1 (IRN and DeepLab both step it per iteration)."""
    return base_lr * (1.0 - step / total_steps) ** power


def apply_poly_lr(optimizer: torch.optim.Optimizer, step: int, total_steps: int,
                  power: float = 0.9) -> float:
    """Set every group's lr from its ``initial_lr``; returns the first group's lr (for logs)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = poly_lr(group["initial_lr"], step, total_steps, power)
    return optimizer.param_groups[0]["lr"]


# Exit status of a training stopped by SIGTERM after writing its checkpoint: 128 + 15, what a
# shell reports for a process SIGTERM ended, so Snakemake and Slurm see the job failed (and
# requeue or rerun it) while the side file lets the rerun continue.
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


class NonFiniteTraining(FloatingPointError):
    """A training met a NaN or Inf loss or weights: stopped, with the last good checkpoint kept."""


class Checkpointer:
    """Side-file checkpoints with automatic resume.

    ``state`` holds whatever the stage needs to continue exactly (model, optimizer, step,
    RNG states). The side file sits beside the declared output so that it survives a killed
    job and is found again by the restarted one.

    SIGTERM (what Slurm sends at the wall time or a preemption, some seconds before SIGKILL;
    Slurm's default grace is 30 s) does not end the process at once: the running step
    finishes, :meth:`due` then says a checkpoint is due, and :meth:`save` writes it and exits
    with status 143. So at most the step in flight is lost, not a checkpoint interval.
    """

    def __init__(self, output: str | Path, every_steps: int, command: str | None = None, hint: str = ""):
        """``command`` (train-cam, ...) names the stage in messages and fingerprints its code;
        ``hint`` says what to change when the training diverges."""
        self.output = Path(output)
        self.side_file = self.output.with_name(self.output.name + ".ckpt")
        self.every_steps = max(1, int(every_steps))
        self.stage = command or "training"
        self.hint = hint
        self.kept_step: int | None = None  # the step of a side file this run resumed or wrote
        self.step: int | None = None  # the step whose loss was checked last
        # The code a side file was written by: a checkpoint of other code is never resumed
        # (an edit between a kill and the rerun would otherwise mix two versions in one run).
        self.code = None
        if command is not None:
            from pcam_core.common.code_fingerprint import command_fingerprint

            self.code = command_fingerprint(command)
        self.stop_requested = False
        self.finished = False
        self._previous_handler = None
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            self._previous_handler = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _sigterm_handler(weakref.ref(self), self._previous_handler))

    def request_stop(self) -> None:
        self.stop_requested = True
        print(f"pcam: SIGTERM received; writing a checkpoint after the current step to "
              f"{self.side_file}", file=sys.stderr, flush=True)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_handler)

    def load(self, map_location: str | torch.device = "cpu", fingerprint: str | None = None
             ) -> dict[str, Any] | None:
        """The side checkpoint to resume from; None when there is none, or other code or (given
        ``fingerprint``, the stage's settings and inputs) other settings wrote it."""
        if not self.side_file.exists():
            return None
        state = torch.load(self.side_file, map_location=map_location, weights_only=False)
        if self.code is not None and state.get("code") != self.code:
            print(f"pcam: ignoring {self.side_file}: written by other pcam code "
                  f"({state.get('code')} vs {self.code}); starting over", file=sys.stderr)
            return None
        if fingerprint is not None and state.get("fingerprint") != fingerprint:
            print(f"{self.stage}: ignoring {self.side_file} (written with other settings or inputs); "
                  "starting over", file=sys.stderr)
            return None
        self.kept_step = state.get("step")
        return state

    def check_loss(self, step: int, loss: torch.Tensor, terms: dict[str, Any] | None = None) -> None:
        """Stop before the optimizer step of ``step`` (counted from 1, as the log) when its loss is
        NaN or Inf: NonFiniteTraining naming the stage, the step, the terms and what is kept.

        One ``isfinite`` of the total per step: on a GPU a sync, as the ``.item()`` that logs the
        loss is anyway. A non-finite term makes the (weighted) total non-finite too, so ``terms``
        (name -> tensor, float or None) are only read to name the culprit.
        """
        self.step = step
        if bool(torch.isfinite(loss.detach())):
            return
        values = {"loss": loss, **(terms or {})}
        numbers = {name: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
                   for name, value in values.items() if value is not None}
        found = ", ".join(f"{name} = {value}" for name, value in numbers.items() if not math.isfinite(value))
        raise NonFiniteTraining(self._stop_message(f"the loss is not finite at step {step} ({found}); "
                                                   "stopped before its optimizer step"))

    def _check_finite(self, state: dict[str, Any], step: int | None) -> None:
        """Refuse to write weights (or optimizer state) holding NaN or Inf: a finite loss can
        still end in a non-finite update."""
        bad = _first_non_finite(state)
        if bad is not None:
            after = f"step {step}" if step is not None else "the last step"
            raise NonFiniteTraining(self._stop_message(
                f"{bad} holds NaN or Inf after {after} (its loss was finite, its update was not); "
                "nothing was written"))

    def _stop_message(self, what: str) -> str:
        """The stage, what went wrong, which checkpoint is kept and what a rerun does, the hint."""
        if self.kept_step is not None:
            kept = (f"Kept: the side checkpoint {self.side_file} of step {self.kept_step}, the last good "
                    "state. A rerun with the same settings resumes from it (and likely fails the same "
                    "way); a rerun with other training settings (say a lower learning rate) ignores it, "
                    "as it matches its own settings only, and starts over")
        elif self.side_file.exists():
            kept = (f"No checkpoint of this run exists yet ({self.side_file} is from other settings or "
                    "code and is not resumed); a rerun starts over")
        else:
            kept = (f"No side checkpoint exists yet (the first is written after step {self.every_steps}); "
                    "a rerun starts over")
        return f"{self.stage}: {what}. {kept}." + (f" {self.hint}" if self.hint else "")

    def due(self, step: int) -> bool:
        """True after every ``every_steps``-th completed step, and after any step once SIGTERM
        has arrived."""
        return self.stop_requested or (step > 0 and step % self.every_steps == 0)

    def save(self, state: dict[str, Any]) -> None:
        """Write the side checkpoint; after a SIGTERM, then exit with status 143."""
        self._check_finite(state, state.get("step", self.step))
        if self.code is not None:
            state = {**state, "code": self.code}
        with atomic_path(self.side_file) as tmp:
            save_torch_file(state, tmp)
        if "step" in state:
            self.kept_step = int(state["step"])
        if self.stop_requested:
            print(f"pcam: stopped by SIGTERM at step {state.get('step', '?')}; checkpoint in "
                  f"{self.side_file}; rerunning the job resumes from it", file=sys.stderr, flush=True)
            raise SystemExit(SIGTERM_EXIT_STATUS)

    def finish(self, final_state: dict[str, Any]) -> None:
        """Write the declared output once, then drop the side file."""
        self._check_finite(final_state, self.step)
        with atomic_path(self.output) as tmp:
            save_torch_file(final_state, tmp)
        self.side_file.unlink(missing_ok=True)
        self.finished = True
        self._restore_handler()


def save_torch_file(state: Any, path: Path) -> None:
    """torch.save through an open file: given a path, torch names the archive's inner folder
    after the file, here a random temp name, so two identical models differed byte for byte."""
    with open(path, "wb") as handle:
        torch.save(state, handle)


def _first_non_finite(value: Any, name: str = "") -> str | None:
    """The name of the first floating tensor in a (nested) state holding NaN or Inf, or None."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name or "a tensor"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        bad = _first_non_finite(item, f"{name}.{key}" if name else str(key))
        if bad is not None:
            return bad
    return None


def _sigterm_handler(checkpointer: weakref.ref, previous):
    """SIGTERM while a training runs: ask it to checkpoint and stop. Once that training is
    over (finished, or gone after an exception), the signal has its usual effect again."""
    def on_sigterm(signum, frame):
        trainer = checkpointer()
        if trainer is not None and not trainer.finished:
            trainer.request_stop()
            return
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    return on_sigterm


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingLog:
    """JSON-lines training log; appends, so a resumed run keeps the earlier lines."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last_time = time.perf_counter()

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def images_per_second(self, images: int) -> float:
        now = time.perf_counter()
        rate = images / max(now - self._last_time, 1e-9)
        self._last_time = now
        return rate


def infinite_batches(loader):
    """Cycle a DataLoader forever (training is counted in steps, not epochs)."""
    while True:
        yield from loader
