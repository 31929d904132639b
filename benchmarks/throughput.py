"""Items per second of a repeated call, timed the same way by every speed benchmark.

One warm-up call first (allocator, cuDNN autotuning, lazy imports), and a device
synchronisation around the timed loop, since CUDA work is asynchronous.
"""

from __future__ import annotations

import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def items_per_second(call: Callable[[], object], repeats: int, items_per_call: int,
                     device: torch.device) -> float:
    call()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    synchronize(device)
    return repeats * items_per_call / (time.perf_counter() - start)
