"""Quality gates: measured checks of each stage of one variant, with what to change when one warns.

A user on new data cannot see why the final mIoU is low; these checks point at the stage.
Each gate has a value, the range it is expected in, pass/warn and an advice line. The
ranges come from the failures measured in issue 9 (an independent VOC-format dataset with
the demo's fixed thresholds) against the same data after calibration, and from both demo
styles; each constant below says which numbers it separates.

1. CAM classifier: final image-level training loss / the loss of always predicting each
   class's frequency (the class-prior baseline). Near 1 the classifier learnt nothing, and
   no threshold can make its maps useful.
2. IR labels (after the CRF) on masked train images: foreground class precision and coverage.
3. IRNet boundaries on the walk's stride-4 grid: mean on ground-truth edges vs object
   interiors vs background. A boundary map as high inside objects as on their outlines
   (texture, not outlines) pushes the walk's seeds out of the objects.
4. Pseudo labels: foreground fraction of the train pseudo labels / that of the masks.
5. Table 3 like for like: DeepLab restricted to each image's true classes (as the val pseudo
   labels are) against the refined val maps.

Those five need the PCAM branch (CAM, IR labels, IRNet, pseudo labels). The variants
without it get the gates that apply to theirs:

* ``pmp_blot``: 6. the point blots' pixel accuracy and 7. coverage on the masked train
  images (what DeepLab learns from), and 8. DeepLab's foreground fraction on val;
* ``wtp``: 8. DeepLab's foreground fraction on val: trained from clicks alone, DeepLab
  must learn the objects' extent, which "What's the point" without its objectness prior
  gets wrong first (the paper names the local minima: a small part of the object, or all
  background; on the demo, with no background click, objects spread over the background).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pcam_core.common.atomic_output import write_text
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.dataset_index import DatasetIndex

GATES_FORMAT = "pcam-quality-gates/1"

# 1. Measured on the demo: the colour style trains to 0.62-0.66 of the baseline, the shape
#    style to 0.83-0.86 with 96-px crops (usable maps: PCAM val 50) but 0.95 with 64-px crops
#    (maps so poor that the random walk made them worse). Above 0.9 the classifier has
#    barely moved from the class prior.
CAM_LOSS_RATIO_MAX = 0.9
# 2. Precision 0.43 (issue 9, fixed τ_fg 0.30) broke IRNet; 0.6+ after calibration fixed it.
IR_PRECISION_MIN = 0.6
#    With 1 % of the objects labelled (shape demo, τ_fg 0.8) IRNet learnt texture (boundary
#    gate 0.69); the colour demo's working runs label 33-85 %.
IR_COVERAGE_MIN = 0.10
# 3. interior / edge boundary: 1.03 in the failure (0.36 / 0.35), 0.32 after calibration.
BOUNDARY_INTERIOR_RATIO_MAX = 0.6
# 4. 58 % predicted against 20 % true (ratio 2.9) in the failure; within 1.5x either way the
#    walk keeps objects at their size.
FG_FRACTION_RATIO_RANGE = (1 / 1.5, 1.5)
# 5. Table 3 may fall this far below Table 2 (the summary's FINAL_TOLERANCE, same reason).
LIKE_FOR_LIKE_TOLERANCE = 0.03
# The CAM loss is the mean over the last tenth of training (a single step is noisy).
LOSS_TAIL_FRACTION = 0.1
# 6. The point blots are right on 97.7-99.2 % of the pixels they label on both demo styles
#    (seeds 0 and 1); DeepLab learns every labelled pixel at full weight, and below 90 % one in
#    ten teaches it a wrong class.
BLOT_ACCURACY_MIN = 0.9
# 7. The demo's blots label 13-15 % of the pixels. Blots of 4.5 % (walks stopped by every
#    texture stripe) still trained DeepLab to within 2.5 points of them (colour and shape,
#    seed 0); below half that, nothing was measured to work.
BLOT_COVERAGE_MIN = 0.02
# 8. DeepLab's own predictions, as gate 4 for the labels: within 1.5x of the masks' fraction.
FINAL_FG_FRACTION_RATIO_RANGE = FG_FRACTION_RATIO_RANGE
# Variants with the PCAM branch (CAM -> IRNet -> pseudo labels) and their gates 1-5.
CAM_VARIANTS = ("cam", "pcam", "pcam_full")


def gate(name: str, title: str, value, expected: str, passed: bool | None, advice: str,
         **details) -> dict:
    """One gate as JSON: status pass / warn / not measured (value None)."""
    status = "not measured" if passed is None else ("pass" if passed else "warn")
    return {"name": name, "title": title, "value": value, "expected": expected, "status": status,
            "advice": advice if status == "warn" else "", **details}


# ----------------------------------------------------------------------------- 1. CAM loss
def class_prior_loss(label_vectors: np.ndarray) -> float:
    """Multilabel soft-margin loss of constant logits at the class frequencies (the entropy)."""
    p = np.clip(label_vectors.mean(axis=0), 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


def final_image_loss(log_path: str | Path) -> float | None:
    """Mean ``loss_img`` over the last tenth of the CAM training steps."""
    records = []
    for line in Path(log_path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if "loss_img" in record:
                records.append(record)
    if not records:
        return None
    # The log of a resumed run repeats steps: keep the last entry of each.
    by_step = {r["step"]: r["loss_img"] for r in records}
    steps = sorted(by_step)
    tail = steps[-max(1, int(math.ceil(LOSS_TAIL_FRACTION * len(steps)))):]
    return float(np.mean([by_step[s] for s in tail]))


def cam_loss_gate(index: DatasetIndex, log_path: str | Path) -> dict:
    n = index.classes.num_object_classes
    records = index.training_records()
    vectors = np.zeros((len(records), n), np.float32)
    for i, record in enumerate(records):
        for cls in record.classes:
            vectors[i, cls - 1] = 1
    baseline = class_prior_loss(vectors) if len(records) else None
    loss = final_image_loss(log_path)
    ratio = None if loss is None or not baseline else round(loss / baseline, 4)
    return gate("cam_image_loss", "CAM classifier: image-level loss / class-prior baseline", ratio,
                f"<= {CAM_LOSS_RATIO_MAX}", None if ratio is None else ratio <= CAM_LOSS_RATIO_MAX,
                "the classifier barely beats guessing class frequencies: train longer (cam.epochs), "
                "raise cam.lr_backbone / cam.lr_classifier, or start from ImageNet weights "
                "(cam.imagenet_weights)", loss=loss, baseline=baseline)


# ----------------------------------------------------------------------------- 2. IR labels
def ir_label_gates(index: DatasetIndex, ir_label_dirs: Sequence[str | Path], max_images: int) -> list[dict]:
    from pcam_core.calibration.calibration_file import calibration_records
    from pcam_core.common.label_png import find_label_files, read_label_png

    files = {}
    for directory in ir_label_dirs:
        files.update(find_label_files(directory))
    records = calibration_records(index, files, max_images)
    correct = labelled_fg = true_fg = 0
    for record in records:
        gt = record.load_gt_mask()
        label = read_label_png(files[record.id])
        valid = gt != IGNORE_INDEX
        fg = (label != IGNORE_INDEX) & (label > 0) & valid
        labelled_fg += int(fg.sum())
        correct += int((fg & (label == gt)).sum())
        true_fg += int(((gt > 0) & valid).sum())
    precision = round(correct / labelled_fg, 4) if labelled_fg else None
    coverage = round(correct / true_fg, 4) if true_fg else None
    measured = bool(records)
    return [
        gate("ir_fg_precision", "IR labels: confident foreground that is the right class", precision,
             f">= {IR_PRECISION_MIN}", (precision is not None and precision >= IR_PRECISION_MIN)
             if measured else None,
             "IRNet learns from impure foreground: raise calibration.ir_fg_precision "
             "(or irn.fg_threshold with calibration: fixed)", images=len(records)),
        gate("ir_fg_coverage", "IR labels: ground-truth foreground labelled confidently", coverage,
             f">= {IR_COVERAGE_MIN}", (coverage is not None and coverage >= IR_COVERAGE_MIN)
             if measured else None,
             "too little confident foreground for IRNet: lower calibration.ir_fg_precision "
             "(or irn.fg_threshold), or improve the CAMs (gate 1)", images=len(records)),
    ]


# ----------------------------------------------------------------------------- 3. boundaries
def boundary_regions(mask: np.ndarray, grid_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Masks of the stride-4 grid cells on GT edges, object interiors and background.

    A cell covers a 4x4 block of pixels: it is an edge when the block holds two classes, or
    void (VOC marks outlines void) beside a class; interior / background when the whole block
    is one object class / background. All-void blocks belong to none.
    """
    h, w = grid_hw
    padded = np.pad(mask, ((0, 4 * h - mask.shape[0]), (0, 4 * w - mask.shape[1])), mode="edge")
    blocks = padded.reshape(h, 4, w, 4).transpose(0, 2, 1, 3).reshape(h, w, 16).astype(np.int32)
    void = blocks == IGNORE_INDEX
    real = np.where(void, -1, blocks)
    high = real.max(axis=-1)
    low = np.where(void, 1 << 20, blocks).min(axis=-1)
    any_real = high >= 0
    edge = any_real & ((low != high) | void.any(axis=-1))
    uniform = any_real & ~edge
    return {"edge": edge, "interior": uniform & (high > 0), "background": uniform & (high == 0)}


