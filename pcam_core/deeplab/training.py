"""``pcam train-deeplab``: DeepLabv3+ trained on random-walk pseudo labels (spec §6).

Data: the train_aug images that have a pseudo-label PNG in one of ``--label-dirs`` (the
shard folders of ``R/<variant>/pseudo``); images without one are counted, reported and left
out. Augmentation (VainF VOC recipe, spec §6.5): random scale U[scale_range] (bilinear image,
nearest label), random crop ``crop_size`` with padding 0 in normalised space (the mean colour)
for the image and **255 (ignore)** for the label (VainF pads the label with 0, i.e. fake
background, pitfall 19), horizontal flip. Loss: cross-entropy, ignore 255. SGD with Nesterov
momentum, poly LR per iteration. The FINAL weights are the result: no checkpoint is picked
on val (pitfall 22).

Every sample's augmentation is drawn from a generator seeded by (seed, sample position),
and the sample order is a fixed plan of per-epoch permutations, so a run killed and resumed
from its side checkpoint sees exactly the batches an uninterrupted run would, whatever the
number of DataLoader workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from pcam_core.common import training_loop as tl
from pcam_core.common.backbone import IMAGENET_WEIGHT_FILES
from pcam_core.cli import json_object
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.deeplab.model import LR_GROUPS, DeepLabV3Plus, checkpoint_payload
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.image_io import ImageReading, normalize, read_rgb, to_chw_tensor
from pcam_core.common.label_png import find_label_files, read_label_png
from pcam_core.common.progress import progress_bar

# Keys of the ``deeplab:`` config section this command reads (the schema gives defaults).
REQUIRED_PARAMS = ("backbone", "imagenet_weights", "iterations", "batch_size", "crop_size",
                   "scale_range", "lr", "momentum", "nesterov", "weight_decay", "poly_power",
                   "lr_groups", "checkpoint_every", "num_workers", "seed")
# Log about 100 lines per run (at least every step of a tiny run), enough to plot the loss.
LOG_LINES = 100


# ----------------------------------------------------------------------------- data
def find_pseudo_labels(label_dirs: Sequence[str | Path]) -> dict[str, Path]:
    """Map image id -> pseudo-label PNG over the shard folders; an id in two folders is an error."""
    found: dict[str, Path] = {}
    for directory in label_dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: pseudo-label folder not found")
        for image_id, path in find_label_files(directory).items():
            if image_id in found:
                raise ValueError(f"image {image_id!r} has two pseudo labels: {found[image_id]} and "
                                 f"{path}; shards must not overlap")
            found[image_id] = path
    return found


def training_pairs(index: DatasetIndex, labels: dict[str, Path]
                   ) -> tuple[list[tuple[ImageRecord, Path]], list[str]]:
    """(record, label path) for every train_aug image with a label, and the ids without one."""
    pairs, missing = [], []
    for record in index.split("train_aug"):
        if record.id in labels:
            pairs.append((record, labels[record.id]))
        else:
            missing.append(record.id)
    return pairs, missing


def random_scale_crop_flip(rgb: np.ndarray, label: np.ndarray, crop_size: int,
                           scale_range: Sequence[float], rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: scale, normalise, crop (pad image 0 / label 255), flip.

    Returns a float32 HWC normalised image and a uint8 label, both ``crop_size`` square.
    Normalising before padding makes the image padding the mean colour (0), as IRN does.
    A side shorter than the crop is placed at a random offset inside the padded canvas.
    """
    height, width = label.shape
    scale = rng.uniform(scale_range[0], scale_range[1])
    # round(), as IRN sizes images (spec §0.3); VainF truncates with int(), a 1 px difference.
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((new_w, new_h), Image.NEAREST))
    image = normalize(image)

    out_image = np.zeros((crop_size, crop_size, 3), np.float32)
    out_label = np.full((crop_size, crop_size), IGNORE_INDEX, np.uint8)
    src, dst = [], []
    for size in (new_h, new_w):
        if size > crop_size:  # crop: random window of the source
            start = int(rng.integers(0, size - crop_size + 1))
            src.append(slice(start, start + crop_size))
            dst.append(slice(0, crop_size))
        else:  # pad: the whole source at a random place in the canvas
            start = int(rng.integers(0, crop_size - size + 1))
            src.append(slice(0, size))
            dst.append(slice(start, start + size))
    out_image[dst[0], dst[1]] = image[src[0], src[1]]
    out_label[dst[0], dst[1]] = label[src[0], src[1]]
    if rng.random() < 0.5:
        out_image, out_label = out_image[:, ::-1], out_label[:, ::-1]
    return np.ascontiguousarray(out_image), np.ascontiguousarray(out_label)


