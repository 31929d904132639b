"""The ``pcam`` command: one sub-command per pipeline stage, plus ``predict`` for users.

Each sub-command lives in its own module, which exposes ``add_arguments(parser)`` and
``main(args)``; only the chosen module is imported, so ``pcam predict`` does not pay for
the others. ``pcam <command> --help`` documents every option.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

# OpenMP threads that spin while waiting made 2-thread CPU training up to 14x slower on a
# busy 2-core machine (measured: 4.0 s vs 0.35 s per DeepLab step). Passive waiting costs
# nothing measurable when the cores are free. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS: dict[str, tuple[str, str]] = {
    "make-demo": ("pcam_core.data.demo_dataset", "generate the demo dataset (VOC layout + clicks)"),
    "make-example": ("pcam_core.data.example_dataset",
                     "generate the custom-layout example (16-bit microscopy tiles, clicks in six formats)"),
    "download": ("pcam_core.data.download", "download a file with resume and MD5 check, optionally extract it"),
    "build-index": ("pcam_core.data.index_builder", "build the dataset index and the data report"),
    "make-shards": ("pcam_core.data.shards", "split the image list into shard lists"),
    "evaluate": ("pcam_core.evaluation.miou", "score label PNGs against the ground truth (mIoU)"),
    "train-cam": ("pcam_core.cam.training", "train the (P)CAM network"),
    "export-cams": ("pcam_core.cam.export", "export multi-scale CAMs of a shard to HDF5"),
    "evaluate-cams": ("pcam_core.evaluation.cam_scores", "score thresholded CAMs (Table 1)"),
    "calibrate-cams": ("pcam_core.calibration.cams",
                       "choose the CAM evaluation or the IR-label thresholds on masked train images"),
    "calibrate-walk": ("pcam_core.calibration.walk",
                       "choose the random walk's background threshold on masked train images"),
    "mine-ir-labels": ("pcam_core.irn.ir_labels", "mine IRNet affinity labels from CAMs (dense CRF)"),
    "train-irn": ("pcam_core.irn.training", "train the IRNet boundary branch"),
    "random-walk": ("pcam_core.irn.pseudo_labels", "random walk of a shard's CAMs into a walk store (Table 2)"),
    "pseudo-labels": ("pcam_core.irn.pseudo_label_pngs", "pseudo-label PNGs from a shard's walk maps"),
    "quality-gates": ("pcam_core.evaluation.quality_gates", "measured checks of every stage of a variant"),
    "train-deeplab": ("pcam_core.deeplab.training", "train DeepLabv3+ on pseudo labels"),
    "predict": ("pcam_core.deeplab.predict", "segment images or a folder with a trained DeepLab checkpoint"),
    "train-wtp": ("pcam_core.wtp.training",
                  "train DeepLabv3+ on the clicks with the 'What's the point' losses (variant wtp)"),
    "point-blots": ("pcam_core.pmp.blot_labels",
                    "PMP point blots of a shard's clicks as label PNGs (variant pmp_blot)"),
    "score-blots": ("pcam_core.pmp.blot_scores",
                    "score point blots on their labelled pixels: accuracy, mIoU, coverage"),
    "summary": ("pcam_core.evaluation.summary", "write summary.md / summary.json (Tables 1-4)"),
    "report-figure": ("pcam_core.report.figures",
                      "draw a report figure: training curves, per-class IoU, calibration, data"),
    "qualitative-grid": ("pcam_core.report.qualitative_grid",
                         "image | clicks | CAM | PCAM | refined | DeepLab | ground truth, per image"),
    "run-costs": ("pcam_core.report.run_costs", "run time and peak memory per rule from benchmark files"),
    "run-manifest": ("pcam_core.report.run_manifest", "code commit, package versions, device and config of a run"),
}


def json_object(text: str) -> dict:
    """argparse type for ``--params``: a JSON object (a config section)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcam", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS:
        build_parser(only="").parse_args([chosen])  # argparse prints the valid choices
    parser = build_parser(only=chosen if chosen in COMMANDS else "")
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    if isinstance(getattr(args, "device", None), str):
        # Before the command touches CUDA: on a workstation with several GPUs each job takes
        # a free one (pcam_core/common/gpu_lock.py); Snakemake's gpu=N only counts them.
        from pcam_core.common.gpu_lock import claim_for

        claim_for(args.device)
    return args._module.main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
