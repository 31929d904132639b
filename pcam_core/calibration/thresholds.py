"""Calibration: the pipeline's thresholds chosen on the user's own masked train images.

The method has four thresholds that the paper and IRN fixed on PASCAL VOC: the CAM
evaluation threshold (Table 1), the IR-label foreground and background thresholds (which
pixels IRNet may learn from) and the random walk's background threshold (Table 2, the
pseudo labels). Measured on data they were not chosen on, the fixed values fail: on an
independent VOC-format dataset τ_fg = 0.30 marked 32 % of train pixels confident foreground
where 20 % are, IRNet then learnt texture instead of outlines and the random walk made the
maps worse (issue 9). So this stage measures, on train images that have a ground-truth mask
(at most ``max_images`` of them, a fixed hash-ordered subset), and records in a small JSON:

* ``cam_eval_threshold``: the τ that maximises train mIoU of argmax([τ; CAMs]);
* ``ir_fg_threshold``: the LOWEST τ whose confident foreground (max CAM > τ, argmax class) has
  class precision >= ``ir_fg_precision``: as much foreground as IRNet can get at that purity;
  but never a τ that leaves less than ``ir_fg_min_coverage`` of the object pixels labelled
  (on the shape demo the 0.8 target is only reached at τ 0.8, where 1 % of the objects
  survived the CRF and IRNet learnt texture: then the purest τ that keeps the coverage);
* ``ir_bg_threshold``: the HIGHEST τ below it at which at least ``ir_bg_object_recall`` of the
  object pixels stay out of confident background (every CAM <= τ): IRN's reason for its low
  0.05, as a measured fraction instead of a constant;
* ``walk_bg_threshold`` (a second, later step on the random walk's maps): the τ that
  maximises train mIoU of the pseudo labels.

Targets rather than an mIoU optimum for the IR labels: IRNet's loss only sees the confident
pixels, and what breaks it is impure foreground (the issue's 43 % precision) or objects
inside the "background", not missing coverage. Both targets are fractions of what they
protect (labelled foreground; true object pixels), so they do not move with the share of
background in the images, as a background precision would (on the demo any background
threshold is >= 0.89 precise, because 88 % of the pixels are background). The targets' defaults are justified in config.yaml by runs on both demo
styles. The precisions are measured on the raw thresholded maps; the dense CRF that follows
usually raises them (the quality gates measure the mined labels themselves).

``mode: fixed`` (the paper's protocol, exact reproduction) records the configured values;
the curves are still measured when masks exist, so a user sees what ``auto`` would pick.
Without any masked train image ``auto`` falls back to the configured values and says so.

Every threshold is a candidate from ``GRID`` (0.05 steps): finer steps move mIoU by less
than the noise between seeds on the demo (measured: < 0.5 points between neighbours).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pcam_core.calibration.calibration_file import CALIBRATION_FORMAT
from pcam_core.common.class_list import IGNORE_INDEX

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
MODES = ("auto", "fixed")


class ThresholdSweep:
    """Confusion matrices of argmax([τ; maps]) for every τ of a grid, accumulated per image.

    argmax([τ; maps]) is the map's argmax class where its maximum exceeds τ and background
    elsewhere (ties go to background, as in IRN), so one max and one argmax per image serve
    every τ.
    """

    def __init__(self, num_classes: int, grid: Sequence[float] = GRID):
        self.num_classes = int(num_classes)
        self.grid = tuple(float(t) for t in grid)
        self.matrices = np.zeros((len(self.grid), num_classes, num_classes), dtype=np.int64)
        self.images = 0

    def add(self, maps: np.ndarray, keys: Sequence[int], gt: np.ndarray) -> None:
        """``maps`` (K, H, W) with segmentation ids ``keys``; ``gt`` (H, W) with 255 = void."""
        maps = np.asarray(maps, dtype=np.float32)
        if maps.shape[1:] != gt.shape:
            raise ValueError(f"maps of size {maps.shape[1:]} against a mask of size {gt.shape}")
        valid = gt != IGNORE_INDEX
        gt = gt[valid].astype(np.int64)
        if gt.size and (gt.max() >= self.num_classes):
            raise ValueError(f"mask values {sorted(set(gt[gt >= self.num_classes].tolist()))[:5]} "
                             f"outside 0..{self.num_classes - 1}")
        ids = np.asarray(list(keys), dtype=np.int64)
        if len(ids):
            peak = maps.max(axis=0)[valid]
            cls = ids[maps.argmax(axis=0)[valid]]
        else:
            peak = np.zeros(gt.shape, np.float32)
            cls = np.zeros(gt.shape, np.int64)
        n = self.num_classes
        for i, tau in enumerate(self.grid):
            pred = np.where(peak > np.float32(tau), cls, 0)
            self.matrices[i] += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)
        self.images += 1

    def curves(self) -> dict[str, list]:
        """Per τ: mIoU, foreground class precision and coverage, background precision and coverage."""
        out = {"threshold": list(self.grid), "miou": [], "fg_precision": [], "fg_coverage": [],
               "fg_detected": [], "bg_precision": [], "bg_coverage": [], "fg_fraction": []}
        for m in self.matrices:
            m = m.astype(np.float64)
            diag = np.diag(m)
            union = m.sum(0) + m.sum(1) - diag
            present = union > 0
            miou = float(np.mean(diag[present] / union[present])) if present.any() else None
            out["miou"].append(None if miou is None else round(miou, 5))
            fg_pred = m[:, 1:].sum()
            fg_true = m[1:, :].sum()
            out["fg_precision"].append(_ratio(diag[1:].sum(), fg_pred))
            out["fg_coverage"].append(_ratio(diag[1:].sum(), fg_true))
            out["fg_detected"].append(_ratio(m[1:, 1:].sum(), fg_true))  # any object class
            out["bg_precision"].append(_ratio(m[0, 0], m[:, 0].sum()))
            out["bg_coverage"].append(_ratio(m[0, 0], m[0, :].sum()))
            out["fg_fraction"].append(_ratio(fg_pred, m.sum()))
        return out


def _ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else round(float(num) / float(den), 5)


def best_miou_threshold(curves: dict) -> float | None:
    """The τ with the highest mIoU (the lowest such τ on a tie); None without any score."""
    scored = [(m, -i) for i, m in enumerate(curves["miou"]) if m is not None]
    return None if not scored else curves["threshold"][-max(scored)[1]]


def ir_thresholds(curves: dict, fg_precision: float, bg_object_recall: float,
                  fg_min_coverage: float = 0.0) -> tuple[float, float, str]:
    """(τ_fg, τ_bg, how they were found) from the targets.

    τ_fg: the lowest τ with foreground precision >= the target, among those that still label
    >= ``fg_min_coverage`` of the object pixels with their class; when no τ does both, the
    highest τ that keeps that coverage (the purest foreground IRNet can still learn from; the
    note says so). τ_bg: the highest τ below τ_fg that keeps >= ``bg_object_recall`` of the
    object pixels out of the background; else the lowest τ.
    """
    grid = curves["threshold"]
    fg = curves["fg_precision"]
    coverage = curves["fg_coverage"]
    notes = []
    labelled = [i for i, (c, p) in enumerate(zip(coverage, fg)) if p is not None and c]
    if not labelled:
        raise ValueError("no threshold labels any object pixel with its class: the CAMs are empty")
    covered = [i for i in labelled if coverage[i] >= fg_min_coverage]
    if not covered:  # maps too weak for the floor: the most coverage there is (the gates warn)
        covered = [max(labelled, key=lambda i: (coverage[i], -i))]
        notes.append(f"no threshold labels {fg_min_coverage} of the object pixels; the most "
                     f"({coverage[covered[0]]:.4f}) is at {grid[covered[0]]}")
    passing = [i for i in covered if fg[i] >= fg_precision]
    if passing:
        i_fg = passing[0]
    else:
        i_fg = covered[-1]
        notes.append(f"no threshold reaches foreground precision {fg_precision} with coverage >= "
                     f"{fg_min_coverage}; {grid[i_fg]} keeps that coverage at precision {fg[i_fg]:.4f}")
    if i_fg == 0:
        return grid[0], grid[0], "; ".join(notes + ["foreground at the lowest threshold: no room "
                                                    "below it for a background threshold"])
    kept = curves["fg_detected"][:i_fg]
    passing = [i for i, r in enumerate(kept) if r is not None and r >= bg_object_recall]
    if passing:
        i_bg = passing[-1]
    else:
        i_bg = 0
        notes.append(f"even at {grid[0]} fewer than {bg_object_recall} of the object pixels stay out "
                     f"of the background ({kept[0]}); the lowest threshold is used")
    return grid[i_fg], grid[i_bg], "; ".join(notes)


# ----------------------------------------------------------------------------- the two steps
def base_result(stage: str, params: dict, configured: dict) -> dict:
    mode = params.get("mode", "auto")
    if mode not in MODES:
        raise ValueError(f"calibration.mode must be one of {MODES}, got {mode!r}")
    return {"format": CALIBRATION_FORMAT, "stage": stage, "mode": mode, "configured": configured,
            "max_images": int(params["max_images"]), "grid": list(GRID)}


def decide(result: dict, chosen: dict, note_auto: str) -> dict:
    """Fill in the thresholds the dependants read, from the mode and what could be measured."""
    if result["mode"] == "fixed":
        result.update(source="configured", note="calibration: fixed — the configured thresholds "
                      "are used (the paper's protocol)", **result["configured"])
    elif result["images"] == 0:
        result.update(source="fallback", note="calibration: auto, but no train image has a "
                      "ground-truth mask, so the configured thresholds are used", **result["configured"])
    elif not chosen or any(v is None for v in chosen.values()):
        result.update(source="fallback", note=f"calibration: auto, but nothing could be chosen "
                      f"({note_auto}), so the configured thresholds are used", **result["configured"])
    else:
        result.update(source="calibrated", note=note_auto, **chosen)
    return result


def result_line(step: str, result: dict) -> str:
    """What a calibration step chose, from what: the one line its rule's log shows."""
    keys = [k for k in ("cam_eval_threshold", "ir_fg_threshold", "ir_bg_threshold", "walk_bg_threshold")
            if k in result]
    chosen = ", ".join(f"{k} {result[k]}" for k in keys)
    return (f"calibrate {step}: {chosen} ({result['source']}; {result['images']} images). "
            f"{result['note']}")
