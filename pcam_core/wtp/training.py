"""``pcam train-wtp``: DeepLabv3+ trained directly on the clicks (Bearman et al., Eq. 2-3).

The network, optimiser, schedule and augmentation are those of ``pcam train-deeplab`` (the
config's ``deeplab:`` section: same backbone, steps, crops, learning rate), so the ``wtp``
variant differs from the PCAM branch only in what supervises DeepLab: the image-level labels
and the clicks through the loss of "What's the point" (``pcam_core/wtp/loss.py``), instead
of pseudo labels. The ``wtp:`` section holds the loss settings.

Data: the train_aug images with at least one click (as every stage trains: an image without
a click carries no label a point-supervised user has given).

The output is a ``pcam train-deeplab`` checkpoint (``pcam_core.deeplab.model.checkpoint_payload``),
so ``pcam predict``, the val predictions and their scores apply unchanged. Side checkpoints
every ``deeplab.checkpoint_every`` steps, resumed exactly (same sample plan and per-sample
seeds as train-deeplab); a checkpoint written with other settings, clicks or code is ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from pcam_core.cli import json_object
from pcam_core.common import training_loop as tl
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.common.image_io import ImageReading, read_rgb, to_chw_tensor
from pcam_core.common.progress import progress_bar
from pcam_core.deeplab.model import checkpoint_payload
from pcam_core.deeplab.training import LOG_LINES, build_network, check_params, planned_loader, weights_to_use
from pcam_core.wtp.augment import POINT_WEIGHTINGS, click_sample, click_weights, image_level_sets
from pcam_core.wtp.loss import wtp_loss

# Keys of the ``wtp:`` config section this command reads (the schema gives defaults).
WTP_PARAMS = ("point_weighting",)


class ClickDataset(Dataset):
    """Images + their clicks, indexed by (image index, sample position) from :class:`SamplePlan`."""

    def __init__(self, records: list[ImageRecord], crop_size: int, scale_range, seed: int,
                 num_classes: int, weighting: str, reading: ImageReading | None = None):
        self.records, self.crop_size, self.scale_range = records, crop_size, tuple(scale_range)
        self.seed, self.num_classes, self.reading = seed, num_classes, reading
        self.weights = [click_weights(r.clicks, weighting) for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]):
        item, position = key
        record = self.records[item]
        rgb = read_rgb(record.image, self.reading)
        rng = np.random.default_rng([self.seed, position])
        image, labels, weights, clicked = click_sample(rgb, record.clicks, self.weights[item],
                                                       self.crop_size, self.scale_range, rng)
        present, absent = image_level_sets(record.classes, clicked, self.num_classes)
        return (to_chw_tensor(image), torch.from_numpy(labels.astype(np.int64)),
                torch.from_numpy(weights), torch.from_numpy(present), torch.from_numpy(absent))


def training_records(index: DatasetIndex) -> list[ImageRecord]:
    """The train_aug images with at least one click."""
    return [r for r in index.split("train_aug") if r.clicks]


def resume_fingerprint(deeplab: dict[str, Any], wtp: dict[str, Any], records: list[ImageRecord],
                       weights: str | Path | None, class_names=()) -> str:
    """What a side checkpoint must match to be resumed: the settings that change the result,
    the weight file, the classes and every training image's clicks and image-level label."""
    kept = {k: v for k, v in deeplab.items() if k not in ("checkpoint_every", "num_workers")}
    data = [[r.id, list(r.classes), [[c.cls, c.x, c.y, c.rank] for c in r.clicks]] for r in records]
    text = json.dumps({"deeplab": kept, "wtp": wtp, "weights": str(weights or ""), "data": data,
                       "classes": list(class_names)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_wtp_params(params: dict[str, Any]) -> None:
    missing = [k for k in WTP_PARAMS if k not in params]
    if missing:
        raise ValueError(f"--params lacks {missing} (pass the config's wtp section)")
    if params["point_weighting"] not in POINT_WEIGHTINGS:
        raise ValueError(f"wtp.point_weighting must be one of {POINT_WEIGHTINGS}")


def train_wtp(index: DatasetIndex, params: dict[str, Any], deeplab: dict[str, Any],
              out: str | Path, *, weights: str | Path | None = None,
              log_jsonl: str | Path | None = None, threads: int = 1, device: str = "auto",
              on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train and write ``out`` once at the end; returns a small report.

    ``on_step(step)`` is called after every completed step (tests use it to kill a run).
    """
    check_wtp_params(params)
    check_params(deeplab)
    use_weights = weights_to_use(deeplab, weights, "train-wtp")

    tl.set_cpu_threads(threads)
    dev = tl.pick_device(device)
    seed = int(deeplab["seed"])
    total, batch_size = int(deeplab["iterations"]), int(deeplab["batch_size"])
    records = training_records(index)
    if not records:
        raise ValueError("no train_aug image has a click: 'What's the point' trains on clicks")
    num_classes = index.classes.num_classes

    model, optimizer = build_network(deeplab, num_classes, use_weights, dev)

    checkpointer = tl.Checkpointer(out, deeplab["checkpoint_every"], command="train-wtp",
                                   hint="Lower deeplab.lr.")
    log = tl.TrainingLog(log_jsonl)
    start = 0
    fingerprint = resume_fingerprint(deeplab, params, records, use_weights, index.classes.names)
    state = checkpointer.load(map_location="cpu", fingerprint=fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"train-wtp: resuming from {checkpointer.side_file} at step {start}/{total}")
    log.write({"event": "start", "step": start, "images": len(records), "device": str(dev),
               "params": params, "deeplab": deeplab})

    dataset = ClickDataset(records, deeplab["crop_size"], deeplab["scale_range"], seed,
                           num_classes, params["point_weighting"], index.image_reading)
    loader = planned_loader(dataset, deeplab, start, threads, dev)
    batches = iter(loader)  # draws DataLoader's base seed from the global RNG...
    if state is not None:
        tl.restore_rng_state(state["rng"])  # ...so restore after it: dropout continues exactly

    log_every = max(1, total // LOG_LINES)
    model.train()
    bar = progress_bar(total, start, "train-wtp")
    window = {"loss": 0.0, "loss_img": 0.0, "loss_pt": 0.0}
    window_steps, started, step = 0, time.perf_counter(), start
    for images, labels, point_weights, present, absent in batches:
        lr = tl.apply_poly_lr(optimizer, step, total, deeplab["poly_power"])
        images = images.to(dev, non_blocking=True)
        if dev.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with tl.autocast_for(dev):
            logits = model(images)
        # fp32 loss (wtp_loss casts): the max-over-pixels log-probabilities need the precision
        loss, terms = wtp_loss(logits, present.to(dev), absent.to(dev), labels.to(dev),
                               point_weights.to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        checkpointer.check_loss(step + 1, loss, terms)
        optimizer.step()
        step += 1

        window["loss"] += loss.item()
        for key, value in terms.items():
            window[key] += value
        window_steps += 1
        bar.update(1)
        if step % log_every == 0 or step == total:
            means = {k: round(v / window_steps, 5) for k, v in window.items()}
            rate = log.images_per_second(window_steps * batch_size)
            log.write({"step": step, **means, "lr": lr, "images_per_s": round(rate, 2)})
            bar.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{lr:.2e}")
            window, window_steps = dict.fromkeys(window, 0.0), 0
        if checkpointer.due(step) and step < total:
            checkpointer.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "step": step, "rng": tl.rng_state(), "fingerprint": fingerprint})
        if on_step is not None:
            on_step(step)
    bar.close()
    if step != total:
        raise RuntimeError(f"train-wtp: data ran out at step {step} of {total}")

    report = {"iterations": total, "resumed_from": start, "images": len(records),
              "clicks": sum(len(r.clicks) for r in records),
              "seconds": round(time.perf_counter() - started, 1), "device": str(dev)}
    # As train-deeplab: the run's seconds and resume step go to the log, not the weight file.
    described = {k: v for k, v in report.items() if k not in ("resumed_from", "seconds")}
    checkpointer.finish(checkpoint_payload(model, index.classes, index.image_reading,
                                           params=deeplab, wtp=params, training=described))
    log.write({"event": "done", **report})
    return report


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--params", type=json_object, required=True,
                        help="the config's wtp section as JSON (the loss settings)")
    parser.add_argument("--deeplab-params", type=json_object, required=True,
                        help="the config's deeplab section as JSON (network, schedule, augmentation)")
    parser.add_argument("--weights", default=None,
                        help="ImageNet weight file of the backbone (used when deeplab.imagenet_weights is true)")
    parser.add_argument("--out", required=True, help="trained model (written once, at the end)")
    parser.add_argument("--log-jsonl", default=None, help="training log, one JSON object per line")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (and max DataLoader workers)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args: argparse.Namespace) -> int:
    index = DatasetIndex.load(args.index)
    report = train_wtp(index, args.params, args.deeplab_params, args.out, weights=args.weights,
                       log_jsonl=args.log_jsonl, threads=args.threads, device=args.device)
    print(f"train-wtp: {report['iterations']} iterations on {report['images']} images "
          f"({report['clicks']} clicks) in {report['seconds']} s on {report['device']} -> {args.out}")
    return 0
