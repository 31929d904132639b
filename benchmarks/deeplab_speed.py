"""DeepLabv3+ speed: training images/s (forward + CE loss + backward + Nesterov SGD step) and
full-resolution inference images/s.

    .venv/bin/python benchmarks/deeplab_speed.py [--device auto] [--threads 2] [--steps 5]

CPU: the demo settings (resnet18; batch 16 crop 128 as first drafted, batch 8 crop 64 as
recommended) and inference on a 120x120 image.
CUDA (when present): the paper setting (resnet101, batch 16, crop 513) in fp32 and in bf16
autocast + channels_last, as train-deeplab runs it, plus 500x375 inference.

Data loading is left out (random images and labels prepared once), so the numbers are the
model's ceiling; the training log's images_per_s includes the DataLoader.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from pcam_core.deeplab.model import DeepLabV3Plus
from throughput import items_per_second

from pcam_core.common.training_loop import autocast_for, pick_device, set_cpu_threads
from pcam_core.data.voc_reader import NUM_OBJECT_CLASSES as VOC_OBJECT_CLASSES  # VOC-sized heads


def _model(depth: str, device: torch.device, channels_last: bool) -> DeepLabV3Plus:
    torch.manual_seed(0)
    model = DeepLabV3Plus(depth, num_classes=VOC_OBJECT_CLASSES + 1).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def training_rate(depth: str, batch: int, crop: int, device: torch.device, steps: int,
                  bf16: bool) -> float:
    model = _model(depth, device, channels_last=bf16).train()
    optimizer = torch.optim.SGD(model.param_groups(0.007), lr=0.007, momentum=0.9,
                                nesterov=True, weight_decay=4e-5)
    images = torch.randn(batch, 3, crop, crop, device=device)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 21, (batch, crop, crop), device=device)

    def step() -> None:
        with autocast_for(device, enabled=bf16):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return items_per_second(step, steps, batch, device)


@torch.no_grad()
def inference_rate(depth: str, size: tuple[int, int], device: torch.device, images: int,
                   bf16: bool) -> float:
    model = _model(depth, device, channels_last=bf16).eval()
    x = torch.randn(1, 3, *size, device=device)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with autocast_for(device, enabled=bf16):
            model(x).float().argmax(1)

    return items_per_second(run, images, 1, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads; on a shared host also set OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    device = pick_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    # config.yaml's first draft (batch 16, crop 128, 1500 iterations) and the values
    # recommended from the demo measurements (batch 8, crop 64, 200 iterations).
    for batch, crop, iterations in ((16, 128, 1500), (8, 64, 200)):
        rate = training_rate("resnet18", batch, crop, device, args.steps, bf16=False)
        print(f"demo train  resnet18 batch {batch:2d} crop {crop:3d} fp32: {rate:8.1f} images/s "
              f"({iterations} iterations ~ {iterations * batch / rate:.0f} s)")
    rate = inference_rate("resnet18", (120, 120), device, 4 * args.steps, bf16=False)
    print(f"demo infer  resnet18 120x120 fp32:           {rate:8.1f} images/s")
    if device.type != "cuda":
        print("CUDA not available: 513x513 bf16/fp32 comparison skipped")
        return
    for bf16 in (False, True):
        name = "bf16+channels_last" if bf16 else "fp32"
        rate = training_rate("resnet101", 16, 513, device, args.steps, bf16=bf16)
        print(f"paper train resnet101 batch 16 crop 513 {name:18s}: {rate:8.1f} images/s "
              f"(30k iterations ~ {30000 * 16 / rate / 3600:.1f} h)")
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"    peak GPU memory so far {peak:.1f} GiB")
        rate = inference_rate("resnet101", (375, 500), device, 10 * args.steps, bf16=bf16)
        print(f"paper infer resnet101 375x500 {name:18s}:           {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
