"""One GPU per job on a workstation with several GPUs.

Snakemake's ``--resources gpu=N`` only counts: it lets N GPU jobs run at once but never says
which device each should use, so every job would open ``cuda:0``. So a GPU job claims a
device itself, before torch touches CUDA: it takes an exclusive ``flock`` on a per-device
lock file, the first free one among the devices it may see, and then narrows
``CUDA_VISIBLE_DEVICES`` to that device, which torch calls ``cuda:0``.

* The devices it may see are those of ``CUDA_VISIBLE_DEVICES`` when set (by Slurm, which
  already gave the job its own GPU, or by the user), else every GPU the NVIDIA driver lists.
  No GPU: nothing is claimed and ``auto`` runs on the CPU.
* The kernel drops a ``flock`` when its process ends, however it ends (a kill included), so
  a crashed job never leaves a device taken.
* Locks are per machine (``/tmp`` by default, ``PCAM_GPU_LOCK_DIR`` to change): jobs of two
  Snakemake runs on one workstation also share the GPUs fairly. When every device is taken
  (more GPU jobs than ``--resources gpu=N`` allows, or another run), the job waits for one.
* ``--device cuda:N`` names a device explicitly: it is used as given, without a lock.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

from pcam_core.common.compute_devices import NVIDIA_GPUS

LOCK_DIR_VARIABLE = "PCAM_GPU_LOCK_DIR"
WAIT_MESSAGE_EVERY_S = 60.0
_held: list = []  # open lock files of this process: a claim lasts as long as the process


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_VARIABLE) or f"/tmp/pcam-gpu-locks-{os.getuid()}")


def visible_gpus(environ: MutableMapping[str, str] = os.environ,
                 nvidia_gpus: Path = NVIDIA_GPUS) -> list[str]:
    """The device tokens a job may use: CUDA_VISIBLE_DEVICES's entries (up to the first
    invalid one, as CUDA reads it) or the driver's GPU indices."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        tokens = []
        for token in (t.strip() for t in visible.split(",")):
            if not token or token.startswith("-"):
                break  # CUDA ignores this entry and every one after it
            tokens.append(token)
        return tokens
    if nvidia_gpus.is_dir():
        return [str(i) for i in range(sum(1 for _ in nvidia_gpus.iterdir()))]
    return []


def _lock_name(token: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", token) + ".lock"


def _try_lock(path: Path):
    import fcntl

    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def claim_gpu(environ: MutableMapping[str, str] = os.environ, lock_dir: Path | None = None,
              nvidia_gpus: Path = NVIDIA_GPUS, poll_s: float = 1.0) -> str | None:
    """Lock a free visible GPU for this process and narrow CUDA_VISIBLE_DEVICES to it.

    Returns the claimed token, or None when there is no GPU (or only one, which needs no
    choosing). Blocks, polling, while every visible GPU is locked by other processes.
    """
    devices = visible_gpus(environ, nvidia_gpus)
    if len(devices) < 2:
        return None
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited, last_message = 0.0, 0.0
    while True:
        for token in devices:
            handle = _try_lock(lock_dir / _lock_name(token))
            if handle is not None:
                _held.append(handle)
                environ["CUDA_VISIBLE_DEVICES"] = token
                if waited:
                    print(f"pcam: GPU {token} free after {waited:.0f} s", file=sys.stderr)
                return token
        if waited - last_message >= WAIT_MESSAGE_EVERY_S or not waited:
            print(f"pcam: all {len(devices)} GPUs ({', '.join(devices)}) are in use by other jobs; "
                  f"waiting (locks in {lock_dir})", file=sys.stderr)
            last_message = waited
        time.sleep(poll_s)
        waited += poll_s


def claim_for(device: str, environ: MutableMapping[str, str] = os.environ, **kwargs) -> str | None:
    """Claim a GPU for a ``--device`` value: ``auto`` and ``cuda`` choose one; ``cpu`` and
    an explicit ``cuda:N`` are left alone."""
    if device not in ("auto", "cuda"):
        return None
    token = claim_gpu(environ, **kwargs)
    if token is not None:
        print(f"pcam: using GPU {token} (CUDA_VISIBLE_DEVICES={token})", file=sys.stderr)
    return token
