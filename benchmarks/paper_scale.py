"""Paper-scale timing: how long the VOC pipeline (config_voc2012.yaml) takes on this machine.

Generating and processing VOC's 12,031 images would not fit the ten minutes a lent GPU gives
one command, so this measures a SAMPLE and extrapolates by counts:

1. ``generate_voc_sample`` writes a few hundred-kB JPEGs at VOC's typical size (375 x 500) in
   VOC's on-disk layout (VOCdevkit/VOC2012 + SBD's cls/*.mat + the click JSON), drawn by the
   demo renderer, and ``pcam build-index`` indexes them as a voc2012 dataset.
2. Every stage runs as the pipeline runs it, a ``pcam <command>`` process with the settings of
   config_voc2012.yaml (ImageNet-layout weights with random values: the values do not change
   the cost), on the sample:
   * training stages once, for a few steps; the JSON-lines training log gives each step's
     time, the first ``WARMUP_STEPS`` are dropped (DataLoader start, cuDNN, allocator);
   * per-image stages on two shards of different sizes: the difference gives the cost per
     image, the rest is the job's fixed cost (process start, imports, model load), paid once
     per shard job.
3. ``extrapolate`` scales each to the full schedule: 10,582 train_aug + 1,449 val images,
   5 CAM epochs, 3 IRNet epochs, 30k DeepLab iterations, ``shards`` jobs per per-image stage.

Stages are summed as if they ran one after another (an upper bound: Snakemake overlaps the CPU
stages of one variant with GPU jobs of another). Not timed: building the index and the shard
lists, CAM scoring (Table 1), calibration sweeps (config_voc2012 uses fixed thresholds),
evaluation, figures and the summary: CPU work of seconds to minutes.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# VOC 2012 + SBD (spec §0.1 and §13): train_aug = (VOC train ∪ SBD) \ VOC val.
VOC_COUNTS = {"train_aug": 10_582, "val": 1_449}
VOC_HW = (375, 500)  # the typical VOC image, H x W (spec §5.5's table)
# Steps of a training log left out as warm-up: the first waits for the DataLoader workers and
# cuDNN's algorithm search, the second still finds the allocator growing.
WARMUP_STEPS = 2


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class SampleSize:
    """What one run measures: image size, sample counts, training steps, backbone depths.

    ``paper``: VOC-sized images and config_voc2012's networks, crops and batches.
    ``tiny``: small images and resnet18s, to prove the harness end to end on a CPU; its
    hours are NOT the paper's (the rows say so).
    """

    name: str
    image_hw: tuple[int, int]
    train_small: int  # train_aug images of the small shard; the large one has train_large
    train_large: int
    val_small: int
    val_large: int
    cam_epochs: int  # over the sample's train_aug images
    irn_epochs: int
    deeplab_iterations: int
    overrides: dict = field(default_factory=dict)  # config sections' keys replaced

    @property
    def train_images(self) -> int:
        return self.train_small + self.train_large

    @property
    def val_images(self) -> int:
        return self.val_small + self.val_large


SIZES = {
    # 48 train_aug images: 3 CAM steps per epoch at batch 16 (x3 epochs = 9 steps, 7 timed),
    # 1 IRNet step per epoch at batch 32 (x8 = 8, 6 timed); DeepLab cycles them, 8 iterations.
    # Shards of 12 and 36 train_aug (+4 and 12 val) images: the 24-image difference is what
    # the per-image cost is measured on.
    "paper": SampleSize("paper", VOC_HW, 12, 36, 4, 12, cam_epochs=3, irn_epochs=8,
                        deeplab_iterations=8),
    # CPU proof: 16 images of 64 x 80, resnet18s, batch 4, 64-pixel crops.
    "tiny": SampleSize("tiny", (64, 80), 4, 12, 1, 3, cam_epochs=2, irn_epochs=4, deeplab_iterations=6,
                       overrides={
                           "cam": {"backbone": "resnet18", "batch_size": 4, "crop_size": 64,
                                   "resize_long": [64, 96]},
                           "irn": {"backbone": "resnet18", "batch_size": 4, "crop_size": 96},  # r 10 needs > 72
                           "deeplab": {"backbone": "resnet18", "batch_size": 4, "crop_size": 65},
                       }),
}


# ----------------------------------------------------------------------------- settings
def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra``'s keys replacing its own, recursively (as --configfile does)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def voc_settings(size: SampleSize, repo: Path = REPO) -> dict:
    """config.yaml + config_voc2012.yaml (what `--configfile config_voc2012.yaml` runs), with
    the size's overrides (none at the paper size)."""
    import yaml

    config = yaml.safe_load((repo / "config.yaml").read_text())
    config = deep_merge(config, yaml.safe_load((repo / "config_voc2012.yaml").read_text()))
    return deep_merge(config, size.overrides)


