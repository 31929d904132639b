"""The CUDA code paths: walk on CUDA = walk on CPU, bf16 CAMs against fp32, one bf16 +
channels_last training step per network, how far the same training twice differs, one GPU
per job.

Marked ``cuda``: collected everywhere, skipped without a CUDA device. benchmarks/gpu_suite.py
runs them on the lent GPU (``pytest -m cuda``); with ``PCAM_CUDA_REPORT`` set, measurements
are appended to that JSON file for the suite's table.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")]

# The device under test; a constant so that the test bodies can be dry-run on a CPU by hand.
DEVICE = torch.device("cuda")
# float32 through 256 averaging steps: the spec expects ~1e-6 (§5.6); 1e-5 of the peak.
WALK_TOLERANCE = 1e-5


def report(item: str, result: str, goal: str = "", status: str = "info", why: str = "") -> None:
    """Append a measurement for gpu_suite's table (no-op outside the suite)."""
    path = os.environ.get("PCAM_CUDA_REPORT")
    if not path:
        return
    items = json.loads(Path(path).read_text()) if Path(path).exists() else []
    items.append({"item": item, "result": result, "goal": goal, "status": status, "why": why})
    Path(path).write_text(json.dumps(items, indent=1))


# ----------------------------------------------------------------------------- random walk
@pytest.mark.parametrize("method", ["shift", "csr"])
def test_walk_on_cuda_equals_the_cpu_walk(method):
    from random_walk import make_inputs  # benchmarks/: CAM blobs behind closed 0.999 walls

    from pcam_core.irn.random_walk import propagate

    errors = []
    for seed, (h, w) in enumerate([(47, 63), (94, 125)]):
        cams, boundary = make_inputs(h, w, seed=seed)
        cpu = propagate(cams, boundary, beta=12, exp_times=8, method="shift")
        gpu = propagate(cams.to(DEVICE), boundary.to(DEVICE), beta=12, exp_times=8, method=method)
        assert gpu.device.type == DEVICE.type and gpu.dtype == torch.float32
        errors.append(float((gpu.cpu() - cpu).abs().max() / cpu.abs().max()))
    report(f"walk CUDA {method} vs CPU", f"max diff {max(errors):.1e} of the peak",
           goal=f"<= {WALK_TOLERANCE:g}", status="pass" if max(errors) <= WALK_TOLERANCE else "FAIL",
           why="94x125 and 47x63 grids, K=3, beta 12, 256 steps")
    assert max(errors) <= WALK_TOLERANCE, errors


def test_batched_walk_on_cuda_equals_per_image_cpu_walks():
    from random_walk import make_inputs

    from pcam_core.irn.random_walk import propagate, propagate_batch

    inputs = [make_inputs(30, 40, seed=s) for s in range(3)]
    cams = torch.stack([c for c, _ in inputs]).to(DEVICE)
    boundaries = torch.stack([b for _, b in inputs]).to(DEVICE)
    batched = propagate_batch(cams, boundaries, beta=12, exp_times=8).cpu()  # auto: csr on CUDA
    for k, (c, b) in enumerate(inputs):
        cpu = propagate(c, b, beta=12, exp_times=8)
        assert float((batched[k] - cpu).abs().max() / cpu.abs().max()) <= WALK_TOLERANCE


# ----------------------------------------------------------------------------- bf16 CAMs
def test_bf16_cams_against_fp32_cams():
    """Measured and reported, not judged: the spec approved bf16 only for IRN's frozen
    backbone, while export-cams runs the CAM network under bf16 autocast on CUDA."""
    from pcam_core.cam.export import compute_maps, scaled_inputs
    from pcam_core.cam.net import CamNet
    from pcam_core.data.demo_dataset import render_image
    from pcam_core.irn.ir_labels import threshold_argmax

    device = DEVICE
    torch.manual_seed(0)
    model = CamNet("resnet50", num_classes=20).eval().to(device).to(memory_format=torch.channels_last)
    classes = [1, 3, 8, 12, 15]  # the demo's five classes: an argmax among several maps
    agreement, threshold_agreement, max_diff = [], [], 0.0
    for seed in range(3):
        rgb = render_image(np.random.default_rng(seed), 375, 500).rgb
        inputs = scaled_inputs(rgb, (1.0, 0.5, 1.5, 2.0))
        cam16, high16 = compute_maps(model, inputs, rgb.shape[:2], classes, device)
        from gpu_suite import autocast_off
        import pcam_core.cam.export as export

        with autocast_off(export):
            cam32, high32 = compute_maps(model, inputs, rgb.shape[:2], classes, device)
        assert cam16.shape == cam32.shape and high16.shape == high32.shape
        assert np.isfinite(high16).all() and high16.min() >= 0 and high16.max() <= 1
        max_diff = max(max_diff, float(np.abs(high16 - high32).max() / max(high32.max(), 1e-12)))
        agreement.append(float((high16.argmax(0) == high32.argmax(0)).mean()))
        # What the pipeline cuts: background plane at PCAM's 0.30, then the argmax.
        threshold_agreement.append(float((threshold_argmax(high16, 0.30) == threshold_argmax(high32, 0.30)).mean()))
    report("bf16 vs fp32 CAMs", f"argmax agreement {min(agreement):.4f}, thresholded (0.30) "
                                f"{min(threshold_agreement):.4f}, max diff {max_diff:.1e} of the peak",
           why="resnet50 with random weights, 3 VOC-sized demo images, 4 scales x flip; the spec approved "
               "bf16 only for IRN's frozen backbone (export-cams uses it for CAMs too): re-measure on a trained net")
    assert min(agreement) > 0.5  # a gross failure only; the figure itself is reported