def boundary_gate(index: DatasetIndex, walk_stores: Sequence[str | Path], max_images: int) -> dict:
    from pcam_core.calibration.calibration_file import calibration_records
    from pcam_core.irn.walk_store import WalkStore

    sums = {"edge": 0.0, "interior": 0.0, "background": 0.0}
    counts = dict.fromkeys(sums, 0)
    with WalkStore(list(walk_stores)) as store:
        records = calibration_records(index, store.ids(), max_images)
        for record in records:
            boundary = store[record.id].boundary.astype(np.float32)
            regions = boundary_regions(record.load_gt_mask(), boundary.shape)
            for name, where in regions.items():
                sums[name] += float(boundary[where].sum())
                counts[name] += int(where.sum())
    means = {k: (round(sums[k] / counts[k], 4) if counts[k] else None) for k in sums}
    ratio = None
    if means["edge"] and means["interior"] is not None:
        ratio = round(means["interior"] / means["edge"], 4)
    return gate("boundary_contrast", "IRNet: boundary inside objects / on their edges", ratio,
                f"<= {BOUNDARY_INTERIOR_RATIO_MAX}",
                None if ratio is None else ratio <= BOUNDARY_INTERIOR_RATIO_MAX,
                "IRNet marks object interiors (texture), not outlines, and the walk will leak: check "
                "the IR-label gates first; then train IRNet longer (irn.epochs)",
                mean_edge=means["edge"], mean_interior=means["interior"],
                mean_background=means["background"], images=len(records))


