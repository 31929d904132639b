"""``pcam random-walk``: boundary map + stride-4 CAMs -> pseudo labels (spec §5, Table 2).

Per image of the shard: IRNet boundary map (flip TTA), semantic random walk of the
stride-4 CAMs over the boundary-derived affinities (sparse, 2^exp_times steps, on the
device), global normalisation, constant background threshold, labels at full resolution
with values in {0} U keys (no 255: every pixel gets a label, as DeepLab's targets).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pcam_core import random_walk
from pcam_core.atomic_output import atomic_directory
from pcam_core.cam_store import CamStore
from pcam_core.dataset_index import DatasetIndex, read_shard_ids
from pcam_core.image_io import read_rgb
from pcam_core.irnet import IRNetBoundary, infer_boundary, load_irnet
from pcam_core.training_loop import pick_device, progress_bar, set_cpu_threads
from pcam_core.voc_classes import write_label_png

DEFAULTS = {"beta": 12, "exp_times": 8, "radius": 5, "bg_threshold": 0.30}


def pseudo_label(model: IRNetBoundary, rgb: np.ndarray, cam: np.ndarray, keys: np.ndarray,
                 params: dict, device: torch.device) -> np.ndarray:
    """uint8 (H, W) pseudo label of one image; ``cam`` is the stride-4 (K, h, w) map."""
    height, width = rgb.shape[:2]
    if len(keys) == 0:  # no object class: the only label the image can have is background
        return np.zeros((height, width), np.uint8)
    boundary = infer_boundary(model, rgb, device)
    if cam.shape[1:] != boundary.shape:
        raise ValueError(f"stride-4 CAM {cam.shape[1:]} does not match the boundary grid {boundary.shape}")
    propagated = random_walk.propagate(torch.from_numpy(cam).to(device), torch.from_numpy(boundary).to(device),
                                       beta=float(params["beta"]), exp_times=int(params["exp_times"]),
                                       radius=int(params["radius"]))
    label = random_walk.labels_from_propagated(propagated, keys, height, width,
                                               float(params["bg_threshold"]))
    return np.asarray(label, dtype=np.uint8)


def random_walk_shard(index_path: str | Path, shard_path: str | Path, cam_path: str | Path,
                      irn_path: str | Path, params: dict, out_dir: str | Path,
                      device: str = "auto", threads: int = 0) -> dict[str, int]:
    """Write ``out_dir/<id>.png`` for every image of the shard found in the CAM store."""
    params = {**DEFAULTS, **params}
    set_cpu_threads(threads)
    device = pick_device(device)
    index = DatasetIndex.load(index_path)
    ids = read_shard_ids(shard_path)
    model = load_irnet(irn_path, device)
    counts = {"shard": len(ids), "written": 0, "not_in_store": 0, "no_classes": 0}
    with CamStore(cam_path) as store, atomic_directory(out_dir) as tmp, \
            ThreadPoolExecutor(1) as reader:
        todo = [i for i in ids if i in store]
        counts["not_in_store"] = len(ids) - len(todo)

        def load(image_id: str):
            record = store[image_id]
            return read_rgb(index[image_id].image), record.cam, record.keys

        # Decode the next image and its CAMs while the device works on this one (h5py and
        # PIL release the GIL while decompressing / decoding).
        pending = reader.submit(load, todo[0]) if todo else None
        bar = progress_bar(len(todo), 0, "random walk")
        for n, image_id in enumerate(todo):
            rgb, cam, keys = pending.result()
            if n + 1 < len(todo):
                pending = reader.submit(load, todo[n + 1])
            if len(keys) == 0:
                counts["no_classes"] += 1
            write_label_png(tmp / f"{image_id}.png", pseudo_label(model, rgb, cam, keys, params, device))
            counts["written"] += 1
            bar.update()
        bar.close()
    return counts


def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--shard", required=True, help="shard list: one image id per line")
    parser.add_argument("--cams", required=True, help="the shard's CAM store (.h5)")
    parser.add_argument("--irn", required=True, help="trained IRNet (model.pt from train-irn)")
    parser.add_argument("--params", required=True, type=json_object,
                        help="the config's random_walk section as JSON (beta, exp_times, radius, bg_threshold)")
    parser.add_argument("--out-dir", required=True, help="output directory of <id>.png pseudo labels")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")


def main(args) -> int:
    counts = random_walk_shard(args.index, args.shard, args.cams, args.irn, args.params,
                               args.out_dir, args.device, args.threads)
    print(f"random-walk: {counts['written']} pseudo labels written to {args.out_dir} "
          f"({counts['shard']} images in the shard; skipped {counts['not_in_store']} not in the "
          f"CAM store; {counts['no_classes']} without classes labelled all background)")
    return 0
