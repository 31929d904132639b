# DeepLabv3+ stage (paper §3.3, Tables 3-4): train on each variant's pseudo labels, then
# predict val at full resolution (single scale, no flip, no CRF), shard by shard.
# Code: pcam_core/deeplab/ (scored in evaluation.smk). The pmp_blot variant's labels are its
# point blots (pmp.smk); the wtp variant's model comes from train_wtp (wtp.smk), and its
# predictions from here.


# DeepLabv3+ (output stride 16) trained on the pseudo labels; the FINAL checkpoint is reported.
# ----------------------------------------------------------------------------------
rule train_deeplab:
    input:
        index=INDEX,
        labels=gather.shard(f"{R}/{{{{variant}}}}/pseudo/{{scatteritem}}"),
        weights=imagenet_weights("deeplab"),
    output:
        f"{R}/{{variant}}/deeplab/model.pt",
    benchmark:
        f"{R}/benchmarks/train_deeplab/{{variant}}.tsv",
    log:
        stderr=f"{R}/logs/{{variant}}/train_deeplab.log",
        jsonl=f"{R}/{{variant}}/deeplab/train_log.jsonl",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(LABEL_VARIANTS),
    params:
        deeplab=section("deeplab"),
        weights=weights_flag("deeplab"),
        device=config["device"],
        code=code_fingerprint("train-deeplab"),
    threads: stage_threads(8)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Training DeepLabv3+ on {wildcards.variant} pseudo labels."
    shell:
        "pcam train-deeplab --index {input.index} --label-dirs {input.labels}"
        " --params {params.deeplab:q} {params.weights} --out {output}"
        " --log-jsonl {log.jsonl} --threads {threads}"
        " --device {params.device} > {log.stderr} 2>&1"


# Val predictions of one shard (palette PNGs at full resolution).
# ----------------------------------------------------------------------------------
rule predict_val:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        model=rules.train_deeplab.output,
    output:
        predictions=directory(f"{R}/{{variant}}/deeplab/predictions/{{shard}}"),
        true_classes=directory(f"{R}/{{variant}}/deeplab/predictions_true_classes/{{shard}}"),
    benchmark:
        f"{R}/benchmarks/predict_val/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/predict_val_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(ALL_VARIANTS),
    params:
        device=config["device"],
        code=code_fingerprint("predict"),
    threads: stage_threads(4)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Predicting val images of shard {wildcards.shard} ({wildcards.variant})."
    shell:
        "pcam predict --checkpoint {input.model} --index {input.index}"
        " --shard {input.shard} --split val --out-dir {output.predictions}"
        " --true-classes-out-dir {output.true_classes}"
        " --threads {threads} --device {params.device} > {log} 2>&1"


# Predictions for the images a user names (config predict.images): every image of the shard,
# or the listed ids. `snakemake predict` builds them; rule all too when predict.images is set.
# ----------------------------------------------------------------------------------
rule predict_images:
    input:
        index=INDEX,
        shard=SHARD_LIST,
        model=rules.train_deeplab.output,
        ids=predict_ids_file(),
    output:
        directory(f"{R}/{{variant}}/deeplab/predict/{{shard}}"),
    benchmark:
        f"{R}/benchmarks/predict_images/{{variant}}_{{shard}}.tsv",
    log:
        f"{R}/logs/{{variant}}/predict_images_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(ALL_VARIANTS),
    params:
        ids=lambda wc, input: f"--ids {shlex.quote(input.ids)}" if input.ids else "",
        device=config["device"],
        code=code_fingerprint("predict"),
    threads: stage_threads(4)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Predicting the named images of shard {wildcards.shard} ({wildcards.variant})."
    shell:
        "pcam predict --checkpoint {input.model} --index {input.index}"
        " --shard {input.shard} --split all {params.ids} --out-dir {output}"
        " --threads {threads} --device {params.device} > {log} 2>&1"


# `snakemake predict --cores all --resources gpu=1`: the named images of every variant.
# ----------------------------------------------------------------------------------
rule predict:
    input:
        predict_targets(),