# ----------------------------------------------------------------------------- data
def sample_ids(size: SampleSize) -> dict[str, list[str]]:
    """VOC-style ids of the sample's shards: train_aug small/large, val small/large."""
    counts = {"train_small": size.train_small, "train_large": size.train_large,
              "val_small": size.val_small, "val_large": size.val_large}
    ids, k = {}, 0
    for part, n in counts.items():
        year = 2012 if part.startswith("val") else 2011
        ids[part] = [f"{year}_{k + i:06d}" for i in range(n)]
        k += n
    return ids


def generate_voc_sample(out: Path, size: SampleSize, seed: int = 0) -> dict:
    """Write the sample in VOC's layout; returns the roots, the click file and the shard ids.

    Every 4th train_aug image is a VOC train image (palette PNG mask with void bands), the
    others SBD-only (cls/*.mat), val images have VOC masks: the two mask sources the index
    reads for VOC. Images have VOC's typical size; each has 1-3 objects and person-like clicks.
    """
    from pcam_core.common.class_list import IGNORE_INDEX
    from pcam_core.data.demo_dataset import (annotation_xml, jpeg_bytes, mat_bytes, person_clicks,
                                             png_bytes, render_image, void_bands)

    out = Path(out)
    voc, sbd = out / "VOCdevkit" / "VOC2012", out / "benchmark_RELEASE" / "dataset"
    for folder in (voc / "JPEGImages", voc / "SegmentationClass", voc / "Annotations",
                   voc / "ImageSets" / "Segmentation", sbd / "cls"):
        folder.mkdir(parents=True, exist_ok=True)
    ids = sample_ids(size)
    train_aug = ids["train_small"] + ids["train_large"]
    val = ids["val_small"] + ids["val_large"]
    voc_train = train_aug[::4]
    with_png = set(voc_train) | set(val)
    points = {}
    h, w = size.image_hw
    for n, image_id in enumerate(train_aug + val):
        rng = np.random.default_rng([seed, n])
        picture = render_image(rng, h, w)
        while not picture.instance_classes:  # an image-level label is needed to train on it
            picture = render_image(rng, h, w)
        points[image_id] = person_clicks(rng, picture)
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg_bytes(picture.rgb))
        label = picture.label
        if image_id in with_png:
            label = label.copy()
            label[void_bands(picture.instances, rng)] = IGNORE_INDEX
            (voc / "SegmentationClass" / f"{image_id}.png").write_bytes(png_bytes(label))
        else:
            (sbd / "cls" / f"{image_id}.mat").write_bytes(mat_bytes(label))
        (voc / "Annotations" / f"{image_id}.xml").write_bytes(
            annotation_xml(image_id, picture, segmented=image_id in with_png))
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in voc_train))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in sorted(voc_train + val)))
    sbd_only = [i for i in train_aug if i not in with_png]
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_only[::2]))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_only[1::2]))
    (out / "points.json").write_text(json.dumps(points))
    return {"voc_root": voc, "sbd_root": sbd, "points": out / "points.json", "ids": ids}


def fake_imagenet_weights(depth: str, out: Path) -> Path:
    """A torchvision state dict in the ImageNet layout with random values: the pipeline's
    frozen-backbone code path (imagenet_weights: true) without the download. Values do not
    change the cost."""
    import torch
    import torchvision

    path = Path(out) / f"{depth}-random.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, depth)(weights=None).state_dict(), path)
    return path