# ----------------------------------------------------------------------------- 4, 5. labels
def _metrics(path: str | Path | None) -> dict | None:
    if not path:
        return None
    data = json.loads(Path(path).read_text())
    return data if data.get("miou") is not None else None


def foreground_fractions(metrics: dict | None) -> tuple[float | None, float | None, float | None]:
    """(predicted, true, predicted / true) foreground fractions of a metrics confusion matrix."""
    if not metrics:
        return None, None, None
    m = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    total = m.sum()
    predicted = round(float(m[:, 1:].sum() / total), 4)
    true = round(float(m[1:, :].sum() / total), 4)
    return predicted, true, (round(predicted / true, 4) if true else None)


def foreground_fraction_gate(pseudo_train: dict | None) -> dict:
    predicted, true, value = foreground_fractions(pseudo_train)
    low, high = FG_FRACTION_RATIO_RANGE
    return gate("pseudo_fg_fraction", "Pseudo labels (train): foreground fraction / the masks'", value,
                f"{low:.2f} to {high:.2f}", None if value is None else low <= value <= high,
                "the pseudo labels' objects are too large (ratio > 1: raise random_walk.bg_threshold "
                "with calibration: fixed, check the boundary gate) or too small (ratio < 1: lower it)",
                predicted=predicted, masks=true)


