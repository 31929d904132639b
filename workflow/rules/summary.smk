# Summary (paper Tables 1-3 side by side, with the paper's numbers for voc2012).


# ----------------------------------------------------------------------------------
rule summary:
    input:
        metrics_files(),
    output:
        md=report(f"{R}/summary.md", category="Summary"),
        json=f"{R}/summary.json",
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
        " --dataset {params.dataset} --out-md {output.md} --out-json {output.json} > {log} 2>&1"
