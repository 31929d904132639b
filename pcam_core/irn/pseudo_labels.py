"""``pcam random-walk``: boundary map + stride-4 CAMs -> random-walk store (spec §5, Table 2).

Per image of the shard: IRNet boundary map (flip TTA), semantic random walk of the
stride-4 CAMs over the boundary-derived affinities (sparse, 2^exp_times steps, on the
device). The walk's continuous maps go to a walk store (``walk_store``); the cheap last
step (global normalisation, background threshold, labels at full resolution) is
``pcam pseudo-labels`` (``pseudo_label_pngs``), so a new threshold never reruns the walk.

Boundary inference runs per image (its zero padding would otherwise change boundary values
near the border); the walks of WALK_BATCH images run together on grids padded exactly (see
``pad_for_batch``), with images sorted by size so that little is padded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pcam_core.irn import random_walk
from pcam_core.cam.store import CamStore, exported_ids
from pcam_core.common.dataset_index import DatasetIndex, read_shard_ids
from pcam_core.irn.net import IRNetBoundary, infer_boundary, load_irnet
from pcam_core.common.progress import progress_bar
from pcam_core.common.training_loop import pick_device, set_cpu_threads
from pcam_core.irn.walk_store import WalkRecord, WalkStoreWriter

# The walk's parameters; the background threshold belongs to ``pcam pseudo-labels``.
DEFAULTS = {"beta": 12, "exp_times": 8, "radius": 5}


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


def walk_batch(cams: list[np.ndarray], boundaries: list[np.ndarray], params: dict,
               device: torch.device) -> list[np.ndarray]:
    """Propagated maps, float32 (K, h, w) on the CPU, of several images walked together.

    ``cams`` are stride-4 (K, h, w) maps and ``boundaries`` their (h, w) boundary maps.
    Images without classes (K = 0) stay out of the walk: nothing to propagate.
    """
    out = [np.zeros((0, *b.shape), np.float32) for b in boundaries]
    walk = [i for i, cam in enumerate(cams) if cam.shape[0]]
    if walk:
        cam_batch, boundary_batch = pad_for_batch([cams[i] for i in walk], [boundaries[i] for i in walk])
        propagated = random_walk.propagate_batch(
            cam_batch.to(device), boundary_batch.to(device), beta=float(params["beta"]),
            exp_times=int(params["exp_times"]), radius=int(params["radius"]))
        for j, i in enumerate(walk):
            k, h, w = cams[i].shape
            # a copy: keeps each image's maps and lets the padded batch be freed
            out[i] = np.ascontiguousarray(propagated[j, :k, :h, :w].cpu().numpy(), dtype=np.float32)
    return out


def pseudo_labels_batch(items: list[tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray | None]],
                        params: dict, bg_threshold: float, device: torch.device) -> list[np.ndarray]:
    """uint8 (H, W) pseudo labels of several images at once, in memory (walk + threshold).

    ``items`` holds (image size (H, W), stride-4 cam (K, h, w), keys, boundary (h, w));
    images without classes get all background (their boundary may be None). The labels are
    those of a walk store written by ``random_walk_shard`` and read by ``pcam pseudo-labels``
    (same walk, same ``WalkRecord.labels``).
    """
    labels: list[np.ndarray | None] = [None] * len(items)
    walk = [i for i, (_, _, keys, _) in enumerate(items) if len(keys)]
    for i, (size, _, keys, _) in enumerate(items):
        if not len(keys):  # no object class: the only label the image can have is background
            labels[i] = np.zeros(size, np.uint8)
    propagated = walk_batch([items[i][1] for i in walk], [items[i][3] for i in walk], params, device)
    for i, maps in zip(walk, propagated):
        (height, width), _, keys, boundary = items[i]
        labels[i] = WalkRecord(np.asarray(keys, np.int64), maps, boundary, height, width).labels(bg_threshold)
    return labels


def pseudo_label(model: IRNetBoundary, rgb: np.ndarray, cam: np.ndarray, keys: np.ndarray,
                 params: dict, bg_threshold: float, device: torch.device) -> np.ndarray:
    """uint8 (H, W) pseudo label of one image; ``cam`` is the stride-4 (K, h, w) map."""
    boundary = infer_boundary(model, rgb, device) if len(keys) else None
    if boundary is not None and cam.shape[1:] != boundary.shape:
        raise ValueError(f"stride-4 CAM {cam.shape[1:]} does not match the boundary grid {boundary.shape}")
    return pseudo_labels_batch([(rgb.shape[:2], cam, keys, boundary)], params, bg_threshold, device)[0]


def random_walk_shard(index_path: str | Path, shard_path: str | Path, cam_path: str | Path,
                      irn_path: str | Path, params: dict, out: str | Path,
                      device: str = "auto", threads: int = 0) -> dict[str, int]:
    """Write the walk store ``out`` (.h5) of every image of the shard found in the CAM store.

    ``params``: beta, exp_times, radius (other keys, such as an old config's bg_threshold,
    are not read: the threshold is applied later by ``pcam pseudo-labels``).
    """
    params = {**DEFAULTS, **{key: params[key] for key in DEFAULTS if key in params}}
    walk_params = {"beta": float(params["beta"]), "exp_times": int(params["exp_times"]),
                   "radius": int(params["radius"])}
    set_cpu_threads(threads)
    device = pick_device(device)
    index = DatasetIndex.load(index_path)
    ids = read_shard_ids(shard_path)
    model = load_irnet(irn_path, device)
    counts = {"shard": len(ids), "stored": 0, "not_in_store": 0, "no_classes": 0}
    with CamStore(cam_path, shard_ids=ids, required_ids=exported_ids(index, ids)) as store, \
            WalkStoreWriter(out, walk_params) as walks, \
            ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        # The export skips images without any class: known-empty tiles get their background
        # label from ``pcam pseudo-labels``, the others no label at all. Nothing to walk.
        todo = [i for i in ids if i in store]
        counts["not_in_store"] = len(ids) - len(todo)
        # Similar sizes side by side keep the padding of each walk batch small.
        todo.sort(key=lambda i: (index[i].height, index[i].width))

        def load(image_id: str):
            record = store[image_id]
            return index.read_image(index[image_id]), record.cam, record.keys

        def write(entries):
            for entry in entries:
                walks.add(*entry)

        # Decode the next image and its CAMs, and store finished walks, while the device works
        # (PIL decodes without the GIL; h5py serialises its calls across threads, which keeps
        # the reads of one file and the writes of the other safe).
        pending = reader.submit(load, todo[0]) if todo else None
        written = []
        batch = []
        bar = progress_bar(len(todo), 0, "random walk")
        for n, image_id in enumerate(todo):
            rgb, cam, keys = pending.result()
            if n + 1 < len(todo):
                pending = reader.submit(load, todo[n + 1])
            # Also for an image without classes (rare: the export skips them), so that
            # every stored record holds the boundary map.
            boundary = infer_boundary(model, rgb, device)
            if cam.shape[1:] != boundary.shape:
                raise ValueError(f"{cam_path}: {image_id}: stride-4 CAM {cam.shape[1:]} does not match "
                                 f"the boundary grid {boundary.shape}")
            counts["no_classes"] += not len(keys)
            batch.append((image_id, keys, cam, boundary, rgb.shape[:2]))
            if len(batch) == WALK_BATCH or n + 1 == len(todo):
                maps = walk_batch([b[2] for b in batch], [b[3] for b in batch], walk_params, device)
                entries = [(name, classes, walked, grid_boundary, *size)
                           for (name, classes, _, grid_boundary, size), walked in zip(batch, maps)]
                written.append(writer.submit(write, entries))
                counts["stored"] += len(batch)
                bar.update(len(batch))
                batch = []
        for future in written:
            future.result()  # re-raises a failed write before the store is published
        bar.close()
    return counts


def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--shard", required=True, help="shard list: one image id per line")
    parser.add_argument("--cams", required=True, help="the shard's CAM store (.h5)")
    parser.add_argument("--irn", required=True, help="trained IRNet (model.pt from train-irn)")
    parser.add_argument("--params", required=True, type=json_object,
                        help="the config's random_walk section as JSON (beta, exp_times, radius; "
                             "other keys are not read)")
    parser.add_argument("--out", required=True, help="output walk store (.h5) of the shard")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")


def main(args) -> int:
    counts = random_walk_shard(args.index, args.shard, args.cams, args.irn, args.params,
                               args.out, args.device, args.threads)
    print(f"random-walk: {counts['stored']} walks stored in {args.out} "
          f"({counts['shard']} images in the shard; {counts['not_in_store']} not in the CAM store, "
          f"left to pcam pseudo-labels; {counts['no_classes']} stored without classes)")
    return 0
