"""``pcam export-cams``: multi-scale, flip-summed CAMs of a shard's images into one HDF5 store.

Spec §2 (IRN ``make_cam``). Per image and scale s in ``export_scales``: bicubic resize to
(round(H s), round(W s)) (scale 1.0 untouched), normalise, batch [image, hflip(image)],
stride-16 CAM = ReLU(1x1 conv), flip SUM map[0] + flip(map[1]). Two grids, each a sum over
the scales:

* ``cam`` (stride 4, ceil(H/4) x ceil(W/4)): every scale's map resized directly to that size
  (IRN's grid, with its slight stretch - decision D9: replicate);
* ``high_res`` (H x W): resized to 16 ceil(H/16) x 16 ceil(W/16), the stride-16 grid's exact
  span, then cropped top-left.

Only the image's classes (``ImageRecord.export_classes()``) are kept, and each is divided by
its max + 1e-5, so maps lie in [0, 1] with a max of about 1. Images without classes are
skipped (and counted). Channels are selected before the resizes: the same numbers, K/N of
the work.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from pcam_core.cam.net import MAXNORM_EPS, CamNet, load_cam_model, resolve_cam_params
from pcam_core.cam.store import CamStoreWriter, exported_ids
from pcam_core.cli import json_object
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord, read_shard_ids
from pcam_core.common.image_io import ImageReading, normalize, read_rgb, resize_rgb, to_chw_tensor
from pcam_core.common.progress import progress_bar
from pcam_core.common.training_loop import autocast_for, pick_device, set_cpu_threads


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def scaled_inputs(rgb: np.ndarray, scales: Sequence[float]) -> list[torch.Tensor]:
    """One normalised (3, h, w) tensor per scale (bicubic, IRN's int(np.round(.)) sizes)."""
    height, width = rgb.shape[:2]
    inputs = []
    for scale in scales:
        if scale == 1.0:
            image = rgb
        else:
            image = resize_rgb(rgb, max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale))))
        inputs.append(to_chw_tensor(normalize(image)))
    return inputs


@torch.no_grad()
def compute_maps(model: CamNet, inputs: Sequence[torch.Tensor], image_hw: tuple[int, int],
                 classes: Sequence[int], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(cam, high_res) float32 arrays (K, ceil(H/4), ceil(W/4)) and (K, H, W) for ``classes``."""
    height, width = image_hw
    channels = torch.as_tensor([c - 1 for c in classes], device=device)  # segmentation id -> 0-based
    cam_hw = (ceil_div(height, 4), ceil_div(width, 4))
    strided_hw = (16 * ceil_div(height, 16), 16 * ceil_div(width, 16))
    cam_sum = torch.zeros((len(classes), *cam_hw), device=device)
    high_res_sum = torch.zeros((len(classes), height, width), device=device)
    channels_last = device.type == "cuda"
    for x in inputs:
        pair = torch.stack([x, x.flip(-1)]).to(device, non_blocking=True)
        if channels_last:
            pair = pair.contiguous(memory_format=torch.channels_last)
        with autocast_for(device):
            maps = model.relu_cam(pair)  # ReLU before the flip sum (spec §2.2)
        maps = maps.float()[:, channels]
        merged = (maps[0] + maps[1].flip(-1)).unsqueeze(0)  # flip SUM, not a mean
        cam_sum += F.interpolate(merged, cam_hw, mode="bilinear", align_corners=False)[0]
        high_res_sum += F.interpolate(merged, strided_hw, mode="bilinear",
                                      align_corners=False)[0, :, :height, :width]
    cam_sum /= cam_sum.amax(dim=(1, 2), keepdim=True) + MAXNORM_EPS
    high_res_sum /= high_res_sum.amax(dim=(1, 2), keepdim=True) + MAXNORM_EPS
    return cam_sum.cpu().numpy(), high_res_sum.cpu().numpy()


class _ExportInputs(Dataset):
    """Decoding and resizing in DataLoader workers, so the model never waits for PIL."""

    def __init__(self, records: Sequence[ImageRecord], scales: Sequence[float],
                 reading: ImageReading | None = None):
        self.records = list(records)
        self.scales = [float(s) for s in scales]
        self.reading = reading

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        rgb = read_rgb(record.image, self.reading)
        if rgb.shape[:2] != (record.height, record.width):
            raise ValueError(f"{record.image}: image is {rgb.shape[1]}x{rgb.shape[0]} but the index says "
                             f"{record.width}x{record.height}; rebuild the index")
        return {"index": i, "inputs": scaled_inputs(rgb, self.scales)}


def export_cams(index_path: str | Path, shard_path: str | Path, model_path: str | Path,
                params: dict[str, Any], out: str | Path, *, threads: int = 1,
                device: str = "auto") -> dict[str, int]:
    """Export the shard's CAMs to ``out``; returns counts (exported, skipped without classes)."""
    params = resolve_cam_params(params)
    dev = pick_device(device)
    set_cpu_threads(threads)
    index = DatasetIndex.load(index_path)
    ids = read_shard_ids(shard_path)
    unknown = [i for i in ids if i not in index.records]
    if unknown:
        raise KeyError(f"{shard_path}: {len(unknown)} ids are not in {index_path}, e.g. {unknown[:3]}")
    records = [index[i] for i in ids]
    kept = [index[i] for i in exported_ids(index, ids)]
    skipped = len(records) - len(kept)

    model, _ = load_cam_model(model_path, map_location="cpu")
    if model.num_classes != index.classes.num_object_classes:
        raise ValueError(f"{model_path} was trained for {model.num_classes} object classes but "
                         f"{index_path} has {index.classes.num_object_classes}; retrain it")
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    workers = max(0, min(int(params["num_workers"]), int(threads)))
    loader = DataLoader(_ExportInputs(kept, params["export_scales"], index.image_reading), batch_size=None, shuffle=False,
                        num_workers=workers, pin_memory=dev.type == "cuda")
    started = time.perf_counter()
    bar = progress_bar(len(kept), 0, f"export-cams {Path(shard_path).stem}")
    with CamStoreWriter(out) as writer:
        for item in loader:
            record = kept[int(item["index"])]
            keys = sorted(record.export_classes())
            cam, high_res = compute_maps(model, item["inputs"], (record.height, record.width), keys, dev)
            writer.add(record.id, keys, cam, high_res)
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    print(f"export-cams: {len(kept)} images exported in {seconds:.1f} s "
          f"({len(kept) / max(seconds, 1e-9):.2f} images/s); {skipped} skipped without any class",
          file=sys.stderr)
    return {"exported": len(kept), "skipped_without_classes": skipped}


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--shard", required=True, help="text file with the shard's image ids")
    parser.add_argument("--model", required=True, help="train-cam output (model.pt)")
    parser.add_argument("--params", type=json_object, default={},
                        help="the cam: config section as JSON (export_scales, num_workers)")
    parser.add_argument("--out", required=True, help="HDF5 CAM store of the shard")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (also caps DataLoader workers)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args) -> int:
    export_cams(args.index, args.shard, args.model, args.params, args.out,
                threads=args.threads, device=args.device)
    return 0