class PseudoLabelDataset(Dataset):
    """Images + pseudo labels, indexed by (image index, sample seed) pairs from :class:`SamplePlan`."""

    def __init__(self, pairs: list[tuple[ImageRecord, Path]], crop_size: int,
                 scale_range: Sequence[float], seed: int, num_classes: int,
                 reading: ImageReading | None = None):
        self.pairs = pairs
        self.num_classes = num_classes
        self.reading = reading
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        item, position = key
        record, label_path = self.pairs[item]
        rgb = read_rgb(record.image, self.reading)
        label = read_label_png(label_path)
        if label.shape != rgb.shape[:2]:
            raise ValueError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but image "
                             f"{record.image} is {rgb.shape[1]}x{rgb.shape[0]}")
        bad = (label >= self.num_classes) & (label != IGNORE_INDEX)
        if bad.any():  # caught here, it names the file; in the loss it is an opaque index error
            raise ValueError(f"{label_path}: label values {sorted(set(label[bad].tolist()))[:5]} "
                             f"are outside 0..{self.num_classes - 1} and 255")
        rng = np.random.default_rng([self.seed, position])
        image, label = random_scale_crop_flip(rgb, label, self.crop_size, self.scale_range, rng)
        return to_chw_tensor(image), torch.from_numpy(label.astype(np.int64))


class SamplePlan(Sampler):
    """Sample positions start*B .. total*B of a fixed plan: epoch e is permutation (seed, e).

    Each element is (image index, global sample position); the position seeds that
    sample's augmentation, so the stream is independent of workers and of resumes.
    """

    def __init__(self, num_images: int, batch_size: int, start_step: int, total_steps: int,
                 seed: int):
        self.n, self.batch_size, self.seed = num_images, batch_size, seed
        self.start, self.stop = start_step * batch_size, total_steps * batch_size

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        epoch, order = -1, None
        for position in range(self.start, self.stop):
            if position // self.n != epoch:
                epoch = position // self.n
                order = np.random.default_rng([self.seed, 1_000_003, epoch]).permutation(self.n)
            yield int(order[position % self.n]), position


