"""``pcam train-irn``: train IRNet's boundary branch on mined IR labels (spec §4.6-§4.9).

Data: image + IR label -> random scale (bicubic / nearest) -> normalise -> hflip -> random
crop (image fill 0 = the mean colour, label fill 255 = ignored) -> label at 1/4 (PIL
nearest) -> affinity labels (bg_pos, fg_pos, neg) over PathIndex(radius) pairs.
Loss: the affinity part of IRN's loss, (L_pos + L_neg)/2 (spec §4.7, §4.12).

Every sample's augmentation draws from a generator seeded by (seed, epoch, sample), and
each epoch's order from (seed, epoch): a run killed and resumed from its side checkpoint
sees exactly the batches the uninterrupted run would have seen, whatever the number of
DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pcam_core.irn import path_index as pidx
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.common.image_io import ImageReading, normalize, read_rgb, resize_label, resize_rgb, to_chw_tensor
from pcam_core.irn.net import IRNetBoundary, save_irnet
from pcam_core.common.progress import progress_bar
from pcam_core.common.training_loop import (Checkpointer, TrainingLog, apply_poly_lr, pick_device,
                                     restore_rng_state, rng_state,
                                     seed_everything, set_cpu_threads, worker_seed_fn)
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.label_png import find_label_files, read_label_png

# Stabiliser inside the logs, IRN's value: -log(a + 1e-5) stays finite at a = 0.
LOG_EPS = 1e-5
# Keeps <X>_m = sum(m X) / (sum(m) + eps) finite when a batch has no pair of a kind.
MASK_EPS = 1e-5

DEFAULTS = {"backbone": "resnet50", "batch_size": 32, "crop_size": 512, "scale_range": [0.5, 1.5],
            "epochs": 3, "lr": 0.1, "momentum": 0.0, "weight_decay": 1e-4, "poly_power": 0.9,
            "radius": 10, "checkpoint_every": 50, "num_workers": 2, "seed": 0}


# ----------------------------------------------------------------------------- data
def random_crop_box(size: int, crop: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """IRN's per-axis crop rule: (source start, canvas start, length).

    A longer axis is cut at a random offset; a shorter one is kept whole and pasted at a
    random offset into the crop canvas.
    """
    if size > crop:
        return int(rng.integers(0, size - crop + 1)), 0, crop
    return 0, int(rng.integers(0, crop - size + 1)), size


def augment(rgb: np.ndarray, label: np.ndarray, params: dict,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scale, normalise, flip, crop (spec §4.8): float32 CHW-ready HWC image, uint8 label."""
    lo, hi = params["scale_range"]
    scale = lo + rng.random() * (hi - lo)
    h, w = label.shape
    th, tw = max(1, int(np.round(h * scale))), max(1, int(np.round(w * scale)))
    image = normalize(resize_rgb(rgb, th, tw))
    label = resize_label(label, th, tw)
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    crop = int(params["crop_size"])
    (sy, cy, lh), (sx, cx, lw) = random_crop_box(th, crop, rng), random_crop_box(tw, crop, rng)
    image_out = np.zeros((crop, crop, 3), np.float32)
    label_out = np.full((crop, crop), IGNORE_INDEX, np.uint8)
    image_out[cy:cy + lh, cx:cx + lw] = image[sy:sy + lh, sx:sx + lw]
    label_out[cy:cy + lh, cx:cx + lw] = label[sy:sy + lh, sx:sx + lw]
    return image_out, label_out


