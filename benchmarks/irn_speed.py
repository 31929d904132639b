"""IRNet speed: training images/s (forward + affinities + loss + backward + SGD step) and
whole-image boundary inference images/s (flip TTA), at the demo size and, on CUDA, at 512².

    .venv/bin/python benchmarks/irn_speed.py [--device auto] [--threads 2] [--steps 5]

Data loading is left out (random images and labels prepared once), so the numbers are the
model's ceiling; the training log's images/s includes the DataLoader.

On a CPU shared with other busy processes, run it both plain and with
OMP_WAIT_POLICY=PASSIVE: libgomp's spinning threads then slow the many small ops of a
training step by an order of magnitude (measured here: 4.5 vs 48-76 images/s at load ~3).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pcam_core.irn.training import affinity_loss
from pcam_core.irn.net import IRNetBoundary, infer_boundary
from pcam_core.irn.path_index import PathIndex, affinity_from_boundary, affinity_labels, downsample_label
from throughput import items_per_second

from pcam_core.common.training_loop import pick_device, set_cpu_threads

# (name, depth, batch, crop, radius, inference image H x W)
DEMO = ("demo: resnet18, batch 16, crop 128, r 10; infer 120x120", "resnet18", 16, 128, 10, (120, 120))
PAPER = ("paper: resnet50, batch 32, crop 512, r 10; infer 375x500", "resnet50", 32, 512, 10, (375, 500))
PAPER_512 = ("paper: resnet50; infer 512x512", "resnet50", 32, 512, 10, (512, 512))


def _labels(batch: int, crop: int, path_index: PathIndex, device: torch.device):
    """Blocky random labels with a void band: every kind of pair occurs."""
    rng = np.random.default_rng(0)
    masks = [[], [], []]
    for _ in range(batch):
        blocks = rng.choice([0, 0, 3, 8], size=(crop // 32, crop // 32)).astype(np.uint8)
        label = np.kron(blocks, np.ones((32, 32), np.uint8))
        label[:, :8] = 255
        for store, mask in zip(masks, affinity_labels(downsample_label(label), path_index)):
            store.append(mask.bool())
    return [torch.stack(m).to(device) for m in masks]


def training_rate(depth: str, batch: int, crop: int, radius: int, device: torch.device, steps: int) -> float:
    torch.manual_seed(0)
    model = IRNetBoundary(depth).to(device).train()
    if device.type == "cuda":
        model.use_channels_last()
    optimizer = torch.optim.SGD(model.edge_parameters(), lr=0.1, weight_decay=1e-4)
    path_index = PathIndex(radius)
    images = torch.randn(batch, 3, crop, crop, device=device)
    masks = _labels(batch, crop, path_index, device)

    def step() -> None:
        aff = affinity_from_boundary(torch.sigmoid(model(images).float()), path_index)
        loss, _ = affinity_loss(aff, *masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return items_per_second(step, steps, batch, device)


def inference_rate(depth: str, size: tuple[int, int], device: torch.device, images: int) -> float:
    torch.manual_seed(0)
    model = IRNetBoundary(depth).to(device).eval()
    if device.type == "cuda":
        model.use_channels_last()
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    return items_per_second(lambda: infer_boundary(model, rgb, device), images, 1, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    settings = [DEMO] + ([PAPER, PAPER_512] if device.type == "cuda" else [])
    inference_images = 20 if device.type == "cpu" else 100
    for label, depth, batch, crop, radius, size in settings:
        train = training_rate(depth, batch, crop, radius, device, args.steps)
        infer = inference_rate(depth, size, device, inference_images)
        print(f"{label}: train {train:8.1f} images/s | boundary inference {infer:8.1f} images/s")


if __name__ == "__main__":
    main()
