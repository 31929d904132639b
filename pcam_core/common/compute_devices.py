"""Which compute devices this machine shows, asked without importing torch.

The workflow asks this once per DAG build to decide whether stage jobs take a ``gpu`` slot
(workflow/rules/common.smk); importing torch for it would cost every ``snakemake`` call,
dry runs included, about 2 s. A driver that is present but unusable by torch only costs
concurrency: the jobs then run one at a time, as on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the NVIDIA driver sees
ROCM_NODE = Path("/dev/kfd")  # AMD's compute node; ROCm builds of torch call these GPUs cuda


def gpu_visible(environ: Mapping[str, str] = os.environ, nvidia_gpus: Path = NVIDIA_GPUS,
                rocm_node: Path = ROCM_NODE) -> bool:
    """Whether a GPU is present and ``CUDA_VISIBLE_DEVICES`` (set by Slurm or the user)
    does not hide every one."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return (nvidia_gpus.is_dir() and any(nvidia_gpus.iterdir())) or rocm_node.exists()
