# Calibration stage (issue 9): the thresholds the method needs, chosen on the train images
# that have ground-truth masks (calibration: auto) or taken from the config (fixed). Each
# step writes a small JSON that is an INPUT of the rules using it, so recalibrating one
# reruns exactly its dependants. Code: pcam_core/calibration/.


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
        code=code_fingerprint("calibrate-cams"),
    message:
        "--- Calibrating the {wildcards.variant} CAM evaluation threshold."
    shell:
        "pcam calibrate-cams cam_threshold --index {input.index} --stores {input.stores}"
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
        code=code_fingerprint("calibrate-cams"),
    message:
        "--- Calibrating the {wildcards.variant} IR-label thresholds."
    shell:
        "pcam calibrate-cams ir_labels --index {input.index} --stores {input.stores}"
        " --params {params.calibration:q} --out {output} > {log} 2>&1"


# The walk's background threshold, chosen on masked train images (or as configured).
# ----------------------------------------------------------------------------------
rule calibrate_walk:
    input:
        index=INDEX,
        stores=gather.shard(f"{R}/{{{{variant}}}}/pseudo/walk/{{scatteritem}}.h5"),
    output:
        f"{R}/{{variant}}/calibration/walk.json",
    benchmark:
        f"{R}/benchmarks/calibrate_walk/{{variant}}.tsv",
    log:
        f"{R}/logs/{{variant}}/calibrate_walk.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        calibration=calibration_params("walk"),
        code=code_fingerprint("calibrate-walk"),
    message:
        "--- Calibrating the {wildcards.variant} random-walk threshold."
    shell:
        "pcam calibrate-walk --index {input.index} --stores {input.stores}"
        " --params {params.calibration:q} --out {output} > {log} 2>&1"
