# Data stage: the demo dataset or the real downloads, the dataset index every later stage
# reads, the data report, and the shard lists of the per-image stages. Code: pcam_core/data/.


# Generate the embedded demo dataset in the real on-disk formats (VOC + SBD + click JSON).
# ----------------------------------------------------------------------------------
rule make_demo_dataset:
    output:
        directory(f"{R}/data/dataset"),
    benchmark:
        f"{R}/benchmarks/make_demo_dataset/demo.tsv",
    log:
        f"{R}/logs/data/make_demo_dataset.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        demo=json.dumps(config["dataset"]["demo"], sort_keys=True),
        code=code_fingerprint("make-demo"),
    message:
        "--- Generating the demo dataset."
    shell:
        "pcam make-demo --params {params.demo:q} --out {output} > {log} 2>&1"


# PASCAL VOC 2012 trainval (1,999,639,040 bytes), resumable, MD5-checked, extracted atomically.
# ----------------------------------------------------------------------------------
rule download_voc2012:
    output:
        directory("resources/voc2012"),
    log:
        "resources/logs/download_voc2012.log",
    conda:
        "../../envs/pcam.yaml"
    retries: 2
    message:
        "--- Downloading PASCAL VOC 2012 trainval (2.0 GB)."
    shell:
        "pcam download"
        " --url http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
        " --out resources/downloads/VOCtrainval_11-May-2012.tar"
        " --size 1999639040 --md5 6cd6e144f989b92b3379bac3b3de84fd"
        " --extract-to {output} > {log} 2>&1"


# SBD benchmark (1,419,539,633 bytes): the extra train_aug masks.
# ----------------------------------------------------------------------------------
rule download_sbd:
    output:
        directory("resources/sbd"),
    log:
        "resources/logs/download_sbd.log",
    conda:
        "../../envs/pcam.yaml"
    retries: 2
    message:
        "--- Downloading the SBD benchmark (1.4 GB)."
    shell:
        "pcam download"
        " --url http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
        " --out resources/downloads/benchmark.tgz"
        " --size 1419539633 --md5 82b4d87ceb2ed10f6038a1cba92111cb"
        " --extract-to {output} > {log} 2>&1"


# "What's the point" clicks. No published checksum: the first download's MD5 is recorded
# in resources/downloads/ and every later use is verified against it.
# ----------------------------------------------------------------------------------
rule download_points:
    output:
        "resources/whats_the_point/{member}",
    log:
        "resources/logs/download_points_{member}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        url=config["dataset"]["points_url"],
    retries: 2
    message:
        "--- Downloading the 'What's the point' click archive."
    shell:
        "(pcam download --url {params.url:q}"
        " --out resources/downloads/whats_the_point_archive"
        " --record-md5 resources/downloads/whats_the_point_archive.md5"
        " --extract-to resources/whats_the_point/archive"
        " && cp \"$(find resources/whats_the_point/archive -name {wildcards.member:q} | head -n 1)\" {output:q}"
        ") > {log} 2>&1"


# torchvision ImageNet ResNet weights (V1); the hash prefix in the name is checked.
# ----------------------------------------------------------------------------------
rule download_weights:
    output:
        "resources/weights/{file}",
    log:
        "resources/logs/download_weights_{file}.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        url=lambda wc: WEIGHT_URL.format(file=wc.file),
        sha256_prefix=lambda wc: wc.file.rsplit("-", 1)[-1].split(".")[0],
    retries: 2
    message:
        "--- Downloading ImageNet weights {wildcards.file}."
    shell:
        "pcam download --url {params.url} --out {output}"
        " --sha256-prefix {params.sha256_prefix} > {log} 2>&1"


# The dataset index (the contract every later stage reads) and the data report. Bad input
# it can leave out is skipped and counted, or with config strict: true an error (bad_input.py);
# the counts end the log.
# ----------------------------------------------------------------------------------
rule build_index:
    input:
        data_inputs,
    output:
        index=INDEX,
        report_json=f"{R}/data/data_report.json",
        report_md=report(f"{R}/data/data_report.md", category="Data"),
    benchmark:
        f"{R}/benchmarks/build_index/index.tsv",
    log:
        f"{R}/logs/data/build_index.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        name=DATASET,
        sources=build_index_args(),
        reading=json.dumps(config["dataset"]["image_reading"], sort_keys=True),
        strict="--strict" if config["strict"] else "",
        files=source_fingerprint(),
        code=code_fingerprint("build-index"),
    message:
        "--- Building the dataset index ({params.name})."
    shell:
        "pcam build-index --name {params.name} {params.sources}"
        " --image-reading {params.reading:q} {params.strict}"
        " --out {output.index} --report-json {output.report_json}"
        " --report-md {output.report_md} > {log} 2>&1"


# Shard lists: per-image stages run one job per shard, never one job per image.
# ----------------------------------------------------------------------------------
rule make_shards:
    input:
        INDEX,
    output:
        scatter.shard(f"{R}/data/shards/{{scatteritem}}.txt"),
    benchmark:
        f"{R}/benchmarks/make_shards/shards.tsv",
    log:
        f"{R}/logs/data/make_shards.log",
    conda:
        "../../envs/pcam.yaml"
    params:
        code=code_fingerprint("make-shards"),
    message:
        "--- Splitting the image list into shards."
    shell:
        "pcam make-shards --index {input} --outputs {output} > {log} 2>&1"


# The data part of the DAG on its own: `snakemake --cores all --resources gpu=1 data`.
# ----------------------------------------------------------------------------------
rule data:
    input:
        rules.build_index.output,
        rules.make_shards.output,