# ----------------------------------------------------------------------------- arithmetic
def log_step_seconds(log_path: Path, batch_size: int) -> list[float]:
    """Seconds of each logged interval of a pcam training log, per step.

    Every line with ``images_per_s`` covers the steps since the previous such line, timed by
    ``TrainingLog`` from one write to the next (data loading included)."""
    seconds, previous = [], 0
    for line in Path(log_path).read_text().splitlines():
        record = json.loads(line)
        if "images_per_s" not in record or "step" not in record:
            continue
        steps = int(record["step"]) - previous
        previous = int(record["step"])
        if steps <= 0 or record["images_per_s"] <= 0:
            continue
        per_step = batch_size / float(record["images_per_s"])
        seconds.extend([per_step] * steps)
    return seconds


def steady_step_seconds(step_seconds: list[float], warmup: int = WARMUP_STEPS) -> float:
    """Median time of the steps after the warm-up (the median ignores one slow outlier)."""
    steady = step_seconds[warmup:]
    if not steady:
        raise ValueError(f"{len(step_seconds)} logged steps: none left after {warmup} warm-up steps")
    return float(np.median(steady))


def marginal_cost(small: tuple[int, float], large: tuple[int, float]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit) from two runs (units, seconds) of different sizes."""
    (n1, t1), (n2, t2) = small, large
    if n2 <= n1:
        raise ValueError(f"the large run must have more units than the small one ({n2} <= {n1})")
    per_unit = max(0.0, (t2 - t1) / (n2 - n1))
    return max(0.0, t1 - n1 * per_unit), per_unit


@dataclass
class StageCost:
    """One stage at full scale: ``jobs`` x ``fixed_s`` + ``units`` x ``per_unit_s``."""

    stage: str
    unit: str
    per_unit_s: float
    units: int
    fixed_s: float = 0.0
    jobs: int = 1
    note: str = ""

    @property
    def seconds(self) -> float:
        return self.jobs * self.fixed_s + self.units * self.per_unit_s

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def schedule(settings: dict, counts: dict[str, int] = VOC_COUNTS) -> dict[str, int]:
    """Units of every stage for one variant at full scale (epochs x full batches, as the
    training commands count them; per-image stages: the images each one processes)."""
    from pcam_core.cam.augment import steps_for

    train_aug, val = counts["train_aug"], counts["val"]
    cam, irn = settings["cam"], settings["irn"]
    return {
        "train_cam": steps_for(train_aug, int(cam["batch_size"]), cam["epochs"]),
        "export_cams": train_aug + val,
        "mine_ir_labels": train_aug,
        "train_irn": int(irn["epochs"]) * (train_aug // int(irn["batch_size"])),
        "random_walk": train_aug + val,
        "pseudo_labels": train_aug + val,
        "train_deeplab": int(settings["deeplab"]["iterations"]),
        "predict_val": val,
    }


def total_hours(costs: list[StageCost]) -> float:
    return sum(c.hours for c in costs)


# ----------------------------------------------------------------------------- running stages
class StageFailed(RuntimeError):
    pass


def pcam(args: list[str], log: Path, timeout: float, env: dict | None = None) -> float:
    """Run ``pcam <args>`` as its own process, as a Snakemake job does; returns wall seconds."""
    command = [sys.executable, "-m", "pcam_core.cli", *[str(a) for a in args]]
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PCAM_NO_PROGRESS", "1")
    start = time.perf_counter()
    with open(log, "w") as handle:
        try:
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                    timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            raise StageFailed(f"pcam {args[0]} ran past the {timeout:.0f} s left of the budget") from None
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = " | ".join(Path(log).read_text().strip().splitlines()[-3:])
        raise StageFailed(f"pcam {args[0]} exited {result.returncode}: {tail[-300:]}")
    return seconds


def run_sample(work: Path, size: SampleSize, device: str, time_left: Callable[[], float],
               say: Callable[[str], None] = print, threads: int | None = None) -> dict:
    """Generate the sample and run every stage on it; returns the measured costs.

    Result keys: ``generated_s``, ``measured`` {stage: dict(per_unit_s, fixed_s, unit, ...)},
    ``skipped`` {stage: why}, ``settings`` (the effective config). Stops at the first failure
    (later stages need its output) and records why.
    """
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count() or 1
    settings = voc_settings(size)
    measured: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    out = {"measured": measured, "skipped": skipped, "settings": settings}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)

    start = time.perf_counter()
    data = generate_voc_sample(work / "dataset", size)
    out["generated_s"] = time.perf_counter() - start
    say(f"paper_scale: {size.train_images + size.val_images} images of {size.image_hw[1]}x{size.image_hw[0]} "
        f"generated in {out['generated_s']:.1f} s")
    ids = data["ids"]
    index = work / "index.json"
    shards = {}
    for name in ("small", "large"):
        shards[name] = work / f"shard_{name}.txt"
        shards[name].write_text("".join(f"{i}\n" for i in ids[f"train_{name}"] + ids[f"val_{name}"]))
    weights = {stage: fake_imagenet_weights(settings[stage]["backbone"], work)
               for stage in ("cam", "irn", "deeplab")}
    # Workers: the configured ones, but never more than the machine's cores.
    for stage in ("cam", "irn", "deeplab"):
        settings[stage]["num_workers"] = min(int(settings[stage]["num_workers"]), threads)
    cam, irn, deeplab, walk = (settings[k] for k in ("cam", "irn", "deeplab", "random_walk"))

    def run(stage: str, args: list[str], log_name: str) -> float:
        return pcam(args, logs / f"{log_name}.log", time_left())

    def per_image(stage: str, unit_counts: dict[str, int], make_args: Callable[[str], list[str]]) -> None:
        times = {name: run(stage, make_args(name), f"{stage}_{name}") for name in ("small", "large")}
        fixed, per = marginal_cost((unit_counts["small"], times["small"]),
                                   (unit_counts["large"], times["large"]))
        measured[stage] = {"unit": "image", "per_unit_s": per, "fixed_s": fixed,
                           "sample": f"{unit_counts['small']} + {unit_counts['large']} images "
                                     f"in {times['small']:.1f} + {times['large']:.1f} s"}
        say(f"paper_scale: {stage}: {per * 1000:.1f} ms/image + {fixed:.1f} s per job")

    def training(stage: str, args: list[str], log_jsonl: Path, batch: int) -> None:
        wall = run(stage, args, stage)
        steps = log_step_seconds(log_jsonl, batch)
        per = steady_step_seconds(steps)
        measured[stage] = {"unit": "step", "per_unit_s": per, "fixed_s": max(0.0, wall - len(steps) * per),
                           "sample": f"{len(steps)} steps ({len(steps) - WARMUP_STEPS} timed) in {wall:.1f} s"}
        say(f"paper_scale: {stage}: {per:.3f} s/step ({batch / per:.1f} images/s)")

    train_counts = {"small": size.train_small, "large": size.train_large}
    all_counts = {n: train_counts[n] + (size.val_small if n == "small" else size.val_large) for n in train_counts}
    val_counts = {"small": size.val_small, "large": size.val_large}
    try:
        run("build_index", ["build-index", "--name", "voc2012", "--voc-root", data["voc_root"],
                            "--sbd-root", data["sbd_root"], "--points", data["points"], "--out", index,
                            "--report-json", work / "data_report.json", "--report-md", work / "data_report.md"],
                "build_index")
        cam_params = dict(cam, epochs=size.cam_epochs)
        training("train_cam", ["train-cam", "--index", index, "--variant", "pcam", "--params",
                               json.dumps(cam_params), "--weights", weights["cam"], "--out", work / "cam.pt",
                               "--log-jsonl", work / "cam_log.jsonl", "--threads", threads, "--device", device],
                 work / "cam_log.jsonl", int(cam["batch_size"]))
        per_image("export_cams", all_counts, lambda n: [
            "export-cams", "--index", index, "--shard", shards[n], "--model", work / "cam.pt",
            "--params", json.dumps(cam), "--out", work / f"cams_{n}.h5", "--threads", threads,
            "--device", device])
        mining = {"crf": bool(irn["crf"]), "crf_iterations": irn["crf_iterations"],
                  "fg_threshold": irn["fg_threshold"], "bg_threshold": irn["bg_threshold"]}
        if importlib.util.find_spec("pydensecrf") is None:
            mining["crf"] = False
            skipped["mine_ir_labels"] = ("pydensecrf2 not importable: mined WITHOUT the dense CRF (the "
                                         "paper runs 2 CRFs per image), so this time is too low")
        per_image("mine_ir_labels", train_counts, lambda n: [
            "mine-ir-labels", "--index", index, "--shard", shards[n], "--cams", work / f"cams_{n}.h5",
            "--params", json.dumps(mining), "--out-dir", work / f"ir_labels_{n}", "--threads", threads])
        irn_params = {k: v for k, v in irn.items() if k not in ("crf", "crf_iterations", "fg_threshold",
                                                                "bg_threshold")}
        irn_params["epochs"] = size.irn_epochs
        training("train_irn", ["train-irn", "--index", index, "--ir-label-dirs", work / "ir_labels_small",
                               work / "ir_labels_large", "--params", json.dumps(irn_params),
                               "--weights", weights["irn"], "--out", work / "irn.pt",
                               "--log-jsonl", work / "irn_log.jsonl", "--threads", threads, "--device", device],
                 work / "irn_log.jsonl", int(irn["batch_size"]))
        walk_params = {k: v for k, v in walk.items() if k != "bg_threshold"}
        per_image("random_walk", all_counts, lambda n: [
            "random-walk", "--index", index, "--shard", shards[n], "--cams", work / f"cams_{n}.h5",
            "--irn", work / "irn.pt", "--params", json.dumps(walk_params), "--out", work / f"walk_{n}.h5",
            "--threads", threads, "--device", device])
        per_image("pseudo_labels", all_counts, lambda n: [
            "pseudo-labels", "--index", index, "--shard", shards[n], "--walk", work / f"walk_{n}.h5",
            "--bg-threshold", walk["bg_threshold"], "--out-dir", work / f"pseudo_{n}"])
        training("train_deeplab", ["train-deeplab", "--index", index, "--label-dirs", work / "pseudo_small",
                                   work / "pseudo_large", "--params",
                                   json.dumps(dict(deeplab, iterations=size.deeplab_iterations)),
                                   "--weights", weights["deeplab"], "--out", work / "deeplab.pt",
                                   "--log-jsonl", work / "deeplab_log.jsonl", "--threads", threads,
                                   "--device", device],
                 work / "deeplab_log.jsonl", int(deeplab["batch_size"]))
        per_image("predict_val", val_counts, lambda n: [
            "predict", "--checkpoint", work / "deeplab.pt", "--index", index, "--shard", shards[n],
            "--split", "val", "--out-dir", work / f"predictions_{n}",
            "--true-classes-out-dir", work / f"predictions_true_{n}", "--threads", threads,
            "--device", device])
    except (StageFailed, ValueError, OSError) as error:
        out["failed"] = str(error)
        say(f"paper_scale: stopped: {error}")
    return out


def extrapolate(measured: dict[str, dict], settings: dict,
                counts: dict[str, int] = VOC_COUNTS) -> list[StageCost]:
    """Full-scale costs of the measured stages for one variant (``settings['shards']`` jobs
    per per-image stage, one per training stage)."""
    units = schedule(settings, counts)
    shards = int(settings["shards"])
    costs = []
    for stage, m in measured.items():
        if stage not in units:
            continue
        jobs = 1 if m["unit"] == "step" else shards
        costs.append(StageCost(stage, m["unit"], m["per_unit_s"], units[stage], m["fixed_s"], jobs,
                               m.get("sample", "")))
    return costs


def format_hours(hours: float) -> str:
    if not math.isfinite(hours):
        return "n/a"
    return f"{hours:.2f} h" if hours >= 0.1 else f"{hours * 60:.1f} min"
