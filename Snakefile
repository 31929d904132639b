# pcam: point-supervised semantic segmentation (McEver & Manjunath, "PCAMs") as a workflow.
#
#   clicks -> point-supervised CAMs -> IRNet boundaries -> random-walk pseudo labels
#          -> DeepLabv3+ trained on them -> mIoU summary (the paper's Tables 1-4) and report
# and, scored beside it, two related point-supervised methods that need nothing outside:
#   clicks -> DeepLabv3+ with the "What's the point" losses            (variant wtp)
#   clicks -> PMP point blots -> DeepLabv3+ trained on the blots        (variant pmp_blot)
#
# HTML report after a run: snakemake --report report.html
#
# Run the demo:      snakemake --cores all --resources gpu=1
# Paper's setting:   snakemake --cores all --resources gpu=1 --configfile config_voc2012.yaml
# Only the data:     snakemake data --cores all --resources gpu=1
# Predict images:    snakemake predict --cores all --resources gpu=1  (config predict.images)
# All real code lives in the pcam_core package; each rule is one `pcam <command>` call, and
# each rule file has its code package beside it: workflow/rules/<stage>.smk <-> pcam_core/<stage>/
# (shared mechanics in pcam_core/common/).

from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


# ------------------------------------------------------------------ load rules
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/irn.smk"
include: "workflow/rules/deeplab.smk"
include: "workflow/rules/wtp.smk"
include: "workflow/rules/pmp.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/report.smk"


# On a cluster (workflow/profiles/slurm) these run in the Snakemake process itself and never
# wait in the queue; locally nothing changes. Each needs no GPU and takes seconds whatever the
# dataset's size: targets, shard lists, the demo data, reports and figures, and the
# calibrations and quality gates (they read at most calibration.max_images images: 0.2-2 s
# on the demo, an estimated 10-30 s at VOC's image size). Downloads too: compute nodes often
# have no internet. The index and the evaluations read every image (estimated minutes on
# VOC) and so stay cluster jobs, as do the GPU stages and the per-shard CPU stages.
localrules:
    all,
    data,
    predict,
    download_voc2012,
    download_sbd,
    download_points,
    download_weights,
    make_demo_dataset,
    make_shards,
    calibrate_cam_threshold,
    calibrate_ir_labels,
    calibrate_walk,
    quality_gates,
    summary,
    run_costs,
    run_manifest,
    qualitative_grid,
    figure_class_iou,
    figure_training_curves,
    figure_calibration,
    figure_data_report,


report: "workflow/report/workflow.rst"


# ------------------------------------------------------------------ target rules
rule all:
    default_target: True
    input:
        rules.summary.output,
        report_files(),
        predict_targets() if config["predict"]["images"] else [],
