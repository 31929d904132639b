"""Shared pytest setup: CPU-only, one thread per test process, no progress bars."""

import os

os.environ.setdefault("PCAM_NO_PROGRESS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
