# PCAM stage (paper §3.1, Table 1): train the (point-supervised) CAM network per variant,
# export multi-scale CAMs shard by shard. Code: pcam_core/cam/ (scored in evaluation.smk).


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
        code=code_fingerprint("train-cam"),
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
        code=code_fingerprint("export-cams"),
    threads: stage_threads(4)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Exporting {wildcards.variant} CAMs of shard {wildcards.shard}."
    shell:
        "pcam export-cams --index {input.index} --shard {input.shard}"
        " --model {input.model} --params {params.cam:q} --out {output}"
        " --threads {threads} --device {params.device} > {log} 2>&1"