def test_bf16_boundary_against_fp32():
    """IRN's frozen backbone in bf16, the use the spec approved: the boundary map's change."""
    import pcam_core.irn.net as irn_net
    from pcam_core.data.demo_dataset import render_image

    device = DEVICE
    torch.manual_seed(0)
    model = irn_net.IRNetBoundary("resnet50").to(device).eval().use_channels_last()
    rgb = render_image(np.random.default_rng(0), 375, 500).rgb
    bf16 = irn_net.infer_boundary(model, rgb, device)
    saved = irn_net.autocast_for
    irn_net.autocast_for = lambda device, enabled=True: contextlib.nullcontext()
    try:
        fp32 = irn_net.infer_boundary(model, rgb, device)
    finally:
        irn_net.autocast_for = saved
    diff = float(np.abs(bf16 - fp32).max())
    report("bf16 vs fp32 boundary", f"max abs diff {diff:.1e}", why="IRNet resnet50, random heads, 375x500")
    assert np.isfinite(bf16).all() and diff < 0.5


# ----------------------------------------------------------------------------- training steps
def _cam_step(device):
    from pcam_core.cam.loss import cam_loss
    from pcam_core.cam.net import CamNet

    model = CamNet("resnet50", num_classes=20).to(device).to(memory_format=torch.channels_last)
    backbone, classifier = model.param_groups()
    optimizer = torch.optim.SGD([{"params": backbone}, {"params": classifier}], lr=0.01, momentum=0.9)
    batch, crop = 2, 256
    images = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(batch, 20, device=device)
    labels[:, [0, 14]] = 1
    points = torch.tensor([[[40.0, 50.0, 1], [200.0, 100.0, 15]]] * batch, device=device)
    counts = torch.full((batch,), 2, device=device)

    def loss_fn():
        logits, cam = model(images, with_cam=True)
        assert logits.dtype == (torch.bfloat16 if device.type == "cuda" else torch.float32)  # autocast
        return cam_loss(logits, cam, labels, 0.1, points, counts, (crop, crop)).total

    return model, optimizer, loss_fn, model.classifier.weight


def _irn_step(device):
    from irn_speed import _labels  # benchmarks/: blocky labels giving every kind of pair

    from pcam_core.irn.net import IRNetBoundary
    from pcam_core.irn.path_index import PathIndex, affinity_from_boundary
    from pcam_core.irn.training import affinity_loss

    model = IRNetBoundary("resnet50").to(device).train().use_channels_last()
    optimizer = torch.optim.SGD(model.edge_parameters(), lr=0.1)
    path_index = PathIndex(10)
    images = torch.randn(2, 3, 256, 256, device=device)
    masks = _labels(2, 256, path_index, device)

    def loss_fn():
        boundary = torch.sigmoid(model(images).float())
        return affinity_loss(affinity_from_boundary(boundary, path_index), *masks)[0]

    return model, optimizer, loss_fn, model.edge6.weight


def _deeplab_step(device):
    import torch.nn.functional as F

    from pcam_core.deeplab.model import DeepLabV3Plus

    model = DeepLabV3Plus("resnet101", num_classes=21).to(device).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.param_groups(0.007), lr=0.007, momentum=0.9, nesterov=True)
    images = torch.randn(2, 3, 257, 257, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 21, (2, 257, 257), device=device)
    labels[:, :8] = 255

    def loss_fn():
        return F.cross_entropy(model(images).float(), labels, ignore_index=255)

    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad)
    return model, optimizer, loss_fn, conv.weight


