"""gpu_visible: a driver's GPU list or ROCm's node, unless CUDA_VISIBLE_DEVICES hides all."""

from __future__ import annotations

import pytest

from pcam_core.common.compute_devices import gpu_visible


@pytest.fixture
def machine(tmp_path):
    """An empty NVIDIA GPU list and no ROCm node: a machine without a GPU."""
    (tmp_path / "gpus").mkdir()
    return {"nvidia_gpus": tmp_path / "gpus", "rocm_node": tmp_path / "kfd"}


def test_no_gpu(machine):
    assert not gpu_visible({}, **machine)
    machine["nvidia_gpus"].rmdir()  # no NVIDIA driver at all
    assert not gpu_visible({}, **machine)


def test_nvidia_gpu_unless_hidden(machine):
    (machine["nvidia_gpus"] / "0000:17:00.0").mkdir()
    assert gpu_visible({}, **machine)
    assert gpu_visible({"CUDA_VISIBLE_DEVICES": "1"}, **machine)
    assert not gpu_visible({"CUDA_VISIBLE_DEVICES": ""}, **machine)
    assert not gpu_visible({"CUDA_VISIBLE_DEVICES": " -1 "}, **machine)


def test_rocm_node(machine):
    machine["rocm_node"].write_text("")
    assert gpu_visible({}, **machine)
