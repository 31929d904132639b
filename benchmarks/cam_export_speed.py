"""CAM export speed: images/s of the multi-scale x flip export (spec §2) incl. the HDF5 write.

    .venv/bin/python benchmarks/cam_export_speed.py [--images 24] [--threads 2] [--device auto]
        [--backbone resnet18] [--model model.pt]

Images are demo pictures (``demo_dataset.render_image``, sides 96..144 px, their own classes);
the net has random weights unless ``--model`` is given (weights do not change the cost).
JPEG decoding is left out: the command decodes in DataLoader workers, in parallel to this.
On CUDA it also times a VOC-size image (375x500) with resnet50, the paper's setting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pcam_core.cam.export import compute_maps, scaled_inputs
from pcam_core.cam.net import CamNet, load_cam_model
from pcam_core.cam.store import CamStoreWriter
from pcam_core.data.demo_dataset import render_image
from pcam_core.common.training_loop import pick_device, set_cpu_threads
from pcam_core.data.voc_reader import NUM_OBJECT_CLASSES as VOC_OBJECT_CLASSES  # VOC-sized heads

SCALES = (1.0, 0.5, 1.5, 2.0)


def demo_pictures(count: int, lo: int, hi: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pictures = []
    while len(pictures) < count:
        h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        picture = render_image(rng, h, w)
        if picture.instance_classes:
            pictures.append((picture.rgb, sorted(set(picture.instance_classes))))
    return pictures


def time_export(model, pictures, device, store_path: Path | None) -> tuple[float, float]:
    """(wall, process CPU) seconds for resize + normalise + maps (+ store write) of every picture.

    CPU seconds are reported too because the benchmark machine is shared: wall time alone
    mixes in the other jobs' load, CPU time does not (much)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    writer = CamStoreWriter(store_path) if store_path else None
    sync()
    start, cpu_start = time.perf_counter(), time.process_time()
    if writer:
        writer.__enter__()
    for i, (rgb, classes) in enumerate(pictures):
        cam, high_res = compute_maps(model, scaled_inputs(rgb, SCALES), rgb.shape[:2], classes, device)
        if writer:
            writer.add(f"img_{i:05d}", classes, cam, high_res)
    if writer:
        writer.__exit__(None, None, None)
    sync()
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--model", default=None, help="a train-cam output instead of random weights")
    args = parser.parse_args()

    device = pick_device(args.device)
    set_cpu_threads(args.threads)
    torch.manual_seed(0)
    model = load_cam_model(args.model)[0] if args.model else CamNet(args.backbone, num_classes=VOC_OBJECT_CLASSES).eval()
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    depth = model.depth
    pictures = demo_pictures(args.images, 96, 144)
    time_export(model, pictures[:2], device, None)  # warm-up (allocator, cuDNN autotune)
    with tempfile.TemporaryDirectory() as tmp:
        compute_s, compute_cpu = time_export(model, pictures, device, None)
        store_s, store_cpu = time_export(model, pictures, device, Path(tmp) / "shard.h5")
    n = len(pictures)
    print(f"device {device} ({torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}), "
          f"{depth}, scales {SCALES} x flip")
    print(f"demo size (96..144 px), {n} images: maps {n / compute_s:.2f} images/s ({compute_cpu / n:.2f} CPU-s/image); "
          f"maps + HDF5 store {n / store_s:.2f} images/s ({store_cpu / n:.2f} CPU-s/image)")
    if device.type == "cuda":
        torch.manual_seed(0)
        big = CamNet("resnet50", num_classes=VOC_OBJECT_CLASSES).eval().to(device).to(memory_format=torch.channels_last)
        rng = np.random.default_rng(1)
        voc = [(rng.integers(0, 255, size=(375, 500, 3), dtype=np.uint8), [1, 15]) for _ in range(20)]
        time_export(big, voc[:3], device, None)
        seconds, _ = time_export(big, voc, device, None)
        print(f"VOC size 375x500, resnet50, bf16 + channels_last: {len(voc) / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