@pytest.mark.parametrize("network", ["cam", "irn", "deeplab"])
def test_one_bf16_channels_last_training_step(network):
    from pcam_core.common.training_loop import autocast_for

    device = DEVICE
    torch.manual_seed(0)
    model, optimizer, loss_fn, watched = {"cam": _cam_step, "irn": _irn_step, "deeplab": _deeplab_step}[network](device)
    before = watched.detach().clone()
    with autocast_for(device):
        loss = loss_fn()
    assert loss.dtype == torch.float32 and torch.isfinite(loss), loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    assert watched.dtype == torch.float32  # master weights stay fp32 under autocast
    assert not torch.equal(before, watched.detach())
    if watched.dim() == 4 and watched.shape[-1] > 1:  # 3x3 convolutions keep NHWC
        assert watched.is_contiguous(memory_format=torch.channels_last)


def _train_steps(network: str, device: torch.device, steps: int) -> tuple[list[float], dict]:
    """``steps`` bf16 + channels_last steps from seed 0: the losses and the final weights."""
    from pcam_core.common.training_loop import autocast_for

    torch.manual_seed(0)
    model, optimizer, loss_fn, _ = {"cam": _cam_step, "irn": _irn_step, "deeplab": _deeplab_step}[network](device)
    for group in optimizer.param_groups:  # random images, untrained heads: at the one-step test's
        group["lr"] *= 0.1                # rate the CAM loss reaches NaN by step 4 (on CPU too)
    losses = []
    for _ in range(steps):
        with autocast_for(device):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses, {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("network", ["cam", "irn", "deeplab"])
def test_the_same_training_twice_on_cuda(network):
    """Issue 12's bound on GPU nondeterminism: on the CPU the same seed gives the same bits (the
    workflow's determinism test); cuDNN's backward kernels and atomics may not. Measured here on
    4 steps of each network: whether the weights are bit-identical, and the largest difference.
    1e-2 of the loss would be a bug (say an unseeded draw), not kernel order."""
    steps = 4
    first_losses, first = _train_steps(network, DEVICE, steps)
    second_losses, second = _train_steps(network, DEVICE, steps)
    identical = all(torch.equal(first[k], second[k]) for k in first)
    weight_diff = max(float((first[k] - second[k]).abs().max()) if first[k].numel() else 0.0 for k in first)
    loss_diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(first_losses, second_losses))
    report(f"{network}: the same {steps} bf16 steps twice",
           "bit-identical weights" if identical else
           f"weights differ by <= {weight_diff:.1e}, losses by <= {loss_diff:.1e} (relative)",
           goal="differences of kernel order only (< 1e-2 of the loss)", status="pass" if loss_diff < 1e-2 else "FAIL",
           why="cudnn.deterministic off (pcam's default)")
    assert all(np.isfinite(first_losses + second_losses))
    assert loss_diff < 1e-2, (first_losses, second_losses)


# ----------------------------------------------------------------------------- devices per job
CLAIMING_JOB = textwrap.dedent("""
    import os, sys, time
    from pcam_core.common.gpu_lock import claim_for
    claim_for("auto", lock_dir=sys.argv[1], poll_s=0.05)
    import torch
    print(os.environ.get("CUDA_VISIBLE_DEVICES", ""), torch.cuda.device_count(),
          torch.cuda.get_device_properties(0).uuid, flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _job(lock_dir: Path, hold_s: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-c", CLAIMING_JOB, str(lock_dir), str(hold_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_single_job_on_one_gpu_claims_nothing_and_sees_it(tmp_path):
    if torch.cuda.device_count() != 1:
        pytest.skip(f"{torch.cuda.device_count()} GPUs visible: this is the one-GPU case")
    token, count, _ = _job(tmp_path, 0).communicate(timeout=120)[0].split(maxsplit=2)
    assert int(count) == 1
    assert not list(tmp_path.iterdir())  # no lock taken: one GPU needs no choosing


def test_two_jobs_get_different_devices(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip(f"{torch.cuda.device_count()} GPU visible: assigning devices to jobs needs two "
                    "(on a one-GPU machine this is skipped)")
    jobs = [_job(tmp_path, 3) for _ in range(2)]
    seen = [job.communicate(timeout=120)[0].split() for job in jobs]
    tokens, counts, uuids = zip(*seen)
    assert len(set(tokens)) == 2 and all(int(c) == 1 for c in counts)
    assert len(set(uuids)) == 2  # different physical devices, not just different names
    report("device per job", f"two jobs got devices {sorted(tokens)}", goal="different devices", status="pass")
