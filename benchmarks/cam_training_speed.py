"""CAM training speed: images/s of a PCAM step (forward, Eq. 5 loss with points, backward, SGD).

    .venv/bin/python benchmarks/cam_training_speed.py [--device auto] [--threads 2] [--steps 5]

On CUDA: resnet50, batch 16, 512x512 crops (the paper's setting), bf16 autocast +
channels_last against plain fp32. On the CPU: the demo setting (resnet18, batch 16, crops 128 and 64; from scratch, as the demo
trains, and in the pretrained layout for comparison).
Data loading is left out (one random batch, reused), so this is the model's ceiling; the
training log's images/s includes the DataLoader.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from pcam_core.cam.loss import cam_loss
from pcam_core.cam.net import CamNet
from pcam_core.common.training_loop import autocast_for, pick_device, set_cpu_threads
from pcam_core.data.voc_reader import NUM_OBJECT_CLASSES as VOC_OBJECT_CLASSES  # VOC-sized heads


def measure(depth: str, batch: int, crop: int, device: torch.device, fast: bool, steps: int,
            frozen: bool = True) -> tuple[float, float]:
    """(images/s, process CPU seconds per image); ``frozen`` = IRN's pretrained network,
    else the from-scratch demo network (every layer trains, so backward costs more)."""
    torch.manual_seed(0)
    model = CamNet(depth, num_classes=VOC_OBJECT_CLASSES, frozen=frozen).to(device)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    backbone, classifier = model.param_groups()
    optimizer = torch.optim.SGD([{"params": backbone, "lr": 1e-3}, {"params": classifier, "lr": 1e-2}],
                                momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch, 3, crop, crop, device=device)
    if fast:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = (torch.rand(batch, 20, device=device) < 0.1).float()
    labels[:, 0] = 1
    points = torch.zeros(batch, 4, 3, device=device)
    points[..., 0] = torch.randint(0, crop, (batch, 4), device=device).float()
    points[..., 1] = torch.randint(0, crop, (batch, 4), device=device).float()
    points[..., 2] = 1
    counts = torch.full((batch,), 3, device=device)

    def step():
        with autocast_for(device, enabled=fast):
            logits, cam = model(images, with_cam=True)
        loss = cam_loss(logits, cam, labels, 0.1, points, counts, (crop, crop)).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):  # warm-up: cuDNN autotune, allocator
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    images = batch * steps
    return images / (time.perf_counter() - start), (time.process_time() - cpu_start) / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crops", type=int, nargs="+", default=[128, 64], help="demo crop sizes")
    args = parser.parse_args()
    device = pick_device(args.device)
    set_cpu_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        fp32, _ = measure("resnet50", 16, 512, device, fast=False, steps=args.steps)
        bf16, _ = measure("resnet50", 16, 512, device, fast=True, steps=args.steps)
        print(f"{torch.cuda.get_device_name(device)}: resnet50, batch 16, crop 512: fp32 {fp32:.1f} images/s, "
              f"bf16 + channels_last {bf16:.1f} images/s ({bf16 / fp32:.2f}x)")
        for crop in args.crops:
            demo, _ = measure("resnet18", 16, crop, device, fast=True, steps=args.steps, frozen=False)
            print(f"demo setting (resnet18 from scratch, batch 16, crop {crop}), bf16 + channels_last: "
                  f"{demo:.1f} images/s")
    else:
        print(f"CPU, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
              "(the machine may be shared: CPU-s/image is the steadier figure)")
        for crop in args.crops:
            for frozen in (False, True):
                rate, cpu = measure("resnet18", 16, crop, device, fast=False, steps=args.steps, frozen=frozen)
                kind = "pretrained layout (frozen to layer2)" if frozen else "from scratch (demo: all layers train)"
                print(f"  resnet18 {kind}, batch 16, crop {crop}, fp32: {rate:.1f} images/s, "
                      f"{cpu:.3f} CPU-s/image")


if __name__ == "__main__":
    main()