def final_foreground_fraction_gate(deeplab_val: dict | None, variant: str) -> dict:
    """8. DeepLab's val predictions: foreground fraction / the masks' (variants without CAMs)."""
    predicted, true, value = foreground_fractions(deeplab_val)
    low, high = FINAL_FG_FRACTION_RATIO_RANGE
    if variant == "wtp":
        advice = ("DeepLab trained on the clicks alone misjudges the objects' extent: with no "
                  "background click only the background's most confident pixel is supervised, so "
                  "objects spread (ratio > 1; on the demo up to 5x), or they shrink to the clicks "
                  "(ratio < 1), the failures Bearman et al. add their objectness prior against. "
                  "Use pmp_blot or pcam, whose labels carry the extent")
    else:
        advice = ("DeepLab's objects are too large (ratio > 1) or too small (ratio < 1) for its "
                  "labels: check the blot gates; too few background blots (pmp.bg_points_per_click) "
                  "make objects grow, too small object blots (pmp.walk_steps, pmp.iterations) shrink them")
    return gate("final_fg_fraction", "DeepLab (val): foreground fraction / the masks'", value,
                f"{low:.2f} to {high:.2f}", None if value is None else low <= value <= high,
                advice, predicted=predicted, masks=true)


def blot_gates(blots_train: dict | None) -> list[dict]:
    """6, 7. The point blots on the masked train images (``pcam score-blots``)."""
    accuracy = coverage = None
    if blots_train:
        accuracy = blots_train.get("pixel_accuracy")
        accuracy = None if accuracy is None else round(accuracy, 4)
        coverage = blots_train.get("coverage")
    return [
        gate("blot_accuracy", "Point blots (train): labelled pixels that are the right class",
             accuracy, f">= {BLOT_ACCURACY_MIN}",
             None if accuracy is None else accuracy >= BLOT_ACCURACY_MIN,
             "the blots leak across object outlines: lower pmp.kld_max or pmp.walk_threshold, raise "
             "pmp.beta; or background points land on objects: raise pmp.bg_min_distance",
             coverage=coverage),
        gate("blot_coverage", "Point blots (train): pixels labelled", coverage,
             f">= {BLOT_COVERAGE_MIN}", None if coverage is None else coverage >= BLOT_COVERAGE_MIN,
             "the blots label too little for DeepLab: lower pmp.beta (walks stop at texture), "
             "raise pmp.walk_steps or pmp.iterations",
             object_coverage=blots_train.get("object_coverage") if blots_train else None),
    ]


def like_for_like_gate(refined_val: dict | None, final_val: dict | None, true_classes_val: dict | None) -> dict:
    value = None
    if refined_val and true_classes_val:
        value = round(true_classes_val["miou"] - refined_val["miou"], 4)
    return gate("final_like_for_like", "Table 3 like for like (true classes) − Table 2 refined, val",
                value, f">= -{LIKE_FOR_LIKE_TOLERANCE}",
                None if value is None else value >= -LIKE_FOR_LIKE_TOLERANCE,
                "DeepLab lost quality of its training labels: check deeplab.iterations and the "
                "learning rate in its training log",
                refined=refined_val["miou"] if refined_val else None,
                final=final_val["miou"] if final_val else None,
                final_true_classes=true_classes_val["miou"] if true_classes_val else None)


