# "What's the point" (Bearman et al.), variant `wtp`: DeepLabv3+ trained directly on the
# image-level labels and the clicks (their Eq. 2-3), with the PCAM branch's DeepLab settings.
# No CAM, IRNet or pseudo labels: the model goes straight to predict_val (deeplab.smk) and
# its scores (evaluation.smk). Code: pcam_core/wtp/.


# DeepLabv3+ trained with the image-level + point loss; the FINAL checkpoint is reported.
# ----------------------------------------------------------------------------------
rule train_wtp:
    input:
        index=INDEX,
        weights=imagenet_weights("deeplab"),
    output:
        f"{R}/wtp/deeplab/model.pt",
    benchmark:
        f"{R}/benchmarks/train_wtp/wtp.tsv",
    log:
        stderr=f"{R}/logs/wtp/train_wtp.log",
        jsonl=f"{R}/wtp/deeplab/train_log.jsonl",
    conda:
        "../../envs/pcam.yaml"
    params:
        wtp=section("wtp"),
        deeplab=section("deeplab"),
        weights=weights_flag("deeplab"),
        device=config["device"],
        code=code_fingerprint("train-wtp"),
    threads: stage_threads(8)
    resources:
        gpu=GPU_PER_JOB,
    message:
        "--- Training DeepLabv3+ on the clicks ('What's the point' losses)."
    shell:
        "pcam train-wtp --index {input.index} --params {params.wtp:q}"
        " --deeplab-params {params.deeplab:q} {params.weights} --out {output}"
        " --log-jsonl {log.jsonl} --threads {threads}"
        " --device {params.device} > {log.stderr} 2>&1"