# ----------------------------------------------------------------------------- training
def resume_fingerprint(params: dict[str, Any], pairs: list[tuple[ImageRecord, Path]],
                       weights: str | Path | None, class_names=()) -> str:
    """What a side checkpoint must match to be resumed: the settings that change the result
    (not checkpoint_every / num_workers), the weight file, and each training image's label
    file (id, size, mtime), so labels regenerated upstream after a kill start a fresh run."""
    kept = {k: v for k, v in params.items() if k not in ("checkpoint_every", "num_workers")}
    labels = []
    for record, path in pairs:
        stat = path.stat()
        labels.append([record.id, stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"params": kept, "weights": str(weights or ""), "labels": labels,
                       "classes": list(class_names)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_params(params: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_PARAMS if k not in params]
    if missing:
        raise ValueError(f"--params lacks {missing} (pass the config's deeplab section)")
    if params["iterations"] < 1 or params["crop_size"] < 16:
        raise ValueError("deeplab.iterations must be >= 1 and deeplab.crop_size >= 16 (one "
                         "stride-16 cell)")
    if params["batch_size"] < 2:
        raise ValueError("deeplab.batch_size must be >= 2: BatchNorm (ASPP image pooling) needs "
                         "more than one value per channel in training")
    if params["lr_groups"] not in LR_GROUPS:
        raise ValueError(f"deeplab.lr_groups must be one of {LR_GROUPS}")
    low, high = params["scale_range"]
    if not 0 < low <= high:
        raise ValueError(f"deeplab.scale_range must be 0 < low <= high, got {params['scale_range']}")


def weights_to_use(params: dict[str, Any], weights: str | Path | None, command: str) -> str | Path | None:
    """The ImageNet weight file to start from: ``weights`` when deeplab.imagenet_weights asks for
    one (an error when none was given), else None."""
    if params["imagenet_weights"] and not weights:
        raise ValueError(f"deeplab.imagenet_weights is true but no --weights file was given "
                         f"(expected {IMAGENET_WEIGHT_FILES.get(params['backbone'])})")
    if weights and not params["imagenet_weights"]:
        print(f"{command}: deeplab.imagenet_weights is false; ignoring --weights {weights}")
        return None
    return weights if params["imagenet_weights"] else None


def build_network(params: dict[str, Any], num_classes: int, weights: str | Path | None,
                  dev: torch.device) -> tuple[DeepLabV3Plus, torch.optim.SGD]:
    """DeepLabV3+ seeded by deeplab.seed (channels_last on CUDA) and its SGD: one definition for
    every trainer of the network (train-deeplab, train-wtp), so their schedules stay the same."""
    tl.seed_everything(int(params["seed"]))
    model = DeepLabV3Plus(params["backbone"], num_classes=num_classes, weights_path=weights).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.param_groups(params["lr"], params["lr_groups"]),
                                lr=params["lr"], momentum=params["momentum"],
                                nesterov=bool(params["nesterov"]) and params["momentum"] > 0,
                                weight_decay=params["weight_decay"])
    return model, optimizer


def planned_loader(dataset, params: dict[str, Any], start: int, threads: int, dev: torch.device) -> DataLoader:
    """The batches of steps ``start``..iterations in :class:`SamplePlan` order, with up to
    ``threads`` workers (pinned memory on CUDA)."""
    batch_size, total = int(params["batch_size"]), int(params["iterations"])
    workers = max(0, min(int(params["num_workers"]), int(threads)))
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=SamplePlan(len(dataset), batch_size, start, total, int(params["seed"])),
                      num_workers=workers, pin_memory=dev.type == "cuda",
                      worker_init_fn=tl.worker_seed_fn, drop_last=False,
                      prefetch_factor=4 if workers else None, persistent_workers=False)


