# IRNet stage (spec §3-5, paper Table 2): mine affinity labels from the CAMs, train the IRNet
# boundary branch, and turn CAMs into pseudo labels with the sparse random walk.


# Confident foreground / background from the CAMs, refined by a dense CRF (CPU work).
# ----------------------------------------------------------------------------------
rule mine_ir_labels:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        cams=rules.export_cams.output,
    output:
        directory(f"{R}/{{variant}}/irn/ir_labels/{{shard}}"),
    log:
        f"{R}/logs/{{variant}}/mine_ir_labels_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        irn=section("irn", only=IRN_MINING_KEYS),
        code=code_fingerprint("mine_ir_labels"),
    threads: 4
    message:
        "--- Mining {wildcards.variant} IR labels of shard {wildcards.shard}."
    shell:
        "pcam mine-ir-labels --index {input.index} --shard {input.shard}"
        " --cams {input.cams} --params {params.irn:q} --out-dir {output}"
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
    log:
        stderr=f"{R}/logs/{{variant}}/train_irn.log",
        jsonl=f"{R}/{{variant}}/irn/train_log.jsonl",
    conda:
        "../../envs/pcam.yaml"
    params:
        irn=section("irn", drop=IRN_MINING_KEYS),
        weights=weights_flag("irn"),
        device=config["device"],
        code=code_fingerprint("train_irn"),
    threads: 8
    resources:
        gpu=1,
    message:
        "--- Training the {wildcards.variant} IRNet."
    shell:
        "pcam train-irn --index {input.index} --ir-label-dirs {input.ir_labels}"
        " --params {params.irn:q} {params.weights} --out {output}"
        " --log-jsonl {log.jsonl} --threads {threads}"
        " --device {params.device} > {log.stderr} 2>&1"


# Random walk: CAM seeds spread along boundary-aware affinities -> pseudo-label PNGs.
# ----------------------------------------------------------------------------------
rule random_walk:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        cams=rules.export_cams.output,
        irn=rules.train_irn.output,
    output:
        directory(f"{R}/{{variant}}/pseudo/{{shard}}"),
    log:
        f"{R}/logs/{{variant}}/random_walk_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        rw=section("random_walk"),
        device=config["device"],
        code=code_fingerprint("random_walk"),
    threads: 4
    resources:
        gpu=1,
    message:
        "--- Random walk for {wildcards.variant}, shard {wildcards.shard}."
    shell:
        "pcam random-walk --index {input.index} --shard {input.shard}"
        " --cams {input.cams} --irn {input.irn} --params {params.rw:q}"
        " --out-dir {output} --threads {threads} --device {params.device} > {log} 2>&1"


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
    log:
        f"{R}/logs/{{variant}}/evaluate_{{stage}}_{{split}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        stage="pseudo|deeplab",
    params:
        code=code_fingerprint("evaluate"),
    message:
        "--- Scoring {wildcards.variant} {wildcards.stage} labels on {wildcards.split}."
    shell:
        "pcam evaluate --index {input.index} --split {wildcards.split}"
        " --pred-dirs {input.labels} --title '{wildcards.variant} {wildcards.stage} ({wildcards.split})'"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"
