"""``pcam random-walk``: boundary map + stride-4 CAMs -> pseudo labels (spec §5, Table 2).

Per image of the shard: IRNet boundary map (flip TTA), semantic random walk of the
stride-4 CAMs over the boundary-derived affinities (sparse, 2^exp_times steps, on the
device), global normalisation, constant background threshold, labels at full resolution
with values in {0} U keys (no 255: every pixel gets a label, as DeepLab's targets).

Boundary inference runs per image (its zero padding would otherwise change boundary values
near the border); the walks of WALK_BATCH images run together on grids padded exactly (see
``pad_for_batch``), with images sorted by size so that little is padded.
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
from pcam_core.irnet import IRNetBoundary, infer_boundary, load_irnet
from pcam_core.training_loop import pick_device, progress_bar, set_cpu_threads
from pcam_core.label_png import write_label_png

DEFAULTS = {"beta": 12, "exp_times": 8, "radius": 5, "bg_threshold": 0.30}


# Images propagated together. The walk is thousands of tiny shifted multiply-adds (CPU) or
# sparse products (CUDA) per image, so per-call overhead dominates at these grid sizes;
# a batch of 16 divides it by 16 and holds ~16 x 69 x h x w weights (69 MB at VOC's 125^2).
WALK_BATCH = 16


def pad_for_batch(cams: list[np.ndarray], boundaries: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack grids of different sizes and class counts for ``propagate_batch``, exactly.

    Boundaries are padded with 1.0: any pair touching a padded cell has affinity 0 and
    weight 0^beta = 0, so no mass enters or leaves the padding and every real cell's
    column sum is unchanged (paths between two real cells stay inside the real rectangle).
    Missing class planes and padded cells of the CAMs are 0: zero seeds stay zero.
    """
    h = max(b.shape[0] for b in boundaries)
    w = max(b.shape[1] for b in boundaries)
    k = max(c.shape[0] for c in cams)
    cam_batch = np.zeros((len(cams), k, h, w), np.float32)
    boundary_batch = np.ones((len(cams), h, w), np.float32)
    for i, (cam, boundary) in enumerate(zip(cams, boundaries)):
        cam_batch[i, : cam.shape[0], : cam.shape[1], : cam.shape[2]] = cam
        boundary_batch[i, : boundary.shape[0], : boundary.shape[1]] = boundary
    return torch.from_numpy(cam_batch), torch.from_numpy(boundary_batch)


def pseudo_labels_batch(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], params: dict,
                        device: torch.device) -> list[np.ndarray]:
    """uint8 (H, W) pseudo labels of several images at once.

    ``items`` holds (image size (H, W), stride-4 cam (K, h, w), keys, boundary (h, w));
    images without classes get all background.
    """
    labels: list[np.ndarray | None] = [None] * len(items)
    walk = [i for i, (_, _, keys, _) in enumerate(items) if len(keys)]
    for i, (size, _, keys, _) in enumerate(items):
        if not len(keys):  # no object class: the only label the image can have is background
            labels[i] = np.zeros(size, np.uint8)
    if walk:
        cams, boundaries = pad_for_batch([items[i][1] for i in walk], [items[i][3] for i in walk])
        propagated = random_walk.propagate_batch(
            cams.to(device), boundaries.to(device), beta=float(params["beta"]),
            exp_times=int(params["exp_times"]), radius=int(params["radius"]))
        for j, i in enumerate(walk):
            (height, width), cam, keys, _ = items[i]
            k, h, w = cam.shape
            label = random_walk.labels_from_propagated(propagated[j, :k, :h, :w], keys, height, width,
                                                       float(params["bg_threshold"]))
            labels[i] = np.asarray(label, dtype=np.uint8)
    return labels


def pseudo_label(model: IRNetBoundary, rgb: np.ndarray, cam: np.ndarray, keys: np.ndarray,
                 params: dict, device: torch.device) -> np.ndarray:
    """uint8 (H, W) pseudo label of one image; ``cam`` is the stride-4 (K, h, w) map."""
    boundary = infer_boundary(model, rgb, device) if len(keys) else None
    if boundary is not None and cam.shape[1:] != boundary.shape:
        raise ValueError(f"stride-4 CAM {cam.shape[1:]} does not match the boundary grid {boundary.shape}")
    return pseudo_labels_batch([(rgb.shape[:2], cam, keys, boundary)], params, device)[0]


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
            ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        todo = [i for i in ids if i in store]
        # The export skips images without any class. Of those, an empty tile (a scored image
        # whose mask holds no object) gets the only label it can have, background; an image
        # without clicks or mask gets none (no label information: DeepLab leaves it out).
        empty = [i for i in ids if i not in store and index[i].known_empty()]
        counts["not_in_store"] = len(ids) - len(todo) - len(empty)
        counts["no_classes"] += len(empty)
        # Similar sizes side by side keep the padding of each walk batch small.
        todo.sort(key=lambda i: (index[i].height, index[i].width))
        palette = index.classes.palette()  # pseudo labels open in the dataset's own colours
        for image_id in empty:
            write_label_png(tmp / f"{image_id}.png",
                            np.zeros((index[image_id].height, index[image_id].width), np.uint8), palette)
            counts["written"] += 1

        def load(image_id: str):
            record = store[image_id]
            return index.read_image(index[image_id]), record.cam, record.keys

        def write(ids_and_labels):
            for image_id, label in ids_and_labels:
                write_label_png(tmp / f"{image_id}.png", label, palette)

        # Decode the next image and its CAMs, and write finished PNGs, while the device
        # works (h5py, PIL and zlib release the GIL).
        pending = reader.submit(load, todo[0]) if todo else None
        written = []
        batch_ids, batch_items = [], []
        bar = progress_bar(len(todo), 0, "random walk")
        for n, image_id in enumerate(todo):
            rgb, cam, keys = pending.result()
            if n + 1 < len(todo):
                pending = reader.submit(load, todo[n + 1])
            boundary = None
            if len(keys):
                boundary = infer_boundary(model, rgb, device)
                if cam.shape[1:] != boundary.shape:
                    raise ValueError(f"{image_id}: stride-4 CAM {cam.shape[1:]} does not match the "
                                     f"boundary grid {boundary.shape}")
            else:
                counts["no_classes"] += 1
            batch_ids.append(image_id)
            batch_items.append((rgb.shape[:2], cam, keys, boundary))
            if len(batch_ids) == WALK_BATCH or n + 1 == len(todo):
                labels = pseudo_labels_batch(batch_items, params, device)
                written.append(writer.submit(write, list(zip(batch_ids, labels))))
                counts["written"] += len(labels)
                bar.update(len(labels))
                batch_ids, batch_items = [], []
        for future in written:
            future.result()  # re-raises a failed write before the directory is published
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