class IrnTrainingSet(Dataset):
    """Items are addressed by (epoch, sample) so that augmentation is reproducible."""

    def __init__(self, records: list[ImageRecord], label_paths: list[Path], params: dict,
                 reading: ImageReading | None = None):
        self.records = records
        self.reading = reading
        self.label_paths = label_paths
        self.params = params
        self.seed = int(params["seed"])
        self.path_index = pidx.PathIndex(params["radius"])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        image, label = augment(read_rgb(self.records[i].image, self.reading), read_label_png(self.label_paths[i]),
                               self.params, rng)
        bg_pos, fg_pos, neg = pidx.affinity_labels(pidx.downsample_label(label), self.path_index)
        # bool masks: a quarter of float32's bytes through the worker queues (24 MB per
        # 512 crop at radius 10 as float32).
        return {"image": to_chw_tensor(image), "bg_pos": torch.as_tensor(bg_pos).bool(),
                "fg_pos": torch.as_tensor(fg_pos).bool(), "neg": torch.as_tensor(neg).bool()}


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, start: int = 0) -> list[list[tuple[int, int]]]:
    """The epoch's shuffled full batches (drop_last), from batch ``start`` on."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return [[(epoch, i) for i in order[b * batch_size:(b + 1) * batch_size]]
            for b in range(start, n // batch_size)]


def find_ir_labels(index: DatasetIndex, label_dirs: list[str | Path]) -> tuple[list[ImageRecord], list[Path], int]:
    """train_aug records that have an IR label in one of the dirs, their label paths, #missing."""
    found: dict[str, Path] = {}
    for directory in label_dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: IR label directory not found")
        found.update(find_label_files(directory))
    records, paths, missing = [], [], 0
    for record in index.split("train_aug"):
        if record.id in found:
            records.append(record)
            paths.append(found[record.id])
        else:
            missing += 1
    return records, paths, missing


