"""``pcam run-manifest``: what produced a run: code commit, package versions, device, config.

A number in a report is only worth something if the reader can tell which code, which
library versions, which device and which settings made it. The manifest records them from
the environment the pipeline's jobs run in (the job's own interpreter), not from the
machine that renders the report.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from pcam_core.common.atomic_output import write_text
from pcam_core.common.markdown_html import markdown_to_html

# The distributions whose version can change a result (numerics, I/O, scheduling).
PACKAGES = ("pcam-core", "torch", "torchvision", "numpy", "scipy", "pillow", "h5py",
            "pydensecrf2", "snakemake", "snakemake-executor-plugin-slurm", "matplotlib")
MANIFEST_FORMAT = "pcam-run-manifest/1"


def git_state(repo: str | Path) -> dict[str, Any]:
    """Commit and whether tracked files differ from it; ``None`` outside a git checkout."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None,
                "note": f"{repo} is not a git checkout (or git is not installed)"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(requested: str) -> dict[str, Any]:
    """The device ``requested`` resolves to for the jobs, with its name."""
    import torch

    from pcam_core.common.training_loop import pick_device

    device = pick_device(requested)
    info: dict[str, Any] = {"requested": requested, "resolved": str(device),
                            "torch_cuda": torch.version.cuda, "cpu": cpu_name(),
                            "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda_devices"] = torch.cuda.device_count()
    else:
        info["name"] = info["cpu"]
    return info


def build_manifest(config: dict[str, Any], repo: str | Path) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "git": git_state(repo), "python": platform.python_version(),
            "platform": platform.platform(), "packages": package_versions(),
            "device": device_info(str(config.get("device", "auto"))), "config": config}


def markdown(manifest: dict[str, Any]) -> str:
    git = manifest["git"]
    commit = git["commit"] or git.get("note", "unknown")
    if git.get("dirty"):
        commit += " (with uncommitted changes to tracked files)"
    device = manifest["device"]
    lines = ["# Run manifest", "",
             f"- code: {commit}",
             f"- python {manifest['python']} on {manifest['platform']}",
             f"- device: {device['resolved']} ({device['name']}), requested `{device['requested']}`",
             "", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version or 'not installed'} |"
              for name, version in manifest["packages"].items()]
    lines += ["", "## Effective configuration (config files and --config merged, defaults filled)",
              "", "```yaml", yaml.safe_dump(manifest["config"], sort_keys=False).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-json", required=True,
                        help="the effective configuration as JSON (the workflow passes its config)")
    parser.add_argument("--repo", required=True, help="the workflow's directory (for the git commit)")
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-md", required=True)
    parser.add_argument("--out-html", help="the manifest as an HTML page (the report shows it)")


def main(args: argparse.Namespace) -> int:
    try:
        config = json.loads(args.config_json)
    except json.JSONDecodeError as err:
        raise ValueError(f"--config-json is not JSON: {err}") from None
    manifest = build_manifest(config, args.repo)
    text = markdown(manifest)
    write_text(args.out_json, json.dumps(manifest, indent=1))
    write_text(args.out_md, text)
    if args.out_html:
        write_text(args.out_html, markdown_to_html(text, "pcam run manifest"))
    print(f"run-manifest: commit {manifest['git']['commit']}, device {manifest['device']['resolved']}")
    return 0
