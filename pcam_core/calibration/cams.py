"""`pcam calibrate-cams`: the CAM evaluation threshold and the IR-label thresholds, chosen
on the CAMs of the masked train images (calibration steps cam_threshold and ir_labels; see
pcam_core/calibration/thresholds.py for the criteria)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from pcam_core.calibration.calibration_file import calibration_records
from pcam_core.calibration.thresholds import (ThresholdSweep, base_result, decide, best_miou_threshold,
                                              ir_thresholds, result_line)
from pcam_core.common.atomic_output import write_text
from pcam_core.common.dataset_index import DatasetIndex


def sweep_cams(index: DatasetIndex, stores: Sequence[str | Path], max_images: int) -> ThresholdSweep:
    """The threshold sweep of the CAMs of the masked train images."""
    from pcam_core.cam.store import CamStore
    from pcam_core.common.progress import progress_bar

    sweep = ThresholdSweep(index.classes.num_classes)
    with CamStore(list(stores)) as store:
        records = calibration_records(index, store.ids(), max_images)
        bar = progress_bar(len(records), 0, "calibrate on the CAMs")
        for record in records:
            cams = store[record.id]
            sweep.add(cams.high_res, cams.keys, record.load_gt_mask())
            bar.update(1)
        bar.close()
    return sweep


def calibrate_cams(index_path: str | Path, stores: Sequence[str | Path], params: dict,
                   out: str | Path, step: str = "cam_threshold") -> dict:
    """Sweep the CAMs of the masked train images; write and return the calibration JSON.

    ``step`` cam_threshold: the CAM evaluation threshold (Table 1 only); ir_labels: the
    IR-label pair. Two steps with two files, so that changing one's settings reruns only
    what uses it (the sweep is repeated: seconds, against rerunning the IRNet branch).
    """
    if step == "cam_threshold":
        configured = {"cam_eval_threshold": float(params["cam_eval_threshold"])}
    elif step == "ir_labels":
        configured = {"ir_fg_threshold": float(params["ir_fg_threshold"]),
                      "ir_bg_threshold": float(params["ir_bg_threshold"])}
    else:
        raise ValueError(f"unknown CAM calibration step {step!r}")
    result = base_result(step, params, configured)
    index = DatasetIndex.load(index_path)
    sweep = sweep_cams(index, stores, params["max_images"])
    result["images"] = sweep.images
    chosen, note = {}, ""
    if sweep.images:
        result["curves"] = sweep.curves()
        if step == "cam_threshold":
            chosen = {"cam_eval_threshold": best_miou_threshold(result["curves"])}
        else:
            targets = {key: float(params[key]) for key in
                       ("ir_fg_precision", "ir_fg_min_coverage", "ir_bg_object_recall")}
            result["targets"] = targets
            try:
                tau_fg, tau_bg, note = ir_thresholds(result["curves"], targets["ir_fg_precision"],
                                                     targets["ir_bg_object_recall"],
                                                     targets["ir_fg_min_coverage"])
                chosen = {"ir_fg_threshold": tau_fg, "ir_bg_threshold": tau_bg}
            except ValueError as error:  # no object pixel at any threshold: empty CAMs
                note = str(error)
        result["measured_choice"] = chosen
    decide(result, chosen, f"calibration: auto — chosen on {sweep.images} masked train images"
            + (f"; {note}" if note else ""))
    write_text(out, json.dumps(result, indent=1) + "\n")
    return result


# ----------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("step", choices=("cam_threshold", "ir_labels"),
                        help="cam_threshold: the CAM evaluation threshold; ir_labels: the IR-label "
                             "foreground/background thresholds (both after the CAM export)")
    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--stores", required=True, nargs="+", help="every shard's CAM store")
    parser.add_argument("--params", required=True, type=json_object,
                        help="JSON: mode (auto|fixed), max_images, the step's configured thresholds "
                             "(cam_eval_threshold | ir_fg_threshold, ir_bg_threshold) and, for "
                             "ir_labels, the targets ir_fg_precision, ir_fg_min_coverage and "
                             "ir_bg_object_recall")
    parser.add_argument("--out", required=True, help="calibration JSON to write")


def main(args) -> int:
    result = calibrate_cams(args.index, args.stores, args.params, args.out, step=args.step)
    print(result_line(args.step, result), file=sys.stderr)
    return 0
