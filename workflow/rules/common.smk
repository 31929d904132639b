# Configuration checks and path plumbing shared by every rule file.
# Algorithms do not belong here: they live in pcam_core.

import hashlib
import json
import os
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from pcam_core.cli import COMMANDS
from pcam_core.common.code_fingerprint import command_fingerprint, command_modules, fingerprint
from pcam_core.common.compute_devices import gpu_visible


validate(config, schema="../schemas/config.schema.yaml")

R = f"results/{config['run_name']}"
VARIANTS = config["variants"]
DATASET = config["dataset"]["name"]

# The variants by branch of the DAG. Each variant is its own cached branch; they share the
# data stage and DeepLab's settings (config deeplab:).
#   CAM_VARIANTS: CAM -> IRNet -> random-walk pseudo labels -> DeepLab (cam.smk, irn.smk, ...)
#   pmp_blot:     point blots (pmp.smk) in <variant>/pseudo/ -> DeepLab (train_deeplab)
#   wtp:          DeepLab trained on the clicks (wtp.smk), no labels in between
CAM_VARIANTS = ("cam", "pcam", "pcam_full")
LABEL_VARIANTS = CAM_VARIANTS + ("pmp_blot",)  # DeepLab trained on <variant>/pseudo/ PNGs
ALL_VARIANTS = LABEL_VARIANTS + ("wtp",)
CAM_RUN = [v for v in VARIANTS if v in CAM_VARIANTS]  # the variants of this run with CAMs


def variants_regex(names):
    """A wildcard constraint matching exactly these variant names."""
    return "|".join(sorted(names, key=len, reverse=True))


scattergather:
    shard=config["shards"],


# Where the stage jobs run, and so how many may run at once. On a GPU, `resources: gpu=1`
# keeps GPU jobs one at a time (the local profile's `--resources gpu=1`). On the CPU that
# counter would only serialise jobs that could share the cores, so it is 0 there.
# The check looks for a driver rather than importing torch (pcam_core/common/compute_devices.py).
# On Slurm, GPUs and threads come from workflow/profiles/slurm (its set-resources and
# set-threads): while this file is parsed Snakemake 9 does not yet say that it submits to a
# cluster (workflow.local_exec is True even with --executor slurm), so nothing here can tell.
STAGES_ON_GPU = config["device"].startswith("cuda") or (config["device"] == "auto" and gpu_visible())
GPU_PER_JOB = 1 if STAGES_ON_GPU else 0