# ----------------------------------------------------------------------------- loss
def affinity_loss(aff: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor,
                  neg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """(L_pos + L_neg)/2 with L_pos = (<P>_bg + <P>_fg)/2, L_neg = <N>_neg (spec §4.7).

    Computed in fp32 whatever the autocast state: log(a + 1e-5) is sensitive near 0 and 1.
    """
    aff = aff.float()
    pos_loss = -torch.log(aff + LOG_EPS)
    neg_loss = -torch.log(1.0 + LOG_EPS - aff)

    def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.float()
        return (mask * values).sum() / (mask.sum() + MASK_EPS)

    bg = masked_mean(pos_loss, bg_pos)
    fg = masked_mean(pos_loss, fg_pos)
    ng = masked_mean(neg_loss, neg)
    total = ((bg + fg) / 2 + ng) / 2
    return total, {"pos_bg": bg.item(), "pos_fg": fg.item(), "neg": ng.item()}


# ----------------------------------------------------------------------------- training
def _fingerprint(params: dict, ids: list[str]) -> str:
    """What a side checkpoint must match to be resumed: settings and the training images
    (not the checkpoint interval or the worker count, which do not change the result)."""
    kept = {k: v for k, v in params.items() if k not in ("checkpoint_every", "num_workers")}
    text = json.dumps({"params": kept, "ids": ids}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_irn(index_path: str | Path, label_dirs: list[str | Path], params: dict, out: str | Path,
              log_jsonl: str | Path | None = None, weights: str | Path | None = None,
              device: str = "auto", threads: int = 0) -> dict:
    """Train (or resume) and write ``out`` once; returns a short summary."""
    params = {**DEFAULTS, **params}
    set_cpu_threads(threads)
    device = pick_device(device)
    index = DatasetIndex.load(index_path)
    records, label_paths, missing = find_ir_labels(index, label_dirs)
    batch_size = int(params["batch_size"])
    steps_per_epoch = len(records) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(records)} images with IR labels: fewer than one batch of {batch_size}")
    total_steps = int(params["epochs"]) * steps_per_epoch
    seed = int(params["seed"])
    if weights is None and params.get("imagenet_weights"):
        raise ValueError("irn.imagenet_weights is true but no --weights file was given")

    seed_everything(seed)  # the random init of a from-scratch backbone and of the heads
    model = IRNetBoundary(params["backbone"], weights).to(device)
    if device.type == "cuda":
        model.use_channels_last()
    optimizer = torch.optim.SGD(model.edge_parameters(), lr=float(params["lr"]),
                                momentum=float(params["momentum"]),
                                weight_decay=float(params["weight_decay"]))
    checkpointer = Checkpointer(out, params["checkpoint_every"], command="train-irn",
                                hint="Lower irn.lr, or check the IR labels (rule mine_ir_labels).")
    fingerprint = _fingerprint(params, [r.id for r in records])
    step = 0
    state = checkpointer.load(fingerprint=fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        restore_rng_state(state["rng"])
        print(f"train-irn: resuming from {checkpointer.side_file} at step {step}/{total_steps}",
              file=sys.stderr)
    print(f"train-irn: {len(records)} images ({missing} train_aug images without an IR label), "
          f"{total_steps} steps of {batch_size} on {device}", file=sys.stderr)

    dataset = IrnTrainingSet(records, label_paths, params, index.image_reading)
    path_index = dataset.path_index
    # The remaining batches of every epoch, in order: one loader, so workers start once.
    first_epoch = step // steps_per_epoch
    batches = [b for epoch in range(first_epoch, int(params["epochs"]))
               for b in epoch_batches(len(records), batch_size, seed, epoch,
                                      step % steps_per_epoch if epoch == first_epoch else 0)]
    workers = int(params["num_workers"])
    if threads > 0:
        workers = min(workers, int(threads))  # the job's CPU allowance covers the workers too
    # worker_seed_fn: workers ignore SIGTERM, so a signalled job checkpoints instead of failing
    # on its next batch (augmentation seeds come from the batches, not the worker).
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=worker_seed_fn)
    log = TrainingLog(log_jsonl)
    bar = progress_bar(total_steps, step, "train IRNet")
    model.train()
    start_step, start_time = step, time.perf_counter()
    for batch in loader:
        lr = apply_poly_lr(optimizer, step, total_steps, float(params["poly_power"]))
        image = batch["image"].to(device, non_blocking=True)
        boundary = torch.sigmoid(model(image).float())
        aff = pidx.affinity_from_boundary(boundary, path_index)
        loss, terms = affinity_loss(aff, *(batch[k].to(device, non_blocking=True)
                                           for k in ("bg_pos", "fg_pos", "neg")))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        checkpointer.check_loss(step + 1, loss, terms)
        optimizer.step()
        step += 1
        rate = log.images_per_second(image.shape[0])
        log.write({"step": step, "loss": loss.item(), **terms, "lr": lr, "images_per_s": round(rate, 2)})
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
        if checkpointer.due(step) and step < total_steps:
            checkpointer.save({"fingerprint": fingerprint, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state()})
    bar.close()
    final = save_irnet(model, params)
    final["steps"] = total_steps
    checkpointer.finish(final)
    elapsed = time.perf_counter() - start_time
    done = step - start_step
    return {"images": len(records), "missing_labels": missing, "steps": total_steps,
            "steps_run": done, "seconds": elapsed,
            "images_per_s": done * batch_size / elapsed if elapsed > 0 else math.nan}


def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--ir-label-dirs", required=True, nargs="+",
                        help="directories of <id>.png IR labels (one per shard)")
    parser.add_argument("--params", required=True, type=json_object, help="the config's irn section as JSON")
    parser.add_argument("--weights", default=None,
                        help="ImageNet weights of the backbone (torchvision .pth); none = random init")
    parser.add_argument("--out", required=True, help="output model file (model.pt)")
    parser.add_argument("--log-jsonl", default=None, help="JSON-lines training log (appended)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args) -> int:
    summary = train_irn(args.index, args.ir_label_dirs, args.params, args.out, args.log_jsonl,
                        args.weights, args.device, args.threads)
    print(f"train-irn: wrote {args.out} ({summary['steps_run']} steps run here, "
          f"{summary['images_per_s']:.1f} images/s)")
    return 0
