# PCAM stage (paper §3.1, Table 1): train the (point-supervised) CAM network per variant,
# export multi-scale CAMs shard by shard, and score them on train and val.


# Train the CAM network: alpha = 0 for `cam`, the clicks for `pcam`, all GT pixels for `pcam_full`.
# ----------------------------------------------------------------------------------
rule train_cam:
    input:
        index=INDEX,
        weights=imagenet_weights("cam"),
    output:
        f"{R}/{{variant}}/cam/model.pt",
    benchmark:
        f"{R}/benchmarks/train_cam/{{variant}}.tsv",
    log:
        stderr=f"{R}/logs/{{variant}}/train_cam.log",
        jsonl=f"{R}/{{variant}}/cam/train_log.jsonl",
    conda:
        "../../envs/pcam.yaml"
    params:
        cam=section("cam", drop=["export_scales"] + CAM_EVAL_KEYS),
        weights=weights_flag("cam"),
        device=config["device"],
        code=code_fingerprint("train_cam"),
    threads: stage_threads(8)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Training the {wildcards.variant} network."
    shell:
        "pcam train-cam --index {input.index} --variant {wildcards.variant}"
        " --params {params.cam:q} {params.weights} --out {output}"
        " --log-jsonl {log.jsonl} --threads {threads}"
        " --device {params.device} > {log.stderr} 2>&1"


# Multi-scale x flip CAMs of one shard into one HDF5 store (keys, cam, high_res).
# ----------------------------------------------------------------------------------
rule export_cams:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        model=rules.train_cam.output,
    output:
        f"{R}/{{variant}}/cam/maps/{{shard}}.h5",
    benchmark:
        f"{R}/benchmarks/export_cams/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/export_cams_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        cam=section("cam", only=CAM_EXPORT_KEYS),
        device=config["device"],
        code=code_fingerprint("export_cams"),
    threads: stage_threads(4)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Exporting {wildcards.variant} CAMs of shard {wildcards.shard}."
    shell:
        "pcam export-cams --index {input.index} --shard {input.shard}"
        " --model {input.model} --params {params.cam:q} --out {output}"
        " --threads {threads} --device {params.device} > {log} 2>&1"


# The CAM evaluation threshold and the IR-label thresholds, chosen on masked train images
# (calibration: auto) or as configured (fixed). Two steps, two JSON files, each an input of
# the rules that use it, so that changing one reruns only its own dependants.
# ----------------------------------------------------------------------------------
rule calibrate_cam_threshold:
    input:
        index=INDEX,
        stores=gather.shard(f"{R}/{{{{variant}}}}/cam/maps/{{scatteritem}}.h5"),
    output:
        f"{R}/{{variant}}/calibration/cam_threshold.json",
    benchmark:
        f"{R}/benchmarks/calibrate_cam_threshold/{{variant}}.tsv",
    log:
        f"{R}/logs/{{variant}}/calibrate_cam_threshold.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        calibration=lambda wc: calibration_params("cam_threshold", wc.variant),
        code=code_fingerprint("calibrate_cams"),
    message:
        "--- Calibrating the {wildcards.variant} CAM evaluation threshold."
    shell:
        "pcam calibrate cam_threshold --index {input.index} --stores {input.stores}"
        " --params {params.calibration:q} --out {output} > {log} 2>&1"


rule calibrate_ir_labels:
    input:
        index=INDEX,
        stores=gather.shard(f"{R}/{{{{variant}}}}/cam/maps/{{scatteritem}}.h5"),
    output:
        f"{R}/{{variant}}/calibration/ir_labels.json",
    benchmark:
        f"{R}/benchmarks/calibrate_ir_labels/{{variant}}.tsv",
    log:
        f"{R}/logs/{{variant}}/calibrate_ir_labels.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        calibration=calibration_params("ir_labels"),
        code=code_fingerprint("calibrate_cams"),
    message:
        "--- Calibrating the {wildcards.variant} IR-label thresholds."
    shell:
        "pcam calibrate ir_labels --index {input.index} --stores {input.stores}"
        " --params {params.calibration:q} --out {output} > {log} 2>&1"


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
        code=code_fingerprint("evaluate_cams"),
    message:
        "--- Scoring {wildcards.variant} CAMs on {wildcards.split}."
    shell:
        "pcam evaluate-cams --index {input.index} --split {wildcards.split}"
        " --stores {input.stores} --calibration {input.calibration}"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"