def stage_threads(wanted):
    """Threads of a stage job: ``wanted`` on a GPU. On CPUs at most half the cores, so that
    the two variants' jobs run side by side: a second thread speeds a job 1.1-1.4x
    (measured on 2 cores: CAM export 36.5 -> 32.6 s, CAM training 1.45 cores busy of 2), a
    second job 2x. A cluster profile sets every stage's threads itself (set-threads)."""
    if STAGES_ON_GPU:
        return wanted
    try:
        cores = workflow.cores
    except WorkflowError:  # e.g. a dry run without --cores
        return wanted
    return max(1, min(wanted, cores // 2))


# `variant` means a CAM variant unless a rule widens it (DeepLab, its scores and figures take
# the other branches too): so each file has exactly one rule that can write it, e.g.
# R/pmp_blot/pseudo/<shard> only point_blots, R/wtp/deeplab/model.pt only train_wtp.
wildcard_constraints:
    variant=variants_regex(CAM_VARIANTS),
    split="train|val",
    shard=r"\d+-of-\d+",


# Each stage receives only the config keys it uses, so that changing e.g. the random-walk
# beta reruns the random walk and what follows it, and nothing upstream.
def section(name, only=None, drop=()):
    """A config section (or some of its keys) as canonical JSON for `--params`."""
    values = config[name]
    if only is not None:
        values = {k: values[k] for k in only}
    values = {k: v for k, v in values.items() if k not in drop}
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


CAM_EXPORT_KEYS = ["export_scales", "num_workers"]
CAM_EVAL_KEYS = ["eval_threshold"]
IRN_MINING_KEYS = ["crf", "crf_iterations"]
IRN_THRESHOLD_KEYS = ["fg_threshold", "bg_threshold"]  # reach mining through the calibration


def calibration_params(step, variant=None):
    """A calibration step's settings plus the configured thresholds it falls back to.

    The thresholds reach their stages only through the calibration JSON (an input of those
    rules), so a threshold change reruns that calibration step and what depends on it: e.g.
    never the random walk for its background threshold, never the IR labels for the CAM
    evaluation threshold.
    """
    c = config["calibration"]
    values = {"mode": c["mode"], "max_images": c["max_images"]}
    if step == "cam_threshold":
        values["cam_eval_threshold"] = config["cam"]["eval_threshold"][variant]
    elif step == "ir_labels":
        values.update(ir_fg_precision=c["ir_fg_precision"], ir_bg_object_recall=c["ir_bg_object_recall"],
                      ir_fg_min_coverage=c["ir_fg_min_coverage"],
                      ir_fg_threshold=config["irn"]["fg_threshold"],
                      ir_bg_threshold=config["irn"]["bg_threshold"])
    else:
        values["walk_bg_threshold"] = config["random_walk"]["bg_threshold"]
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


# Stage jobs get, in their params, the hash of the code their command runs (pcam_core/cli.py
# and the import closure of the command's module, read from the source by pcam_core/common/
# code_fingerprint.py). Editing a module reruns exactly the stages that can execute it;
# Snakemake itself does not track imported code.
def code_fingerprint(command):
    """SHA-256 (12 hex) of the pcam_core source files `pcam <command>` runs."""
    return command_fingerprint(command)


# ------------------------------------------------------------------ data sources
WEIGHT_URL = "https://download.pytorch.org/models/{file}"
WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-19c8e357.pth",
    "resnet101": "resnet101-5d3b4d8f.pth",
}


def imagenet_weights(stage):
    """The weight file a stage starts from: [] when it trains from scratch."""
    settings = config[stage]
    if not settings["imagenet_weights"]:
        return []
    return [f"resources/weights/{WEIGHT_FILES[settings['backbone']]}"]


def weights_flag(stage):
    files = imagenet_weights(stage)
    return f"--weights {files[0]}" if files else ""


def data_roots():
    """VOC root, SBD root and click JSON the index is built from."""
    if DATASET == "demo":
        demo = f"{R}/data/dataset"
        return {
            "voc_root": f"{demo}/VOCdevkit/VOC2012",
            "sbd_root": f"{demo}/benchmark_RELEASE/dataset",
            "points": f"{demo}/points.json",
        }
    d = config["dataset"]
    return {
        "voc_root": d["voc_root"] or "resources/voc2012/VOCdevkit/VOC2012",
        "sbd_root": d["sbd_root"] or "resources/sbd/benchmark_RELEASE/dataset",
        "points": d["points"] or f"resources/whats_the_point/{d['points_member']}",
    }


def data_inputs(wildcards):
    """What build_index waits for: the demo, the downloads not given by path, or the user's files."""
    if DATASET == "demo":
        return [f"{R}/data/dataset"]
    if DATASET == "custom":
        d = config["dataset"]
        return [d[key] for key in ("images", "clicks", "masks", "val") if d[key]]
    d = config["dataset"]
    needed = []
    if not d["voc_root"]:
        needed.append("resources/voc2012")
    if not d["sbd_root"]:
        needed.append("resources/sbd")
    if not d["points"]:
        needed.append(f"resources/whats_the_point/{d['points_member']}")
    return needed


CUSTOM_KEYS = ["images", "classes", "clicks", "clicks_format", "clicks_class_column", "masks",
               "val", "val_fraction"]


def check_custom_dataset():
    """Missing keys of a custom dataset are named before any job starts."""
    d = config["dataset"]
    missing = [key for key in ("images", "classes", "clicks") if not d[key]]
    if missing:
        raise ValueError(f"dataset.name is custom: set dataset.{', dataset.'.join(missing)} in the config "
                         "(see the README section 'Your own data')")


def source_fingerprint():
    """A hash of the name, size and mtime of every file under the custom dataset's paths.

    Snakemake sees a folder input change only when its own mtime does (a file added at its
    top level), not when a nested image, mask or click file is edited; this goes into the
    index's params so that any such edit rebuilds the index (and so reruns what follows).
    """
    if DATASET != "custom":
        return ""
    digest = hashlib.sha256()
    for key in ("images", "clicks", "masks", "val"):
        root = config["dataset"][key]
        if not root or not os.path.exists(root):
            continue
        paths = [root] if os.path.isfile(root) else sorted(
            os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
        for path in paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_index_args():
    """The dataset-specific arguments of `pcam build-index`."""
    if DATASET == "custom":
        check_custom_dataset()
        d = config["dataset"]
        params = json.dumps({k: d[k] for k in CUSTOM_KEYS}, sort_keys=True)
        return f"--params {shlex.quote(params)}"
    roots = data_roots()
    return " ".join(f"--{flag} {shlex.quote(roots[key])}" for flag, key in
                    (("voc-root", "voc_root"), ("sbd-root", "sbd_root"), ("points", "points")))


def predict_ids_file():
    """config predict.images as a list file ([] for "" and "all")."""
    images = config["predict"]["images"]
    return [] if images in ("", "all") else [images]


def predict_targets():
    """Prediction folders of the `predict` target (all shards of every variant)."""
    return [p for variant in VARIANTS
            for p in gather.shard(f"{R}/{variant}/deeplab/predict/{{scatteritem}}")]


# ------------------------------------------------------------------ results layout
INDEX = f"{R}/data/index.json"
SHARD_LIST = f"{R}/data/shards/{{shard}}.txt"


def metrics_files():
    """Every file the summary reads: Tables 1-3 (train and val), calibration, quality gates;
    per variant, the files its branch writes."""
    files = []
    for variant in VARIANTS:
        if variant in CAM_VARIANTS:
            for split in ("train", "val"):
                files.append(f"{R}/{variant}/cam/metrics_{split}.json")
                files.append(f"{R}/{variant}/pseudo/metrics_{split}.json")
            files.append(f"{R}/{variant}/calibration/cam_threshold.json")
            files.append(f"{R}/{variant}/calibration/ir_labels.json")
            files.append(f"{R}/{variant}/calibration/walk.json")
        elif variant == "pmp_blot":
            files += [f"{R}/pmp_blot/pseudo/blot_metrics_{split}.json" for split in ("train", "val")]
        files.append(f"{R}/{variant}/deeplab/metrics_val.json")
        files.append(f"{R}/{variant}/deeplab/metrics_val_true_classes.json")
        files.append(f"{R}/{variant}/quality_gates.json")
    return files


def quality_gate_inputs(wildcards):
    """What the quality gates of a variant measure: every stage of its branch."""
    v = wildcards.variant
    files = {"index": INDEX, "deeplab_val": f"{R}/{v}/deeplab/metrics_val.json",
             "true_classes_val": f"{R}/{v}/deeplab/metrics_val_true_classes.json"}
    if v in CAM_VARIANTS:
        files.update(
            cam_model=f"{R}/{v}/cam/model.pt",
            calibration=f"{R}/{v}/calibration/ir_labels.json",
            ir_labels=gather.shard(f"{R}/{v}/irn/ir_labels/{{scatteritem}}"),
            walk=gather.shard(f"{R}/{v}/pseudo/walk/{{scatteritem}}.h5"),
            pseudo_train=f"{R}/{v}/pseudo/metrics_train.json",
            pseudo_val=f"{R}/{v}/pseudo/metrics_val.json")
    elif v == "pmp_blot":
        files["blots_train"] = f"{R}/pmp_blot/pseudo/blot_metrics_train.json"
    return files


def quality_gate_args(wildcards, input):
    """The `pcam quality-gates` options of the variant's branch (see quality_gate_inputs)."""
    v = wildcards.variant
    args = ["--deeplab-val", input.deeplab_val, "--deeplab-true-classes-val", input.true_classes_val]
    if v in CAM_VARIANTS:
        # the CAM training's log (a log of train_cam, so not an input; its model is)
        args += ["--cam-log", f"{R}/{v}/cam/train_log.jsonl", "--ir-calibration", input.calibration,
                 "--ir-labels", *input.ir_labels, "--walk", *input.walk,
                 "--pseudo-train", input.pseudo_train, "--pseudo-val", input.pseudo_val]
    elif v == "pmp_blot":
        args += ["--blots-train", input.blots_train]
    return " ".join(shlex.quote(a) for a in args)


# The qualitative grid's columns: thresholded CAMs of the image-label and point variants, then
# the refined labels and DeepLab predictions of pcam (the point variant in the paper's
# figures; else the last CAM variant listed), then DeepLab of "What's the point" and the
# point blots with their DeepLab, when the run has them.
GRID_CAM_COLUMNS = {"cam": "CAM", "pcam": "PCAM", "pcam_full": "PCAM F"}
GRID_SHOWN = "pcam" if "pcam" in CAM_RUN else (CAM_RUN[-1] if CAM_RUN else None)


def qualitative_grid_inputs(wildcards):
    files = {"index": INDEX}
    for variant in CAM_RUN:
        files[f"{variant}_calibration"] = f"{R}/{variant}/calibration/cam_threshold.json"
        files[f"{variant}_maps"] = gather.shard(f"{R}/{variant}/cam/maps/{{scatteritem}}.h5")
    if GRID_SHOWN:
        files["refined"] = gather.shard(f"{R}/{GRID_SHOWN}/pseudo/{{scatteritem}}")
        files["deeplab"] = gather.shard(f"{R}/{GRID_SHOWN}/deeplab/predictions/{{scatteritem}}")
    if "wtp" in VARIANTS:
        files["wtp_deeplab"] = gather.shard(f"{R}/wtp/deeplab/predictions/{{scatteritem}}")
    if "pmp_blot" in VARIANTS:
        files["blots"] = gather.shard(f"{R}/pmp_blot/pseudo/{{scatteritem}}")
        files["pmp_deeplab"] = gather.shard(f"{R}/pmp_blot/deeplab/predictions/{{scatteritem}}")
    return files


def qualitative_grid_columns(wildcards, input):
    """`--cam NAME CALIBRATION STORES... --labels NAME DIRS...` for every column."""
    args = []
    for variant in CAM_RUN:
        args += ["--cam", GRID_CAM_COLUMNS[variant], input[f"{variant}_calibration"],
                 *input[f"{variant}_maps"]]
    if GRID_SHOWN:
        shown = GRID_CAM_COLUMNS[GRID_SHOWN]
        args += ["--labels", f"refined {shown}", *input.refined]
        args += ["--labels", "DeepLab", *input.deeplab]
    if "wtp" in VARIANTS:
        args += ["--labels", "DeepLab WTP", *input.wtp_deeplab]
    if "pmp_blot" in VARIANTS:
        args += ["--labels", "PMP blots", *input.blots]
        args += ["--labels", "DeepLab PMP", *input.pmp_deeplab]
    return " ".join(shlex.quote(a) for a in args)


def report_files():
    """The report's figures, cost table and manifest (targets of the default target `all`)."""
    files = [f"{R}/report/qualitative_grid.png", f"{R}/report/data_report.png",
             f"{R}/report/run_costs.html", f"{R}/report/run_costs.png",
             f"{R}/report/manifest.html"]
    for v in VARIANTS:
        files.append(f"{R}/report/{v}/class_iou.png")
        if v in CAM_VARIANTS:
            files += [f"{R}/report/{v}/training_{m}.png" for m in ("cam", "irn", "deeplab")]
            files += [f"{R}/report/{v}/calibration_{s}.png" for s in ("cam_threshold", "ir_labels", "walk")]
        else:
            files.append(f"{R}/report/{v}/training_deeplab.png")
    return files


def class_iou_inputs(wildcards):
    """Per-class IoU on val of every stage the variant's branch has, and their labels."""
    v = wildcards.variant
    files = {}
    if v in CAM_VARIANTS:
        files["cam"] = f"{R}/{v}/cam/metrics_val.json"
        files["refined"] = f"{R}/{v}/pseudo/metrics_val.json"
    elif v == "pmp_blot":
        files["blots"] = f"{R}/pmp_blot/pseudo/blot_metrics_val.json"
    files["deeplab"] = f"{R}/{v}/deeplab/metrics_val.json"
    files["true_classes"] = f"{R}/{v}/deeplab/metrics_val_true_classes.json"
    return {"index": INDEX, **files}


CLASS_IOU_LABELS = {"cam": "CAM (Table 1)", "refined": "refined (Table 2)",
                    "blots": "point blots, labelled pixels", "deeplab": "DeepLab (Table 3)",
                    "true_classes": "DeepLab, true classes"}


def class_iou_args(wildcards, input):
    """`--metrics FILES... --labels NAMES...` of figure_class_iou."""
    keys = [k for k in CLASS_IOU_LABELS if k in input.keys()]
    return " ".join(["--metrics", *(shlex.quote(input[k]) for k in keys), "--labels",
                     *(shlex.quote(CLASS_IOU_LABELS[k]) for k in keys)])


def all_code_fingerprint():
    """One hash over the code of every pcam command: the manifest reruns when any stage's code
    changes (and records the commit of that moment), not on edits to docs or tests."""
    return fingerprint({m for command in COMMANDS for m in command_modules(command)})


def benchmark_files():
    """The benchmark file of every job of the method that the default target `all` runs.

    Downloads are left out (their time is the network's); the report's own figure jobs too.
    Jobs are named <variant> or <variant>_<...>, so run-costs can sum each branch.
    """
    shards = [f"{i}-of-{config['shards']}" for i in range(1, config["shards"] + 1)]
    bench = f"{R}/benchmarks"
    files = [f"{bench}/build_index/index.tsv", f"{bench}/make_shards/shards.tsv",
             f"{bench}/summary/summary.tsv"]
    if DATASET == "demo":
        files.append(f"{bench}/make_demo_dataset/demo.tsv")
    for v in VARIANTS:
        per_variant = ["evaluate_true_classes", "quality_gates"]
        per_shard = ["predict_val"]
        if v in CAM_VARIANTS:
            per_variant += ["train_cam", "calibrate_cam_threshold", "calibrate_ir_labels", "train_irn",
                            "calibrate_walk", "train_deeplab"]
            per_shard += ["export_cams", "mine_ir_labels", "random_walk", "pseudo_labels"]
            files += [f"{bench}/evaluate_cams/{v}_{split}.tsv" for split in ("train", "val")]
            files += [f"{bench}/evaluate_labels/{v}_pseudo_{split}.tsv" for split in ("train", "val")]
        elif v == "pmp_blot":
            per_variant.append("train_deeplab")
            per_shard.append("point_blots")
            files += [f"{bench}/score_blots/{v}_{split}.tsv" for split in ("train", "val")]
        else:
            per_variant.append("train_wtp")
        files += [f"{bench}/{name}/{v}.tsv" for name in per_variant]
        files += [f"{bench}/{name}/{v}_{shard}.tsv" for name in per_shard for shard in shards]
        files.append(f"{bench}/evaluate_labels/{v}_deeplab_val.tsv")
    return files


def labels_to_score(wildcards):
    """Label PNG shard dirs scored by evaluate_labels: pseudo labels or DeepLab predictions."""
    if wildcards.stage == "pseudo":
        pattern = f"{R}/{{{{variant}}}}/pseudo/{{scatteritem}}"
    else:
        pattern = f"{R}/{{{{variant}}}}/deeplab/predictions/{{scatteritem}}"
    return [p.format(variant=wildcards.variant) for p in gather.shard(pattern)]


def true_class_predictions(wildcards):
    """DeepLab's val predictions restricted to each image's true classes (like for like)."""
    pattern = f"{R}/{{{{variant}}}}/deeplab/predictions_true_classes/{{scatteritem}}"
    return [p.format(variant=wildcards.variant) for p in gather.shard(pattern)]
