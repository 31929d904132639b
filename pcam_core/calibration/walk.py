"""`pcam calibrate-walk`: the random walk's background threshold, chosen on the walk's maps
of the masked train images (the threshold that maximises their pseudo labels' mIoU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from pcam_core.calibration.calibration_file import calibration_records
from pcam_core.calibration.thresholds import ThresholdSweep, base_result, decide, best_miou_threshold, result_line
from pcam_core.common.atomic_output import write_text
from pcam_core.common.dataset_index import DatasetIndex


def calibrate_walk(index_path: str | Path, stores: Sequence[str | Path], params: dict,
                   out: str | Path) -> dict:
    """Sweep the random walk's background threshold on the masked train images."""
    import torch

    from pcam_core.irn.random_walk import normalised_maps
    from pcam_core.common.progress import progress_bar
    from pcam_core.irn.walk_store import WalkStore

    configured = {"walk_bg_threshold": float(params["walk_bg_threshold"])}
    result = base_result("walk", params, configured)
    index = DatasetIndex.load(index_path)
    sweep = ThresholdSweep(index.classes.num_classes)
    with WalkStore(list(stores)) as store:
        records = calibration_records(index, store.ids(), params["max_images"])
        bar = progress_bar(len(records), 0, "calibrate the walk threshold")
        for record in records:
            walk = store[record.id]
            maps = normalised_maps(torch.from_numpy(walk.propagated), walk.height, walk.width)
            sweep.add(maps.numpy(), walk.keys, record.load_gt_mask())
            bar.update(1)
        bar.close()
    result["images"] = sweep.images
    chosen = {}
    if sweep.images:
        result["curves"] = sweep.curves()
        chosen = {"walk_bg_threshold": best_miou_threshold(result["curves"])}
        result["measured_choice"] = chosen
    decide(result, chosen, f"calibration: auto — chosen on {sweep.images} masked train images")
    write_text(out, json.dumps(result, indent=1) + "\n")
    return result


# ----------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--index", required=True, help="dataset index (index.json)")
    parser.add_argument("--stores", required=True, nargs="+", help="every shard's walk store")
    parser.add_argument("--params", required=True, type=json_object,
                        help="JSON: mode (auto|fixed), max_images and the configured walk_bg_threshold")
    parser.add_argument("--out", required=True, help="calibration JSON to write")


def main(args) -> int:
    print(result_line("walk", calibrate_walk(args.index, args.stores, args.params, args.out)), file=sys.stderr)
    return 0
