# Evaluation stage: every stage's output scored against the ground truth (the paper's
# Tables 1-3 and the like-for-like row), the quality gates per variant, then the summary
# (Tables 1-4 side by side, with the paper's numbers for voc2012). Code: pcam_core/evaluation/.
# The wtp and pmp_blot variants have no CAM stage: only their DeepLab is scored here (the
# point blots are scored in pmp.smk), and their gates are those that apply to their branch.


# Table 1: argmax over [threshold plane; maps], one confusion matrix per split.
# ----------------------------------------------------------------------------------
rule evaluate_cams:
    input:
        index=INDEX,
        stores=gather.shard(f"{R}/{{{{variant}}}}/cam/maps/{{scatteritem}}.h5"),
        calibration=rules.calibrate_cam_threshold.output,
    output:
        json=f"{R}/{{variant}}/cam/metrics_{{split}}.json",
        md=report(
            f"{R}/{{variant}}/cam/metrics_{{split}}.md",
            category="Table 1: CAMs",
            labels={"variant": "{variant}", "split": "{split}"},
        ),
    benchmark:
        f"{R}/benchmarks/evaluate_cams/{{variant}}_{{split}}.tsv",
    log:
        f"{R}/logs/{{variant}}/evaluate_cams_{{split}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        code=code_fingerprint("evaluate-cams"),
    message:
        "--- Scoring {wildcards.variant} CAMs on {wildcards.split}."
    shell:
        "pcam evaluate-cams --index {input.index} --split {wildcards.split}"
        " --stores {input.stores} --calibration {input.calibration}"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"


# Any stage's label PNGs scored against the VOC ground truth (pseudo labels: Table 2;
# DeepLab predictions: Table 3).
# ----------------------------------------------------------------------------------
rule evaluate_labels:
    input:
        index=INDEX,
        labels=labels_to_score,
    output:
        json=f"{R}/{{variant}}/{{stage}}/metrics_{{split}}.json",
        md=report(
            f"{R}/{{variant}}/{{stage}}/metrics_{{split}}.md",
            category="Tables 2-3: labels",
            labels={"variant": "{variant}", "stage": "{stage}", "split": "{split}"},
        ),
    benchmark:
        f"{R}/benchmarks/evaluate_labels/{{variant}}_{{stage}}_{{split}}.tsv",
    log:
        f"{R}/logs/{{variant}}/evaluate_{{stage}}_{{split}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        stage="pseudo|deeplab",
        variant=variants_regex(ALL_VARIANTS),
    params:
        code=code_fingerprint("evaluate"),
    message:
        "--- Scoring {wildcards.variant} {wildcards.stage} labels on {wildcards.split}."
    shell:
        "pcam evaluate --index {input.index} --split {wildcards.split}"
        " --pred-dirs {input.labels} --title '{wildcards.variant} {wildcards.stage} ({wildcards.split})'"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"


# Table 3 like for like: val predictions restricted to each image's true classes, scored.
# ----------------------------------------------------------------------------------
rule evaluate_true_classes:
    input:
        index=INDEX,
        labels=true_class_predictions,
    output:
        json=f"{R}/{{variant}}/deeplab/metrics_val_true_classes.json",
        md=report(
            f"{R}/{{variant}}/deeplab/metrics_val_true_classes.md",
            category="Tables 2-3: labels",
            labels={"variant": "{variant}", "stage": "deeplab, true classes only", "split": "val"},
        ),
    benchmark:
        f"{R}/benchmarks/evaluate_true_classes/{{variant}}.tsv",
    log:
        f"{R}/logs/{{variant}}/evaluate_true_classes.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(ALL_VARIANTS),
    params:
        code=code_fingerprint("evaluate"),
    message:
        "--- Scoring {wildcards.variant} DeepLab predictions restricted to the true classes."
    shell:
        "pcam evaluate --index {input.index} --split val --pred-dirs {input.labels}"
        " --title '{wildcards.variant} deeplab, true classes only (val)'"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"


# Measured checks of every stage of one variant, each with what to change when it warns
# (the gates of its branch: see pcam_core/evaluation/quality_gates.py).
# ----------------------------------------------------------------------------------
rule quality_gates:
    input:
        unpack(quality_gate_inputs),
    output:
        json=f"{R}/{{variant}}/quality_gates.json",
        md=report(f"{R}/{{variant}}/quality_gates.md", category="Quality gates",
                  labels={"variant": "{variant}"}),
    benchmark:
        f"{R}/benchmarks/quality_gates/{{variant}}.tsv",
    log:
        f"{R}/logs/{{variant}}/quality_gates.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(ALL_VARIANTS),
    params:
        branch=quality_gate_args,
        code=code_fingerprint("quality-gates"),
    message:
        "--- Quality gates of {wildcards.variant}."
    shell:
        "pcam quality-gates --index {input.index} --variant {wildcards.variant} {params.branch}"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"


# ----------------------------------------------------------------------------------
rule summary:
    input:
        metrics_files(),
    output:
        md=f"{R}/summary.md",
        html=report(f"{R}/summary.html", caption="../report/summary.rst", category="Summary",
                    labels={"item": "Tables 1-4, calibration, quality gates"}),
        json=f"{R}/summary.json",
    benchmark:
        f"{R}/benchmarks/summary/summary.tsv",
    log:
        f"{R}/logs/summary.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        variants=VARIANTS,
        dataset=DATASET,
        code=code_fingerprint("summary"),
    message:
        "--- Writing the summary."
    shell:
        "pcam summary --results-dir \"$(dirname {output.json})\" --variants {params.variants}"
        " --dataset {params.dataset} --out-md {output.md} --out-html {output.html}"
        " --out-json {output.json} > {log} 2>&1"