def quality_gates(args) -> dict:
    """The gates of the variant's branch (module docstring)."""
    if args.variant in CAM_VARIANTS:
        missing = [flag for flag, value in (("--cam-log", args.cam_log),
                                            ("--ir-calibration", args.ir_calibration),
                                            ("--ir-labels", args.ir_labels), ("--walk", args.walk),
                                            ("--pseudo-train", args.pseudo_train),
                                            ("--pseudo-val", args.pseudo_val)) if not value]
        if missing:
            raise ValueError(f"variant {args.variant} has the PCAM branch: its gates need {missing}")
        index = DatasetIndex.load(args.index)
        max_images = json.loads(Path(args.ir_calibration).read_text())["max_images"]
        gates = [cam_loss_gate(index, args.cam_log),
                 *ir_label_gates(index, args.ir_labels, max_images),
                 boundary_gate(index, args.walk, max_images),
                 foreground_fraction_gate(_metrics(args.pseudo_train)),
                 like_for_like_gate(_metrics(args.pseudo_val), _metrics(args.deeplab_val),
                                    _metrics(args.deeplab_true_classes_val))]
    elif args.variant == "pmp_blot":
        if not args.blots_train:
            raise ValueError("variant pmp_blot: its gates need --blots-train (pcam score-blots on train)")
        gates = [*blot_gates(_metrics(args.blots_train)),
                 final_foreground_fraction_gate(_metrics(args.deeplab_val), args.variant)]
    elif args.variant == "wtp":
        gates = [final_foreground_fraction_gate(_metrics(args.deeplab_val), args.variant)]
    else:
        raise ValueError(f"unknown variant {args.variant!r}")
    return {"format": GATES_FORMAT, "variant": args.variant, "gates": gates,
            "warnings": sum(g["status"] == "warn" for g in gates)}


def gates_markdown(report: dict) -> str:
    lines = [f"# Quality gates — {report['variant']}", "",
             "| gate | value | expected | status | what to change |", "|---|---|---|---|---|"]
    for g in report["gates"]:
        value = "—" if g["value"] is None else f"{g['value']}"
        lines.append(f"| {g['title']} | {value} | {g['expected']} | {g['status']} | {g['advice']} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--variant", required=True, help="the variant checked (its branch picks the gates)")
    parser.add_argument("--deeplab-val", required=True, help="DeepLab metrics on val (JSON)")
    parser.add_argument("--deeplab-true-classes-val", required=True,
                        help="DeepLab metrics on val, restricted to each image's true classes (JSON)")
    cam = parser.add_argument_group("variants with the PCAM branch (cam, pcam, pcam_full)")
    cam.add_argument("--cam-log", help="train_log.jsonl of the CAM training")
    cam.add_argument("--ir-calibration", help="calibration JSON of the IR-label step (its max_images)")
    cam.add_argument("--ir-labels", nargs="+", help="IR-label shard directories")
    cam.add_argument("--walk", nargs="+", help="walk stores of every shard")
    cam.add_argument("--pseudo-train", help="pseudo-label metrics on train (JSON)")
    cam.add_argument("--pseudo-val", help="pseudo-label metrics on val (JSON)")
    pmp = parser.add_argument_group("variant pmp_blot")
    pmp.add_argument("--blots-train", help="point-blot scores on train (JSON of pcam score-blots)")
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-md", required=True)


def main(args) -> int:
    report = quality_gates(args)
    write_text(args.out_json, json.dumps(report, indent=1) + "\n")
    write_text(args.out_md, gates_markdown(report))
    for g in report["gates"]:
        print(f"quality gate {g['name']}: {g['value']} (expected {g['expected']}): {g['status']}",
              file=sys.stderr)
    return 0
