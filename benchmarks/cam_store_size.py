"""CAM store size: HDF5 (float16, gzip + shuffle, per-class chunks) vs float32 .npy per image.

    .venv/bin/python benchmarks/cam_store_size.py [--images 40] [--model model.pt] [--threads 2]

Goal: the store takes <= 1/3 of the bytes of float32 .npy files holding the same maps
(IRN's format, spec §2.5), and thresholded argmax labels (tau 0.15 and 0.30, spec §2.6) read
back from the store equal those of the float32 maps. Pictures are demo images; use
``--model`` (a trained train-cam output) for realistic, smoother maps than random weights give.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from pcam_core.evaluation.cam_scores import threshold_labels
from pcam_core.cam.export import compute_maps, scaled_inputs
from pcam_core.cam.net import CamNet, load_cam_model
from pcam_core.cam.store import CamRecord, CamStore, CamStoreWriter
from pcam_core.common.training_loop import set_cpu_threads
from pcam_core.data.voc_reader import NUM_OBJECT_CLASSES as VOC_OBJECT_CLASSES  # VOC-sized heads

from cam_export_speed import SCALES, demo_pictures


def npy_bytes(array: np.ndarray) -> int:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getbuffer().nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(96, 144), help="side range of the pictures")
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    torch.manual_seed(0)
    model = load_cam_model(args.model)[0] if args.model else CamNet("resnet18", num_classes=VOC_OBJECT_CLASSES).eval()
    device = torch.device("cpu")
    pictures = demo_pictures(args.images, *args.size)
    float32_maps, npy_total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.h5"
        with CamStoreWriter(path) as writer:
            for i, (rgb, classes) in enumerate(pictures):
                cam, high_res = compute_maps(model, scaled_inputs(rgb, SCALES), rgb.shape[:2], classes, device)
                writer.add(f"img_{i:05d}", classes, cam, high_res)
                float32_maps.append(CamRecord(np.asarray(classes, np.int64), cam, high_res))
                npy_total += npy_bytes(np.asarray(classes, np.int64)) + npy_bytes(cam) + npy_bytes(high_res)
        h5_total = path.stat().st_size
        pixels = changed = 0
        with CamStore(path) as store:
            for i, original in enumerate(float32_maps):
                stored = store[f"img_{i:05d}"]
                for tau in (0.15, 0.30):
                    a, b = threshold_labels(original, tau), threshold_labels(stored, tau)
                    pixels += a.size
                    changed += int((a != b).sum())
    n = len(pictures)
    print(f"{n} demo images ({args.size[0]}..{args.size[1]} px), "
          f"{'trained model' if args.model else 'random-weight resnet18'}")
    print(f"float32 .npy: {npy_total / n / 1024:.1f} KiB/image; HDF5 store: {h5_total / n / 1024:.1f} KiB/image; "
          f"ratio {h5_total / npy_total:.3f} (goal <= 0.333: {'met' if h5_total <= npy_total / 3 else 'NOT met'})")
    print(f"argmax labels at tau 0.15 and 0.30: {changed} of {pixels} pixels differ "
          f"({'identical' if changed == 0 else f'{100 * changed / pixels:.4f} %'})")


if __name__ == "__main__":
    main()