def train_deeplab(index: DatasetIndex, label_dirs: Sequence[str | Path], params: dict[str, Any],
                  out: str | Path, *, weights: str | Path | None = None,
                  log_jsonl: str | Path | None = None, threads: int = 1, device: str = "auto",
                  on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and write ``out`` once at the end; returns a small report.

    ``on_step(step)`` is called after every completed step (tests use it to kill a run).
    A side checkpoint ``<out>.ckpt`` is resumed only when its :func:`resume_fingerprint` matches.
    """
    check_params(params)
    use_weights = weights_to_use(params, weights, "train-deeplab")

    tl.set_cpu_threads(threads)
    dev = tl.pick_device(device)
    seed = int(params["seed"])
    total, batch_size = int(params["iterations"]), int(params["batch_size"])

    pairs, missing = training_pairs(index, find_pseudo_labels(label_dirs))
    if not pairs:
        raise ValueError(f"no train_aug image has a pseudo label in {list(map(str, label_dirs))}")
    if missing:
        print(f"train-deeplab: {len(missing)} of {len(missing) + len(pairs)} train_aug images have "
              f"no pseudo label and are left out (e.g. {missing[:3]})")

    model, optimizer = build_network(params, index.classes.num_classes, use_weights, dev)

    checkpointer = tl.Checkpointer(out, params["checkpoint_every"], command="train-deeplab",
                                   hint="Lower deeplab.lr, or check the pseudo labels (rule pseudo_labels).")
    log = tl.TrainingLog(log_jsonl)
    start = 0
    fingerprint = resume_fingerprint(params, pairs, use_weights, index.classes.names)
    state = checkpointer.load(map_location="cpu", fingerprint=fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"train-deeplab: resuming from {checkpointer.side_file} at step {start}/{total}")
    log.write({"event": "start", "step": start, "images": len(pairs),
               "missing_labels": len(missing), "device": str(dev), "params": params})

    dataset = PseudoLabelDataset(pairs, params["crop_size"], params["scale_range"], seed,
                                 index.classes.num_classes, index.image_reading)
    loader = planned_loader(dataset, params, start, threads, dev)
    batches = iter(loader)  # draws DataLoader's base seed from the global RNG...
    if state is not None:
        tl.restore_rng_state(state["rng"])  # ...so restore after it: dropout continues exactly
    log_every = max(1, total // LOG_LINES)
    model.train()
    bar = progress_bar(total, start, "train-deeplab")
    window_loss, window_steps, started = 0.0, 0, time.perf_counter()
    step = start
    for images, labels in batches:
        lr = tl.apply_poly_lr(optimizer, step, total, params["poly_power"])
        images = images.to(dev, non_blocking=True)
        labels = labels.to(dev, non_blocking=True)
        if dev.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with tl.autocast_for(dev):
            logits = model(images)
        # fp32 loss: log-softmax over the classes in bf16 loses precision for confident pixels.
        if bool((labels != IGNORE_INDEX).any()):
            loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
        else:  # crops without a labelled pixel (sparse labels such as point blots): the mean
            loss = logits.float().sum() * 0.0  # over no pixel is NaN, and there is nothing to learn
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        checkpointer.check_loss(step + 1, loss)
        optimizer.step()
        step += 1

        window_loss += loss.item()
        window_steps += 1
        bar.update(1)
        if step % log_every == 0 or step == total:
            mean_loss = window_loss / window_steps
            rate = log.images_per_second(window_steps * batch_size)
            log.write({"step": step, "loss": round(mean_loss, 5), "lr": lr,
                       "images_per_s": round(rate, 2)})
            bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}")
            window_loss, window_steps = 0.0, 0
        if checkpointer.due(step) and step < total:
            checkpointer.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "step": step, "rng": tl.rng_state(), "fingerprint": fingerprint})
        if on_step is not None:
            on_step(step)
    bar.close()
    if step != total:
        raise RuntimeError(f"train-deeplab: data ran out at step {step} of {total}")

    seconds = time.perf_counter() - started
    report = {"iterations": total, "resumed_from": start, "images": len(pairs),
              "missing_labels": len(missing), "missing_label_ids": missing[:20],
              "seconds": round(seconds, 1), "device": str(dev)}
    # The weight file holds what describes the model; how this run went (its seconds, the step
    # it resumed from) goes to the log, so a resumed run writes the same file as a straight one.
    described = {k: v for k, v in report.items() if k not in ("resumed_from", "seconds")}
    checkpointer.finish(checkpoint_payload(model, index.classes, index.image_reading,
                                           params=params, training=described))
    log.write({"event": "done", **{k: v for k, v in report.items() if k != "missing_label_ids"}})
    return report


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--label-dirs", nargs="+", required=True, metavar="DIR",
                        help="folders of pseudo-label PNGs <id>.png (one per shard)")
    parser.add_argument("--params", type=json_object, required=True,
                        help="the config's deeplab section as JSON")
    parser.add_argument("--weights", default=None,
                        help="ImageNet weight file of the backbone (used when imagenet_weights is true)")
    parser.add_argument("--out", required=True, help="trained model (written once, at the end)")
    parser.add_argument("--log-jsonl", default=None, help="training log, one JSON object per line")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (and max DataLoader workers)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args: argparse.Namespace) -> int:
    index = DatasetIndex.load(args.index)
    report = train_deeplab(index, args.label_dirs, args.params, args.out, weights=args.weights,
                           log_jsonl=args.log_jsonl, threads=args.threads, device=args.device)
    print(f"train-deeplab: {report['iterations']} iterations on {report['images']} images "
          f"({report['missing_labels']} without a pseudo label) in {report['seconds']} s "
          f"on {report['device']} -> {args.out}")
    return 0
