# PMP point blots (Akiva & Dana), variant `pmp_blot`: each shard's clicks grown into labelled
# blobs by scatter-then-walk on the image colours (no training), written where the PCAM branch
# writes its pseudo labels, so that train_deeplab and predict_val (deeplab.smk) take them as
# they are; the blots' own quality and coverage are scored here. Code: pcam_core/pmp/.


# Blot label PNGs of one shard: click classes, 0 = background blots, 255 = unlabelled.
# ----------------------------------------------------------------------------------
rule point_blots:
    input:
        index=INDEX,
        shard=SHARD_LIST,
    output:
        directory(f"{R}/pmp_blot/pseudo/{{shard}}"),
    benchmark:
        f"{R}/benchmarks/point_blots/pmp_blot_{{shard}}.tsv",
    log:
        f"{R}/logs/pmp_blot/point_blots_{{shard}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        pmp=section("pmp"),
        code=code_fingerprint("point-blots"),
    message:
        "--- Point blots of shard {wildcards.shard}."
    shell:
        "pcam point-blots --index {input.index} --shard {input.shard} --params {params.pmp:q}"
        " --out-dir {output} > {log} 2>&1"


# The blots scored on the masked images of a split: mIoU of the labelled pixels, and coverage.
# ----------------------------------------------------------------------------------
rule score_blots:
    input:
        index=INDEX,
        blots=gather.shard(f"{R}/pmp_blot/pseudo/{{scatteritem}}"),
    output:
        json=f"{R}/pmp_blot/pseudo/blot_metrics_{{split}}.json",
        md=report(
            f"{R}/pmp_blot/pseudo/blot_metrics_{{split}}.md",
            category="Tables 2-3: labels",
            labels={"variant": "pmp_blot", "stage": "point blots (labelled pixels)", "split": "{split}"},
        ),
    benchmark:
        f"{R}/benchmarks/score_blots/pmp_blot_{{split}}.tsv",
    log:
        f"{R}/logs/pmp_blot/score_blots_{{split}}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        code=code_fingerprint("score-blots"),
    message:
        "--- Scoring the point blots on {wildcards.split}."
    shell:
        "pcam score-blots --index {input.index} --split {wildcards.split}"
        " --blot-dirs {input.blots} --title 'pmp_blot point blots ({wildcards.split})'"
        " --out-json {output.json} --out-md {output.md} > {log} 2>&1"
