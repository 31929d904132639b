"""``pcam train-cam``: train the CAM network (variant cam), or the PCAM network (pcam, pcam_full).

Spec §1. Variants differ only in the point term of the loss:

* ``cam``       alpha = 0: image-level labels only (the paper's CAM baseline, Table 1 row 1);
* ``pcam``      alpha = params.alpha with the annotators' clicks;
* ``pcam_full`` alpha = params.alpha with every non-void GT pixel as a point (Table 1 "F").

SGD with two learning-rate groups (backbone: layer3/4, or every layer when training from
scratch; classifier), poly decay per step over
epochs x floor(N / batch) steps (drop_last, reshuffled every epoch), weight decay on both.
Side-file checkpoints every ``checkpoint_every`` steps and automatic resume come from
``training_loop.Checkpointer``; the output (state dict + config + backbone depth) is written
once, at the end.

Decision D2 (momentum; spec §1.6, §12): momentum 0.9 (config ``cam.momentum``).
IRN passes weight_decay into SGD's momentum slot, so its CAM net trains with momentum 1e-4
(practically none); the PCAM paper does not say. Both were run on the demo (196 training
images, resnet18 from scratch, crop 64, resize_long [48, 80], batch 16, 10 epochs = 120 steps,
4-scale export), scoring PCAM train mIoU (%) at tau 0.30, seeds 0 / 1 / 2:

    lr backbone/classifier   momentum 0                  momentum 0.9
    0.01 / 0.1               48.6 / 37.4 / 45.8 (43.9)   59.5 / 52.4 / 53.6 (55.1)  <- kept
    0.02 / 0.2               57.9 / 44.6 / 51.0 (51.2)   55.6 / 17.8 / 51.4 (41.6)  (17.8: diverged at step 25)
    0.1 / 1.0 (IRN's LRs)    55.2 / 55.2 / 48.8 (53.1)   -

At the configured learning rates momentum 0.9 is better on every seed (mean +11.2). Without
momentum the classifier barely leaves the class priors in 120 steps. With ImageNet weights
(VOC) the decision rests on this demo evidence; re-run the comparison there if parity with
IRN matters more.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from pcam_core.cam.augment import CamTrainDataset, ResumableBatchSampler, mask_to_points, steps_for
from pcam_core.cam.loss import cam_loss
from pcam_core.cam.net import build_cam_net, resolve_cam_params
from pcam_core.cli import json_object
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.common.progress import progress_bar
from pcam_core.common.training_loop import (Checkpointer, TrainingLog, apply_poly_lr, autocast_for, pick_device,
                                     restore_rng_state, rng_state, seed_everything,
                                     set_cpu_threads, worker_seed_fn)

VARIANTS = ("cam", "pcam", "pcam_full")
MODEL_FORMAT = "pcam-cam-model/1"

# Keys that change the trained weights. A side checkpoint written under other values is stale
# (e.g. config.yaml changed between a killed run and its restart) and is not resumed.
_TRAINING_KEYS = ("backbone", "imagenet_weights", "alpha", "point_loss_form", "batch_size", "crop_size",
                  "resize_long", "epochs", "lr_backbone", "lr_classifier", "momentum", "weight_decay",
                  "poly_power", "seed")


def variant_alpha(variant: str, params: dict[str, Any]) -> float:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    return 0.0 if variant == "cam" else float(params["alpha"])


def _fingerprint(variant: str, params: dict[str, Any], num_images: int, class_names) -> str:
    return json.dumps({"variant": variant, "images": num_images, "classes": list(class_names),
                       **{k: params[k] for k in _TRAINING_KEYS}}, sort_keys=True)


def train_cam(index_path: str | Path, variant: str, params: dict[str, Any], out: str | Path, *,
              weights: str | Path | None = None, log_jsonl: str | Path | None = None, threads: int = 1,
              device: str = "auto", step_hook: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train (or resume) and write ``out``; returns a small summary (steps, start step, seconds).

    ``step_hook(step)`` runs after every completed step and its checkpoint; tests use it to
    interrupt a run, benchmarks to stop early.
    """
    params = resolve_cam_params(params)
    alpha = variant_alpha(variant, params)
    dev = pick_device(device)
    set_cpu_threads(threads)
    seed_everything(int(params["seed"]))

    index = DatasetIndex.load(index_path)
    records = index.training_records()
    num_classes = index.classes.num_object_classes
    dataset = CamTrainDataset(records, params["crop_size"], params["resize_long"], num_classes,
                              with_mask=(variant == "pcam_full" and alpha > 0),
                              reading=index.image_reading)
    if dataset.without_mask:
        print(f"train-cam: {dataset.without_mask} of {len(records)} images have no GT mask and give "
              "no points in pcam_full", file=sys.stderr)
    batch_size = int(params["batch_size"])
    total_steps = steps_for(len(dataset), batch_size, params["epochs"])
    if total_steps == 0:
        raise ValueError(f"no training steps: {len(dataset)} images, batch {batch_size}, "
                         f"{params['epochs']} epochs")

    model = build_cam_net(params, weights, num_classes=num_classes).to(dev)
    backbone_params, classifier_params = model.param_groups()
    optimizer = torch.optim.SGD(
        [{"params": backbone_params, "lr": params["lr_backbone"]},
         {"params": classifier_params, "lr": params["lr_classifier"]}],
        lr=params["lr_backbone"], momentum=params["momentum"], weight_decay=params["weight_decay"])
    channels_last = dev.type == "cuda"  # NHWC convolutions are faster under bf16 on tensor cores
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    checkpointer = Checkpointer(out, params["checkpoint_every"], command="train-cam",
                                hint="Lower cam.lr_backbone / cam.lr_classifier, or check the index's "
                                     "image labels and clicks.")
    fingerprint = _fingerprint(variant, params, len(dataset), index.classes.names)
    start_step = 0
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest to the device.
    state = checkpointer.load(map_location="cpu", fingerprint=fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        start_step = int(state["step"])
        print(f"train-cam: resuming from {checkpointer.side_file} at step {start_step}/{total_steps}",
              file=sys.stderr)

    workers = max(0, min(int(params["num_workers"]), int(threads)))
    sampler = ResumableBatchSampler(len(dataset), batch_size, total_steps, int(params["seed"]), start_step)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0, worker_init_fn=worker_seed_fn)

    log = TrainingLog(log_jsonl)
    model.train()  # frozen-stats BN ignores it; from scratch, BN uses batch statistics
    started = time.perf_counter()
    bar = progress_bar(total_steps, start_step, f"train-cam {variant}")
    step = start_step
    crop = int(params["crop_size"])
    for step, batch in zip(range(start_step, total_steps), loader):
        lr = apply_poly_lr(optimizer, step, total_steps, params["poly_power"])
        images = batch["image"].to(dev, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch["label"].to(dev, non_blocking=True)
        if "mask" in batch:
            points, counts = mask_to_points(batch["mask"].to(dev, non_blocking=True))
        else:
            points = batch["points"].to(dev, non_blocking=True)
            counts = batch["count"].to(dev, non_blocking=True)
        with autocast_for(dev):
            if alpha > 0:
                logits, cam = model(images, with_cam=True)
            else:
                logits, cam = model(images), None
        # Losses in fp32 (cam_loss casts): the max-normalisation divides by small maxima.
        losses = cam_loss(logits, cam, labels, alpha, points, counts, (crop, crop), params["point_loss_form"])
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        checkpointer.check_loss(step + 1, losses.total, {"loss_img": losses.image, "loss_pt": losses.point})
        optimizer.step()

        done = step + 1
        record = {"step": done, "loss": losses.total.item(), "loss_img": losses.image.item(),
                  "loss_pt": losses.point.item() if losses.point is not None else 0.0,
                  "images_with_points": losses.images_with_points,
                  "lr": lr, "lr_classifier": optimizer.param_groups[1]["lr"],
                  "images_per_s": round(log.images_per_second(len(images)), 2)}
        log.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
        if checkpointer.due(done) and done < total_steps:
            checkpointer.save({"fingerprint": fingerprint, "step": done, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "rng": rng_state()})
        if step_hook is not None:
            step_hook(done)
    bar.close()

    seconds = time.perf_counter() - started
    checkpointer.finish({
        "format": MODEL_FORMAT, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "backbone": params["backbone"], "frozen": model.frozen, "variant": variant, "alpha": alpha, "config": params,
        "steps": total_steps, "train_images": len(dataset),
        "num_classes": num_classes, "classes": index.classes.to_json(),
    })
    summary = {"variant": variant, "steps": total_steps, "start_step": start_step,
               "seconds": round(seconds, 2), "train_images": len(dataset)}
    print(f"train-cam: {json.dumps(summary)}", file=sys.stderr)
    return summary


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--variant", required=True, choices=VARIANTS,
                        help="cam: alpha 0; pcam: clicks; pcam_full: every GT pixel a point")
    parser.add_argument("--params", type=json_object, default={}, help="the cam: config section as JSON")
    parser.add_argument("--weights", default=None,
                        help="ImageNet backbone weights (.pth), used when cam.imagenet_weights is true")
    parser.add_argument("--out", required=True, help="model.pt (side checkpoint: model.pt.ckpt)")
    parser.add_argument("--log-jsonl", default=None, help="JSON-lines training log (appended)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (also caps DataLoader workers)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")


def main(args) -> int:
    train_cam(args.index, args.variant, args.params, args.out, weights=args.weights,
              log_jsonl=args.log_jsonl, threads=args.threads, device=args.device)
    return 0
