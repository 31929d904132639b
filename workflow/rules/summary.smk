# Quality gates per variant, then the summary (paper Tables 1-3 side by side, with the
# paper's numbers for voc2012, the calibrated thresholds and the gates).


# Measured checks of every stage of one variant, each with what to change when it warns.
# ----------------------------------------------------------------------------------
rule quality_gates:
    input:
        index=INDEX,
        cam_model=rules.train_cam.output,
        calibration=rules.calibrate_ir_labels.output,
        ir_labels=gather.shard(f"{R}/{{{{variant}}}}/irn/ir_labels/{{scatteritem}}"),
        walk=gather.shard(f"{R}/{{{{variant}}}}/pseudo/walk/{{scatteritem}}.h5"),
        pseudo_train=f"{R}/{{variant}}/pseudo/metrics_train.json",
        pseudo_val=f"{R}/{{variant}}/pseudo/metrics_val.json",
        deeplab_val=f"{R}/{{variant}}/deeplab/metrics_val.json",
        true_classes_val=f"{R}/{{variant}}/deeplab/metrics_val_true_classes.json",
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
    params:
        # the CAM training's log (a log of train_cam, so not an input; its model is)
        cam_log=lambda wc: f"{R}/{wc.variant}/cam/train_log.jsonl",
        code=code_fingerprint("quality_gates"),
    message:
        "--- Quality gates of {wildcards.variant}."
    shell:
        "pcam quality-gates --index {input.index} --variant {wildcards.variant}"
        " --cam-log {params.cam_log} --ir-calibration {input.calibration}"
        " --ir-labels {input.ir_labels} --walk {input.walk}"
        " --pseudo-train {input.pseudo_train} --pseudo-val {input.pseudo_val}"
        " --deeplab-val {input.deeplab_val} --deeplab-true-classes-val {input.true_classes_val}"
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
