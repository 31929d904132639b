# The HTML report's own items (`snakemake --report report.html` after a run): figures drawn
# from the run's outputs, the run's cost per rule, and the manifest of what produced it.
# Each rule is one `pcam` call; none of them feeds a stage of the method. Code: pcam_core/report/.


# Run time and peak memory per rule, from every stage's `benchmark:` file, and per variant:
# what each branch of the DAG costs, stage by stage.
# ----------------------------------------------------------------------------------
rule run_costs:
    input:
        benchmark_files(),
    output:
        md=f"{R}/report/run_costs.md",
        html=report(f"{R}/report/run_costs.html", caption="../report/run_costs.rst", category="Run",
                    subcategory="Cost per rule", labels={"item": "table"}),
        png=report(f"{R}/report/run_costs.png", caption="../report/run_costs.rst", category="Run",
                   subcategory="Cost per rule", labels={"item": "chart"}),
        json=f"{R}/report/run_costs.json",
    log:
        f"{R}/logs/report/run_costs.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        variants=VARIANTS,
        code=code_fingerprint("run-costs"),
    message:
        "--- Run time and memory per rule."
    shell:
        "pcam run-costs --benchmarks {input} --variants {params.variants}"
        " --out-md {output.md} --out-html {output.html}"
        " --out-png {output.png}"
        " --out-json {output.json} > {log} 2>&1"


# Code commit, package versions, device and effective config of the run.
# ----------------------------------------------------------------------------------
rule run_manifest:
    output:
        md=f"{R}/report/manifest.md",
        html=report(f"{R}/report/manifest.html", caption="../report/manifest.rst", category="Run",
                    subcategory="Manifest", labels={"item": "manifest"}),
        json=f"{R}/report/manifest.json",
    log:
        f"{R}/logs/report/run_manifest.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
        repo=workflow.basedir,
        # rewritten (with the commit of that moment) when the code of any stage changes
        code=all_code_fingerprint(),
    message:
        "--- Recording the run manifest."
    shell:
        "pcam run-manifest --config-json {params.config:q} --repo {params.repo:q}"
        " --out-md {output.md} --out-html {output.html} --out-json {output.json} > {log} 2>&1"


# Image | clicks | CAM | PCAM | refined | DeepLab | ground truth for a fixed sample of images.
# ----------------------------------------------------------------------------------
rule qualitative_grid:
    input:
        unpack(qualitative_grid_inputs),
    output:
        report(f"{R}/report/qualitative_grid.png", caption="../report/qualitative_grid.rst",
               category="Figures", subcategory="Qualitative", labels={"figure": "grid"}),
    log:
        f"{R}/logs/report/qualitative_grid.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        columns=qualitative_grid_columns,
        code=code_fingerprint("qualitative-grid"),
    message:
        "--- Drawing the qualitative grid."
    shell:
        "pcam qualitative-grid --index {input.index} {params.columns} --out {output} > {log} 2>&1"


# Per-class IoU on val of every stage of one variant (Tables 1-3, and DeepLab like for like;
# the stages its branch has).
# ----------------------------------------------------------------------------------
rule figure_class_iou:
    input:
        unpack(class_iou_inputs),
    output:
        report(f"{R}/report/{{variant}}/class_iou.png", caption="../report/class_iou.rst",
               category="Figures", subcategory="Per-class IoU", labels={"variant": "{variant}"}),
    log:
        f"{R}/logs/report/{{variant}}/class_iou.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        variant=variants_regex(ALL_VARIANTS),
    params:
        metrics=class_iou_args,
        code=code_fingerprint("report-figure"),
    message:
        "--- Per-class IoU figure of {wildcards.variant}."
    shell:
        "pcam report-figure class-iou {params.metrics} --index {input.index}"
        " --title 'Per-class IoU on val: {wildcards.variant}' --out {output} > {log} 2>&1"


# Training curves of one trained model (its JSON-lines log; the model file orders the job).
# ----------------------------------------------------------------------------------
rule figure_training_curves:
    input:
        f"{R}/{{variant}}/{{model}}/model.pt",
    output:
        report(f"{R}/report/{{variant}}/training_{{model}}.png",
               caption="../report/training_curves.rst", category="Figures",
               subcategory="Training curves", labels={"variant": "{variant}", "model": "{model}"}),
    log:
        f"{R}/logs/report/{{variant}}/training_{{model}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        model="cam|irn|deeplab",
        variant=variants_regex(ALL_VARIANTS),
    params:
        # the training's log (a log of its rule, so not an input; its model is)
        log_jsonl=lambda wc: f"{R}/{wc.variant}/{wc.model}/train_log.jsonl",
        code=code_fingerprint("report-figure"),
    message:
        "--- Training curves of {wildcards.model} ({wildcards.variant})."
    shell:
        "pcam report-figure training-curves --log {params.log_jsonl} --labels {wildcards.model}"
        " --title 'Training: {wildcards.model} ({wildcards.variant})' --out {output} > {log} 2>&1"


# Calibration curves of one step, the chosen threshold(s) marked.
# ----------------------------------------------------------------------------------
rule figure_calibration:
    input:
        f"{R}/{{variant}}/calibration/{{step}}.json",
    output:
        report(f"{R}/report/{{variant}}/calibration_{{step}}.png",
               caption="../report/calibration_curves.rst", category="Figures",
               subcategory="Calibration", labels={"variant": "{variant}", "step": "{step}"}),
    log:
        f"{R}/logs/report/{{variant}}/calibration_{{step}}.log",
    conda:
        "../../envs/pcam.yaml"
    wildcard_constraints:
        step="cam_threshold|ir_labels|walk",
    params:
        code=code_fingerprint("report-figure"),
    message:
        "--- Calibration curves of {wildcards.step} ({wildcards.variant})."
    shell:
        "pcam report-figure calibration --calibration {input}"
        " --title 'Calibration: {wildcards.step} ({wildcards.variant})' --out {output} > {log} 2>&1"


# Click statistics of the dataset as charts.
# ----------------------------------------------------------------------------------
rule figure_data_report:
    input:
        report=f"{R}/data/data_report.json",
        index=INDEX,
    output:
        report(f"{R}/report/data_report.png", caption="../report/data_charts.rst",
               category="Data", labels={"figure": "click statistics"}),
    log:
        f"{R}/logs/report/data_report.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        code=code_fingerprint("report-figure"),
    message:
        "--- Data report charts."
    shell:
        "pcam report-figure data-report --report {input.report} --index {input.index}"
        " --title 'Clicks and data quirks' --out {output} > {log} 2>&1"

