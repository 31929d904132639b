"""``pcam run-costs``: run time and peak memory per rule, from Snakemake's ``benchmark:`` files.

Every rule writes ``results/<run>/benchmarks/<rule>/<job>.tsv`` (Snakemake's own
measurement of the job's process tree: wall seconds ``s``, peak resident memory ``max_rss``
in MB, ``cpu_time``). This sums them per rule so a user sees where a run's time goes and
which rule needs the memory a cluster profile must request.

With ``--variants`` it also sums them per branch of the DAG: a job belongs to the variant its
name starts with (``<variant>`` or ``<variant>_<shard|split|...>``, the longest name first, so
``pcam_full_1-of-2`` is pcam_full's, not pcam's); the other jobs (data, summary) are shared.
A branch's total is what adding that variant to a run costs in job time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pcam_core.common.atomic_output import atomic_path, write_text
from pcam_core.common.markdown_html import markdown_to_html


@dataclass
class JobCost:
    rule: str
    job: str
    seconds: float
    max_rss_mb: float | None
    cpu_seconds: float | None


def _number(value: str | None) -> float | None:
    """Snakemake writes ``-`` or ``NA`` where it could not measure (e.g. a job under 1 s)."""
    try:
        number = float(value) if value not in (None, "", "-", "NA") else None
    except ValueError:
        return None
    return None if number is None or math.isnan(number) else number


def read_benchmark(path: str | Path) -> JobCost:
    """One benchmark TSV (rule = its folder's name, job = its file's stem); last row wins."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: benchmark file not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "s" not in rows[-1]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")
    row = rows[-1]
    seconds = _number(row["s"])
    if seconds is None:
        raise ValueError(f"{path}: wall time 's' is {row['s']!r}")
    return JobCost(rule=path.parent.name, job=path.stem, seconds=seconds,
                   max_rss_mb=_number(row.get("max_rss")), cpu_seconds=_number(row.get("cpu_time")))


def per_rule(jobs: Sequence[JobCost]) -> list[dict]:
    """Rules ordered by total wall time, largest first."""
    rules: dict[str, list[JobCost]] = {}
    for job in jobs:
        rules.setdefault(job.rule, []).append(job)
    table = []
    for rule, items in rules.items():
        rss = [j.max_rss_mb for j in items if j.max_rss_mb is not None]
        cpu = [j.cpu_seconds for j in items if j.cpu_seconds is not None]
        table.append({"rule": rule, "jobs": len(items),
                      "total_s": sum(j.seconds for j in items),
                      "max_job_s": max(j.seconds for j in items),
                      "cpu_s": sum(cpu) if cpu else None,
                      "peak_rss_mb": max(rss) if rss else None})
    return sorted(table, key=lambda r: -r["total_s"])


def job_variant(job: str, variants: Sequence[str]) -> str | None:
    """The variant a job belongs to by its name (see the module docstring), or None (shared)."""
    for variant in sorted(variants, key=len, reverse=True):
        if job == variant or job.startswith(variant + "_"):
            return variant
    return None


def per_branch(jobs: Sequence[JobCost], variants: Sequence[str]) -> dict[str, dict]:
    """Variant (and "shared") -> {"total_s", "jobs", "rules": per_rule of its jobs}."""
    groups: dict[str, list[JobCost]] = {v: [] for v in variants}
    groups["shared"] = []
    for job in jobs:
        groups[job_variant(job.job, variants) or "shared"].append(job)
    return {name: {"total_s": sum(j.seconds for j in items), "jobs": len(items),
                   "rules": per_rule(items)} for name, items in groups.items()}


def branch_markdown(branches: dict[str, dict]) -> str:
    """Per variant: its total and its cost stage by stage (rules in pipeline order of cost)."""
    lines = ["", "## Cost per branch", "",
             "Job wall time of each variant's own jobs (what adding the variant to a run costs), "
             "and of the jobs all variants share.", "",
             "| branch | jobs | total s | stages (s) |", "|---|---:|---:|---|"]
    for name, branch in branches.items():
        stages = ", ".join(f"{r['rule']} {r['total_s']:.1f}" for r in branch["rules"]) or "—"
        lines.append(f"| {name} | {branch['jobs']} | {branch['total_s']:.1f} | {stages} |")
    return "\n".join(lines) + "\n"


def markdown(table: list[dict], title: str) -> str:
    total = sum(r["total_s"] for r in table)
    lines = [f"# {title}", "",
             f"{sum(r['jobs'] for r in table)} jobs, {total:.0f} s of job wall time in all "
             "(jobs that ran in parallel both count, so this exceeds the run's wall time). "
             "Peak memory is the largest job's resident set, the figure a cluster's `mem_mb` "
             "must cover.", "",
             "| rule | jobs | total s | share | longest job s | CPU s | peak memory MiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        cpu = "—" if r["cpu_s"] is None else f"{r['cpu_s']:.0f}"
        rss = "—" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        share = 100 * r["total_s"] / total if total else 0.0
        lines.append(f"| {r['rule']} | {r['jobs']} | {r['total_s']:.1f} | {share:.0f} % "
                     f"| {r['max_job_s']:.1f} | {cpu} | {rss} |")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], title: str):
    """Two bar charts side by side: wall seconds and peak memory per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["rule"] for r in table][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.35 * len(names) + 1.5), sharey=True)
    left.barh(names, [r["total_s"] for r in table][::-1], color="#4c72b0")
    left.set_xlabel("job wall time, summed over the rule's jobs (s)")
    right.barh(names, [r["peak_rss_mb"] or 0 for r in table][::-1], color="#dd8452")
    right.set_xlabel("peak resident memory of one job (MiB)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def run_costs(benchmarks: Sequence[str | Path], out_md: str | Path, out_json: str | Path,
              out_png: str | Path | None = None, title: str = "Run time and memory per rule",
              out_html: str | Path | None = None, variants: Sequence[str] = ()) -> list[dict]:
    if not benchmarks:
        raise ValueError("no benchmark file given")
    jobs = [read_benchmark(p) for p in benchmarks]
    table = per_rule(jobs)
    text = markdown(table, title)
    result = {"format": "pcam-run-costs/1", "rules": table}
    if variants:
        result["branches"] = per_branch(jobs, variants)
        text += branch_markdown(result["branches"])
    write_text(out_md, text)
    if out_html:
        write_text(out_html, markdown_to_html(text, title))
    write_text(out_json, json.dumps(result, indent=1))
    if out_png:
        fig = plot(table, title)
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmarks", nargs="+", required=True,
                        help="Snakemake benchmark TSVs, laid out as <rule>/<job>.tsv")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="the run's variants: also sum the jobs per branch (by job name)")
    parser.add_argument("--title", default="Run time and memory per rule")
    parser.add_argument("--out-md", required=True)
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-png", help="bar charts of the same table")
    parser.add_argument("--out-html", help="the table as an HTML page (the report shows it)")


def main(args: argparse.Namespace) -> int:
    table = run_costs(args.benchmarks, args.out_md, args.out_json, args.out_png, args.title,
                      args.out_html, args.variants)
    print(f"run-costs: {len(table)} rules, {sum(r['jobs'] for r in table)} jobs")
    return 0
