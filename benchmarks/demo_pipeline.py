"""Time the whole demo DAG from scratch and measure its peak memory.

    .venv/bin/python benchmarks/demo_pipeline.py [--workdir /tmp/pcam_demo_bench] [--cores 2]
        [--set dataset.demo.style=shape --set dataset.demo.seed=1 ...]

Runs `snakemake --cores N --resources gpu=1` with the repository's config.yaml (with the
``--set`` values, YAML-parsed, replacing single keys) in a fresh working directory and samples, every 0.2 s, the summed resident memory of snakemake and all
its descendants (parallel jobs count together, unlike /usr/bin/time's single-process peak).
Prints wall seconds, peak summed RSS, the summary, and the seconds and peak memory per rule
(the run's report/run_costs.md, from Snakemake's benchmark files), and records wall time
and peak memory in <workdir>/demo_pipeline.json for benchmarks/readme_results.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def write_config(source: Path, settings: list[str], target: Path) -> None:
    """The config file with ``a.b.c=value`` settings applied (values parsed as YAML)."""
    config = yaml.safe_load(source.read_text())
    for setting in settings:
        path, _, value = setting.partition("=")
        keys = path.split(".")
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = yaml.safe_load(value)
    target.write_text(yaml.safe_dump(config, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/pcam_demo_bench")
    parser.add_argument("--cores", default="2")
    parser.add_argument("--configfile", default=str(REPO / "config.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="replace one config value, e.g. dataset.demo.style=shape (repeatable)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory's results (rerun only what changed)")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(Path(args.configfile), args.set, workdir / "config.yaml")
    env = dict(os.environ, PCAM_NO_PROGRESS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", args.cores, "--resources", "gpu=1"]

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    handle = psutil.Process(proc.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(handle))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    log = proc.communicate()[0]
    stop.set()
    sampler.join()
    wall = time.perf_counter() - start
    (workdir / "snakemake_stdout.log").write_text(log)
    if proc.returncode != 0:
        print(log[-5000:])
        sys.exit(f"snakemake failed with exit code {proc.returncode}")

    # benchmarks/readme_results.py writes the README's demo table from this and the run
    (workdir / "demo_pipeline.json").write_text(json.dumps(
        {"wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20), "cores": args.cores}) + "\n")
    print(f"demo DAG wall time: {wall:.1f} s on {args.cores} cores")
    print(f"peak summed RSS (snakemake + all jobs): {peak / 2**20:.0f} MiB")
    summary = next((workdir / "results").glob("*/summary.md"))
    print(summary.read_text())
    costs = summary.parent / "report" / "run_costs.md"  # per rule, from Snakemake's benchmark files
    if costs.exists():
        print(costs.read_text())


if __name__ == "__main__":
    main()
