# IRNet stage (spec §3-5, paper Table 2): mine affinity labels from the CAMs, train the IRNet
# boundary branch, and turn CAMs into pseudo labels with the sparse random walk.
# Code: pcam_core/irn/ (thresholds from calibration.smk, scores in evaluation.smk).


# Confident foreground / background from the CAMs, refined by a dense CRF (CPU work).
# ----------------------------------------------------------------------------------
rule mine_ir_labels:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        cams=rules.export_cams.output,
        calibration=rules.calibrate_ir_labels.output,
    output:
        directory(f"{R}/{{variant}}/irn/ir_labels/{{shard}}"),
    benchmark:
        f"{R}/benchmarks/mine_ir_labels/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/mine_ir_labels_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        irn=section("irn", only=IRN_MINING_KEYS),
        code=code_fingerprint("mine-ir-labels"),
    threads: stage_threads(4)
    message:
        "--- Mining {wildcards.variant} IR labels of shard {wildcards.shard}."
    shell:
        "pcam mine-ir-labels --index {input.index} --shard {input.shard}"
        " --cams {input.cams} --params {params.irn:q} --calibration {input.calibration}"
        " --out-dir {output}"
        " --threads {threads} > {log} 2>&1"


# IRNet boundary branch on a frozen ImageNet backbone (not the CAM network).
# ----------------------------------------------------------------------------------
rule train_irn:
    input:
        index=INDEX,
        ir_labels=gather.shard(f"{R}/{{{{variant}}}}/irn/ir_labels/{{scatteritem}}"),
        weights=imagenet_weights("irn"),
    output:
        f"{R}/{{variant}}/irn/model.pt",
    benchmark:
        f"{R}/benchmarks/train_irn/{{variant}}.tsv",
    log:
        stderr=f"{R}/logs/{{variant}}/train_irn.log",
        jsonl=f"{R}/{{variant}}/irn/train_log.jsonl",
    conda:
        "../../envs/pcam.yaml"
    params:
        irn=section("irn", drop=IRN_MINING_KEYS + IRN_THRESHOLD_KEYS),
        weights=weights_flag("irn"),
        device=config["device"],
        code=code_fingerprint("train-irn"),
    threads: stage_threads(8)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Training the {wildcards.variant} IRNet."
    shell:
        "pcam train-irn --index {input.index} --ir-label-dirs {input.ir_labels}"
        " --params {params.irn:q} {params.weights} --out {output}"
        " --log-jsonl {log.jsonl} --threads {threads}"
        " --device {params.device} > {log.stderr} 2>&1"


# Random walk: CAM seeds spread along boundary-aware affinities. The continuous maps (and
# the boundary map) are kept in a store per shard, so a threshold change never reruns it.
# ----------------------------------------------------------------------------------
rule random_walk:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        cams=rules.export_cams.output,
        irn=rules.train_irn.output,
    output:
        f"{R}/{{variant}}/pseudo/walk/{{shard}}.h5",
    benchmark:
        f"{R}/benchmarks/random_walk/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/random_walk_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        rw=section("random_walk", drop=["bg_threshold"]),
        device=config["device"],
        code=code_fingerprint("random-walk"),
    threads: stage_threads(4)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Random walk for {wildcards.variant}, shard {wildcards.shard}."
    shell:
        "pcam random-walk --index {input.index} --shard {input.shard}"
        " --cams {input.cams} --irn {input.irn} --params {params.rw:q}"
        " --out {output} --threads {threads} --device {params.device} > {log} 2>&1"


# Pseudo-label PNGs of a shard: the walk's maps cut at the calibrated background threshold.
# ----------------------------------------------------------------------------------
rule pseudo_labels:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        walk=rules.random_walk.output,
        calibration=rules.calibrate_walk.output,
    output:
        directory(f"{R}/{{variant}}/pseudo/{{shard}}"),
    benchmark:
        f"{R}/benchmarks/pseudo_labels/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/pseudo_labels_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        code=code_fingerprint("pseudo-labels"),
    message:
        "--- Pseudo labels for {wildcards.variant}, shard {wildcards.shard}."
    shell:
        "pcam pseudo-labels --index {input.index} --shard {input.shard} --walk {input.walk}"
        " --calibration {input.calibration} --out-dir {output} > {log} 2>&1"
