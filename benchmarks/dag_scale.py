"""How long Snakemake takes to plan a VOC-size run, and to find a finished run up to date.

    .venv/bin/python benchmarks/dag_scale.py [--workdir /tmp/pcam_dag_bench] [--finished results/..]

1. A VOC-size index without images: 10,582 train_aug + 1,464 train + 1,449 val ids (the
   train ids inside train_aug, as in VOC + SBD), written as the index.json of a run of
   config_voc2012.yaml whose data roots point at empty folders, so that nothing is
   downloaded. Timed: parsing the workflow (`--list-rules`) and the dry run (`-n`: parse,
   DAG construction, job plan), each the median of 3, and the planned job count.
2. With ``--finished DIR`` (a working directory holding a finished demo run, e.g. the
   one benchmarks/demo_pipeline.py leaves in its --workdir): `snakemake -n` there, the
   check a user runs to see that nothing is left to do.

Target (issue 10): VOC-size dry run <= 10 s with <= 200 jobs at the default shard count;
the dry run of the finished demo <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcam_core.common.dataset_index import DatasetIndex, ImageRecord  # noqa: E402
from pcam_core.data.voc_reader import voc_class_list  # noqa: E402

N_TRAIN_AUG, N_TRAIN, N_VAL = 10_582, 1_464, 1_449


def voc_size_index(root: Path) -> DatasetIndex:
    """Records with VOC-like ids and sizes; no image file exists (the DAG never reads one)."""
    records, splits = [], {"train": [], "val": [], "train_aug": []}
    for i in range(N_TRAIN_AUG + N_VAL):
        image_id = f"2010_{i:06d}"
        in_val = i >= N_TRAIN_AUG
        names = ("val",) if in_val else (("train", "train_aug") if i < N_TRAIN else ("train_aug",))
        for name in names:
            splits[name].append(image_id)
        records.append(ImageRecord(id=image_id, image=str(root / f"{image_id}.jpg"), height=375,
                                   width=500, splits=names, classes=(1 + i % 20,),
                                   gt_classes=(1 + i % 20,) if in_val or i < N_TRAIN else ()))
    return DatasetIndex(records, splits, "voc2012", voc_class_list())


def snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--cores", "2"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def job_count(text: str) -> int:
    if "Nothing to be done" in text:
        return 0
    match = re.search(r"^total\s+(\d+)$", text, re.M)
    return int(match.group(1)) if match else -1


def median_time(workdir: Path, *args: str, repeats: int = 3) -> tuple[float, str]:
    runs = [snakemake(workdir, *args) for _ in range(repeats)]
    return statistics.median(s for s, _ in runs), runs[-1][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pcam_dag_bench"))
    parser.add_argument("--finished", type=Path, default=None,
                        help="working directory of a finished demo run to dry-run")
    args = parser.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    for folder in ("voc", "sbd"):
        (work / "data" / folder).mkdir(parents=True)
    (work / "data" / "points.json").write_text("{}")
    config = yaml.safe_load((REPO / "config_voc2012.yaml").read_text())
    config["dataset"].update(voc_root=str(work / "data/voc"), sbd_root=str(work / "data/sbd"),
                             points=str(work / "data/points.json"))
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    index_path = work / "results" / config["run_name"] / "data" / "index.json"
    index_path.parent.mkdir(parents=True)
    started = time.perf_counter()
    voc_size_index(work / "data/voc/JPEGImages").save(index_path)
    build_s = time.perf_counter() - started

    parse_s, _ = median_time(work, "--list-rules")
    dry_s, text = median_time(work, "-n")
    print(f"VOC-size index: {N_TRAIN_AUG:,} train_aug + {N_TRAIN:,} train + {N_VAL:,} val ids, "
          f"written in {build_s:.1f} s ({index_path.stat().st_size / 1e6:.1f} MB)")
    print(f"shards {config['shards']}, variants {', '.join(config['variants'])}")
    print("| what | seconds (median of 3) | jobs |")
    print("|---|---:|---:|")
    print(f"| parse the workflow (`--list-rules`) | {parse_s:.2f} | |")
    print(f"| dry run (`-n`: parse + DAG + plan) | {dry_s:.2f} | {job_count(text)} |")
    if args.finished:
        finished_s, text = median_time(args.finished, "-n")
        jobs = job_count(text)
        print(f"| dry run of the finished run in {args.finished} | {finished_s:.2f} | {jobs} "
              f"({'nothing to do' if jobs == 0 else 'jobs left'}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
