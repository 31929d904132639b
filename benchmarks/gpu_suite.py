"""GPU proof in one command: CUDA tests, the demo DAG on CUDA, speeds and a paper-scale timing.

    python benchmarks/gpu_suite.py                           # everything, on the lent GPU
    python benchmarks/gpu_suite.py --parts cuda_tests,speeds
    python benchmarks/gpu_suite.py --size tiny --device cpu  # CPU dry run of the harness
    bash benchmarks/gpu_suite.sh                             # the lent machine: wheels + suite

A lent GPU machine gives one command ten minutes, so every part runs in its own process
under a time budget (``--budget part=seconds``): a part that runs past it is stopped and the
rows it had reported are kept. Each part reports rows (part, item, result, goal, status,
why) as it goes; one Markdown table of all of them is printed at the end (and written to
``--out``). Statuses: pass / FAIL against a goal, skip (with why), info (measured, no goal).

Parts: header (versions, device, packages found), cuda_tests (``pytest -m cuda``),
demo_dag (tests/test_workflow.py's TINY_CONFIG with the chosen device, through Snakemake),
speeds (images/s at the paper's sizes, fp32 vs bf16 + channels_last; the random walk's ms
per image), paper_scale (benchmarks/paper_scale.py: a VOC-sized sample timed stage by stage,
extrapolated to the full schedule).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:  # the speed benchmarks import each other as top-level modules
    sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STATUSES = ("pass", "FAIL", "skip", "info")
# Seconds per part. They add up to 510 s so that the whole suite, with the wheel install
# (~15 s) and process starts, fits the 600 s a lent machine gives one command.
DEFAULT_BUDGETS = {"header": 10, "cuda_tests": 95, "demo_dag": 165, "speeds": 100, "paper_scale": 140}
PARTS = tuple(DEFAULT_BUDGETS)
# A part past its budget gets this long to report its last row before it is killed.
GRACE_S = 5
# Goals (issue 11): bf16 + channels_last speed-up over fp32 training; random walk per image;
# the whole VOC pipeline of one variant on one H100.
SPEEDUP_GOAL = 1.8
WALK_MS_GOAL = 20.0
PIPELINE_HOURS_GOAL = 4.0


# ----------------------------------------------------------------------------- rows and table
@dataclass
class Row:
    part: str
    item: str
    result: str
    goal: str = ""
    status: str = "info"
    why: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_table(rows: list[Row]) -> str:
    """One Markdown table of every row, in the order reported, then a count per status."""
    lines = ["| part | item | result | goal | status | why |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(v) for v in (r.part, r.item, r.result, r.goal, r.status, r.why)) + " |"
              for r in rows]
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines) + "\n"


def at_least(value: float, goal: float) -> str:
    return "pass" if value >= goal else "FAIL"


def at_most(value: float, goal: float) -> str:
    return "pass" if value <= goal else "FAIL"


# ----------------------------------------------------------------------------- parts and budgets
def select_parts(text: str | None) -> list[str]:
    """``--parts`` (comma-separated, 'all' or empty = every part) in the suite's order."""
    if not text or text.strip() == "all":
        return list(PARTS)
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in wanted]


def parse_budgets(items: list[str] | None) -> dict[str, float]:
    """DEFAULT_BUDGETS with ``part=seconds`` overrides."""
    budgets = dict(DEFAULT_BUDGETS)
    for item in items or []:
        part, sep, value = item.partition("=")
        if not sep or part not in PARTS:
            raise ValueError(f"--budget wants part=seconds with a part of {', '.join(PARTS)}, got {item!r}")
        seconds = float(value)
        if seconds <= 0:
            raise ValueError(f"--budget {item}: seconds must be > 0")
        budgets[part] = seconds
    return budgets


class Budget:
    """The seconds a part has left; ``allows`` answers whether a step of ``needs_s`` fits."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()

    def used(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return max(0.0, self.seconds - self.used())

    def allows(self, needs_s: float) -> bool:
        return self.left() >= needs_s

    def skip_why(self, needs_s: float) -> str:
        return f"budget: {self.left():.0f} s left of {self.seconds:.0f} s, this needs ~{needs_s:.0f} s"


class Context:
    """What a part gets: its budget, the options, and ``emit`` for its rows."""

    def __init__(self, part: str, args: argparse.Namespace, budget: Budget, emit: Callable[[Row], None]):
        self.part, self.args, self.budget, self._emit = part, args, budget, emit
        self.work = Path(args.work) / part
        self.work.mkdir(parents=True, exist_ok=True)

    def row(self, item: str, result: str, goal: str = "", status: str = "info", why: str = "") -> None:
        self._emit(Row(self.part, item, result, goal, status, why))

    @property
    def paper(self) -> bool:
        return self.args.size == "paper"

    @property
    def on_cuda(self) -> bool:
        return self.args.device.startswith("cuda")

    def goal_applies(self) -> tuple[bool, str]:
        """Goals are set for the paper's sizes on CUDA; a dry run measures, it does not judge."""
        if not self.paper:
            return False, "tiny size: the goal applies at the paper's sizes"
        if not self.on_cuda:
            return False, "CPU run: the goal applies on CUDA"
        return True, ""

    def judged(self, ok: str) -> tuple[str, str]:
        applies, why = self.goal_applies()
        return (ok, "") if applies else ("info", why)


def missing_packages(names: list[str]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


# ----------------------------------------------------------------------------- part: header
PACKAGES = {  # import name -> what is lost without it
    "torch": "everything", "torchvision": "the backbones", "numpy": "everything",
    "scipy": "the index (SBD .mat) and the demo", "h5py": "CAM and walk stores", "PIL": "image IO",
    "yaml": "configs", "tqdm": "progress bars", "matplotlib": "report figures",
    "pydensecrf": "IR-label mining with the dense CRF (demo_dag fails, paper_scale mines without CRF)",
    "snakemake": "the demo_dag part", "jsonschema": "the config validation of the demo_dag part",
    "pytest": "the cuda_tests part", "psutil": "benchmarks/demo_pipeline.py (not this suite)",
}


def _version(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - a broken install is reported, not raised
        return f"import fails: {type(error).__name__}: {error}"
    return str(getattr(module, "__version__", getattr(module, "VERSION", "present")))


def part_header(ctx: Context) -> None:
    import torch

    ctx.row("python", f"{platform.python_version()} ({sys.executable})")
    ctx.row("torch", f"{torch.__version__}, CUDA build {torch.version.cuda}, cuDNN "
                     f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'n/a'}",
            goal="2.11 (lent machine) or 2.14.1 (pinned)")
    cores = os.cpu_count()
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        memory = f", {kib / 2**20:.0f} GiB memory"
    ctx.row("machine", f"{cores} CPU cores{memory}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            ctx.row(f"cuda:{i}", f"{p.name}, compute {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB",
                    status="pass" if ctx.on_cuda else "info")
        ctx.row("precision defaults",
                f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, matmul.allow_tf32="
                f"{torch.backends.cuda.matmul.allow_tf32}, cudnn.benchmark={torch.backends.cudnn.benchmark}",
                why="fp32 rows use these defaults: with allow_tf32 cuDNN's fp32 convolutions run on TF32 "
                    "tensor cores, which narrows the bf16 speed-up")
    else:
        ctx.row("cuda", "no CUDA device visible", status="FAIL" if ctx.on_cuda else "skip",
                why=f"--device {ctx.args.device}" + ("" if ctx.on_cuda else ": CPU dry run"))
    found = [f"{n} {_version(n)}" for n in PACKAGES if importlib.util.find_spec(n) is not None]
    ctx.row("packages found", ", ".join(found))
    for name in missing_packages(list(PACKAGES)):
        ctx.row(f"package {name}", "missing", status="skip", why=f"without it: {PACKAGES[name]}")


# ----------------------------------------------------------------------------- part: cuda_tests
def junit_counts(xml_path: Path) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """Counts (tests, passed, failed, errors, skipped) and (test, outcome, message) of the
    tests that did not pass, from pytest's --junitxml file."""
    import xml.etree.ElementTree as ET

    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    others = []
    for suite in suites:
        for case in suite.iter("testcase"):
            counts["tests"] += 1
            for outcome, key in (("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
                node = case.find(outcome)
                if node is not None:
                    counts[key] += 1
                    others.append((case.get("name", "?"), outcome, (node.get("message") or "").strip()))
                    break
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts, others


def part_cuda_tests(ctx: Context) -> None:
    if missing_packages(["pytest"]):
        ctx.row("pytest -m cuda", "not run", status="skip",
                why="pytest is not importable: ship its wheels in .whl/ (benchmarks/gpu_suite.sh)")
        return
    xml, report = ctx.work / "junit.xml", ctx.work / "cuda_report.json"
    env = dict(os.environ, PCAM_CUDA_REPORT=str(report), PCAM_NO_PROGRESS="1")
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs",
               f"--junitxml={xml}", "tests/test_cuda_paths.py"]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=REPO, env=env, timeout=max(1.0, ctx.budget.left() - 2),
                                capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        ctx.row("pytest -m cuda", f"stopped after {time.perf_counter() - start:.0f} s", status="FAIL",
                why=ctx.budget.skip_why(0))
        return
    print(result.stdout[-4000:], result.stderr[-2000:], sep="\n", flush=True)
    if not xml.exists():
        ctx.row("pytest -m cuda", f"exit {result.returncode}, no report", status="FAIL",
                why=(result.stdout + result.stderr).strip()[-300:])
        return
    counts, others = junit_counts(xml)
    summary = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
               f"{counts['skipped']} skipped of {counts['tests']} in {time.perf_counter() - start:.0f} s")
    if counts["failed"] or counts["errors"] or counts["tests"] == 0:
        status, why = "FAIL", ""
    elif counts["passed"] == 0:
        status, why = "skip", "every test skipped itself (no CUDA device)" if not ctx.on_cuda else ""
    else:
        status, why = "pass", ""
    ctx.row("pytest -m cuda", summary, goal="all pass", status=status, why=why)
    for name, outcome, message in others:
        if outcome == "skipped" and counts["passed"] == 0 and "CUDA" in message:
            continue  # the summary row says it once
        ctx.row(name, outcome, status="skip" if outcome == "skipped" else "FAIL", why=message[:300])
    if report.exists():
        for item in json.loads(report.read_text()):
            ctx.row(item["item"], item["result"], goal=item.get("goal", ""), status=item.get("status", "info"),
                    why=item.get("why", ""))


# ----------------------------------------------------------------------------- part: demo_dag
def tiny_config() -> dict:
    """tests/test_workflow.py's TINY_CONFIG, read from its source (importing the test module
    would need pytest)."""
    tree = ast.parse((REPO / "tests" / "test_workflow.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TINY_CONFIG" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("TINY_CONFIG not found in tests/test_workflow.py")


def pcam_on_path(bin_dir: Path, environ: dict) -> dict:
    """An environment whose PATH has a ``pcam``: the installed one, or a shim running this
    checkout's pcam_core.cli with this interpreter (the lent machine does not install pcam)."""
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if shutil.which("pcam", path=env.get("PATH")) is None:
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim = bin_dir / "pcam"
        shim.write_text(f"#!{sys.executable}\nimport sys\nfrom pcam_core.cli import main\nsys.exit(main())\n")
        shim.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def part_demo_dag(ctx: Context) -> None:
    missing = missing_packages(["snakemake", "jsonschema", "pydensecrf"])
    if missing:
        ctx.row("tiny demo DAG", "not run", status="skip",
                why=f"not importable: {', '.join(missing)} (ship the wheels in .whl/, see gpu_suite.sh)")
        return
    config = tiny_config()
    config["device"] = ctx.args.device
    workdir = ctx.work / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    import yaml

    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = pcam_on_path(ctx.work / "bin", os.environ)
    env["PCAM_NO_PROGRESS"] = "1"
    cores = str(os.cpu_count() or 1)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--cores", cores, "--resources", "gpu=1"]
    start = time.perf_counter()
    label = f"TINY_CONFIG, device {ctx.args.device}, {len(config['variants'])} variants, --cores {cores}"
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=max(1.0, ctx.budget.left() - 2))
    except subprocess.TimeoutExpired as error:
        done = str(error.stderr or "").count("Finished job")
        ctx.row("tiny demo DAG", f"stopped after {time.perf_counter() - start:.0f} s ({done} jobs finished)",
                goal="every job succeeds", status="FAIL", why=f"{label}; " + ctx.budget.skip_why(0))
        return
    seconds = time.perf_counter() - start
    text = result.stdout + result.stderr
    (ctx.work / "snakemake.log").write_text(text)
    summary = workdir / "results" / config["run_name"] / "summary.json"
    manifest = workdir / "results" / config["run_name"] / "report" / "manifest.json"
    if result.returncode != 0 or not summary.exists():
        errors = [line for line in text.splitlines() if "Error" in line or "error" in line][:3]
        ctx.row("tiny demo DAG", f"exit {result.returncode} after {seconds:.0f} s", goal="every job succeeds",
                status="FAIL", why=f"{label}; {' | '.join(errors)[:300]}; log {ctx.work / 'snakemake.log'}")
        return
    device = ""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads(manifest.read_text())["device"]
        device = f"; jobs ran on {info.get('resolved')} {info.get('name', '')}".rstrip()
    jobs = text.count("Finished job")
    ctx.row("tiny demo DAG", f"{jobs} jobs in {seconds:.0f} s{device}", goal="every job succeeds",
            status="pass", why=label)


# ----------------------------------------------------------------------------- part: speeds
@dataclass(frozen=True)
class SpeedSizes:
    cam: tuple  # (depth, batch, crop)
    irn: tuple  # (depth, batch, crop, radius)
    deeplab: tuple  # (depth, batch, crop)
    image_hw: tuple  # inference images (H, W)
    grid_hw: tuple  # random-walk grid (h, w)
    steps: int
    images: int


SPEED_SIZES = {
    # The paper's settings (config_voc2012.yaml); VOC's 375 x 500 images -> a 94 x 125 grid.
    "paper": SpeedSizes(("resnet50", 16, 512), ("resnet50", 32, 512, 10), ("resnet101", 16, 513),
                        (375, 500), (94, 125), steps=5, images=20),
    "tiny": SpeedSizes(("resnet18", 4, 64), ("resnet18", 4, 96, 10), ("resnet18", 4, 65),
                       (64, 80), (16, 20), steps=2, images=3),
}
# Rough seconds each measurement takes on an H100 at the paper's sizes (two runs, warm-up
# included); a measurement is skipped when less than this is left of the part's budget.
SPEED_NEEDS_S = {"cam": 15, "irn": 20, "deeplab": 30, "export": 10, "boundary": 8, "walk": 5}


@contextlib.contextmanager
def autocast_off(module):
    """Run one measurement in fp32 where ``module`` would autocast to bf16 on CUDA: IRNet's
    taps() (the one use of bf16 the spec approved) and the CAM export both call
    ``autocast_for`` unconditionally, so the fp32 baseline swaps it for a no-op."""
    saved = module.autocast_for
    module.autocast_for = lambda device, enabled=True: contextlib.nullcontext()
    try:
        yield
    finally:
        module.autocast_for = saved


def _speed_pair(ctx: Context, item: str, fp32: float, fast: float, what: str) -> None:
    ratio = fast / fp32 if fp32 > 0 else float("nan")
    status, why = ctx.judged(at_least(ratio, SPEEDUP_GOAL))
    if not ctx.on_cuda:
        why = "CPU: pcam's bf16 autocast is CUDA-only (training_loop.autocast_for), both runs are fp32"
    ctx.row(item, f"fp32 {fp32:.1f} img/s, bf16+CL {fast:.1f} img/s ({ratio:.2f}x)",
            goal=f">= {SPEEDUP_GOAL}x fp32", status=status, why=f"{what}; {why}".strip("; "))


def part_speeds(ctx: Context) -> None:
    import numpy as np
    import torch

    import cam_export_speed
    import cam_training_speed
    import deeplab_speed
    import irn_speed
    import random_walk as walk_bench
    from pcam_core.cam.net import CamNet
    from pcam_core.irn.random_walk import propagate, propagate_batch
    from pcam_core.irn.pseudo_labels import WALK_BATCH

    device = torch.device(ctx.args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ctx.row("speeds", "not measured", status="FAIL", why="--device cuda but no CUDA device is visible")
        return
    s = SPEED_SIZES[ctx.args.size]
    scale = 1.0 if ctx.paper else 0.1  # tiny sizes take a tenth of the planning seconds

    def guarded(key: str, item: str, measure: Callable[[], None]) -> None:
        needs = SPEED_NEEDS_S[key] * scale
        if not ctx.budget.allows(needs):
            ctx.row(item, "not measured", status="skip", why=ctx.budget.skip_why(needs))
            return
        try:
            measure()
        except Exception as error:  # noqa: BLE001 - one failed measurement must not hide the rest
            ctx.row(item, "error", status="FAIL", why=f"{type(error).__name__}: {error}"[:300])
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def cam() -> None:
        depth, batch, crop = s.cam
        fp32, _ = cam_training_speed.measure(depth, batch, crop, device, fast=False, steps=s.steps)
        fast, _ = cam_training_speed.measure(depth, batch, crop, device, fast=True, steps=s.steps)
        _speed_pair(ctx, "CAM training", fp32, fast, f"{depth}, batch {batch}, crop {crop}")

    def irn() -> None:
        depth, batch, crop, radius = s.irn
        import pcam_core.irn.net as irn_net

        with autocast_off(irn_net):
            fp32 = irn_speed.training_rate(depth, batch, crop, radius, device, s.steps)
        fast = irn_speed.training_rate(depth, batch, crop, radius, device, s.steps)
        _speed_pair(ctx, "IRNet training", fp32, fast,
                    f"{depth}, batch {batch}, crop {crop}, r {radius}; frozen backbone only, both channels_last")

    def deeplab() -> None:
        depth, batch, crop = s.deeplab
        fp32 = deeplab_speed.training_rate(depth, batch, crop, device, s.steps, bf16=False)
        fast = deeplab_speed.training_rate(depth, batch, crop, device, s.steps, bf16=True)
        _speed_pair(ctx, "DeepLab training", fp32, fast, f"{depth}, batch {batch}, crop {crop}")

    def export() -> None:
        torch.manual_seed(0)
        model = CamNet(s.cam[0], num_classes=20).eval().to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        rng = np.random.default_rng(1)
        pictures = [(rng.integers(0, 256, size=(*s.image_hw, 3), dtype=np.uint8), [1, 15])
                    for _ in range(s.images)]
        cam_export_speed.time_export(model, pictures[:2], device, None)  # warm-up
        seconds, _ = cam_export_speed.time_export(model, pictures, device, None)
        ctx.row("CAM export", f"{len(pictures) / seconds:.1f} img/s",
                why=f"{s.cam[0]}, {s.image_hw[1]}x{s.image_hw[0]}, scales {cam_export_speed.SCALES} x flip, "
                    "2 classes, no HDF5 write, as export-cams runs it (bf16 autocast on CUDA)")

    def boundary() -> None:
        rate = irn_speed.inference_rate(s.irn[0], s.image_hw, device, 2 * s.images)
        ctx.row("boundary inference", f"{rate:.1f} img/s",
                why=f"{s.irn[0]}, {s.image_hw[1]}x{s.image_hw[0]}, flip TTA")

    def walk() -> None:
        h, w = s.grid_hw
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        cams, bound = walk_bench.make_inputs(h, w, device=str(device))
        for method in ("shift", "csr"):
            single, _ = walk_bench.timed(lambda: propagate(cams, bound, walk_bench.BETA, walk_bench.EXP_TIMES,
                                                            method=method), repeat=3, sync=sync)
            batch_cams = cams[None].repeat(WALK_BATCH, 1, 1, 1)
            batch_bound = bound[None].repeat(WALK_BATCH, 1, 1)
            batched, _ = walk_bench.timed(lambda: propagate_batch(batch_cams, batch_bound, walk_bench.BETA,
                                                                  walk_bench.EXP_TIMES, method=method),
                                          repeat=2, sync=sync)
            ms = batched / WALK_BATCH * 1000
            status, why = ctx.judged(at_most(ms, WALK_MS_GOAL))
            ctx.row(f"random walk ({method})",
                    f"{ms:.1f} ms/image in batches of {WALK_BATCH}; {single * 1000:.1f} ms alone",
                    goal=f"<= {WALK_MS_GOAL:g} ms/image", status=status,
                    why=f"{w}x{h} grid, K={walk_bench.K_MAPS}, {2 ** walk_bench.EXP_TIMES} steps; {why}".strip("; "))

    for key, item, measure in (("cam", "CAM training", cam), ("irn", "IRNet training", irn),
                               ("deeplab", "DeepLab training", deeplab), ("export", "CAM export", export),
                               ("boundary", "boundary inference", boundary), ("walk", "random walk", walk)):
        guarded(key, item, measure)


# ----------------------------------------------------------------------------- part: paper_scale
def part_paper_scale(ctx: Context) -> None:
    import paper_scale as ps

    size = ps.SIZES[ctx.args.size]
    if ctx.on_cuda:
        import torch

        if not torch.cuda.is_available():
            ctx.row("paper-scale run", "not run", status="FAIL", why="--device cuda but no CUDA device is visible")
            return
    # Leave time to report: the stages run until 3 s before the budget ends.
    result = ps.run_sample(ctx.work, size, ctx.args.device, lambda: ctx.budget.left() - 3,
                           say=lambda text: print(text, flush=True))
    n = size.train_images + size.val_images
    ctx.row("method", f"{n} generated {size.image_hw[1]}x{size.image_hw[0]} images in VOC's layout "
                      f"({result.get('generated_s', 0):.1f} s)",
            why=f"not 12,031: per-step and per-image costs measured on this sample, extrapolated by VOC's counts "
                f"({ps.VOC_COUNTS['train_aug']:,} train_aug + {ps.VOC_COUNTS['val']:,} val) and the full "
                "schedule; stages summed serially (an upper bound)")
    costs = ps.extrapolate(result["measured"], result["settings"])
    units = ps.schedule(result["settings"])
    for cost in costs:
        per = (f"{cost.per_unit_s:.3f} s/step" if cost.unit == "step"
               else f"{cost.per_unit_s * 1000:.1f} ms/image")
        skipped = result["skipped"].get(cost.stage, "")
        ctx.row(cost.stage, f"{ps.format_hours(cost.hours)} ({cost.units:,} {cost.unit}s x {per} + "
                            f"{cost.jobs} x {cost.fixed_s:.1f} s start-up)",
                status="skip" if skipped else "info", why=skipped or cost.note)
    missing = [stage for stage in units if stage not in result["measured"]]
    if result.get("failed"):
        ctx.row("stopped", ", ".join(missing) + " not measured", status="FAIL", why=result["failed"][:300])
    total = ps.total_hours(costs)
    variants = len(result["settings"]["variants"])
    complete = not missing and not result["skipped"]
    status, why = ctx.judged(at_most(total, PIPELINE_HOURS_GOAL))
    if not complete:
        status, why = "skip", "incomplete: " + "; ".join(filter(None, [
            f"not measured: {', '.join(missing)}" if missing else "",
            *result["skipped"].values()]))
    ctx.row("total, one variant", ps.format_hours(total), goal=f"<= {PIPELINE_HOURS_GOAL:g} h on one H100",
            status=status, why=why or "excludes: index, calibration sweeps, scoring, figures (CPU, minutes)")
    ctx.row(f"total, {variants} variants", ps.format_hours(total * variants),
            why=f"config_voc2012.yaml runs {', '.join(result['settings']['variants'])}: every stage once per variant")


PART_FUNCTIONS = {"header": part_header, "cuda_tests": part_cuda_tests, "demo_dag": part_demo_dag,
                  "speeds": part_speeds, "paper_scale": part_paper_scale}


# ----------------------------------------------------------------------------- running
def run_child(args: argparse.Namespace) -> int:
    """Run one part in this process, appending its rows to ``--rows`` as they come."""
    rows_file = open(args.rows, "a", encoding="utf-8")

    def emit(row: Row) -> None:
        rows_file.write(json.dumps(asdict(row)) + "\n")
        rows_file.flush()
        print(f"[{row.part}] {row.item}: {row.result} {row.status} {row.why}".rstrip(), flush=True)

    budget = Budget(args.budget_s)
    ctx = Context(args.child, args, budget, emit)
    try:
        PART_FUNCTIONS[args.child](ctx)
    except Exception as error:  # noqa: BLE001 - reported as the part's row
        import traceback

        traceback.print_exc()
        ctx.row("part", "error", status="FAIL", why=f"{type(error).__name__}: {error}"[:300])
    rows_file.close()
    return 0


def read_rows(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def child_command(part: str, budget_s: float, args: argparse.Namespace, rows_path: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", part, "--rows", str(rows_path),
            "--budget-s", str(budget_s), "--size", args.size, "--device", args.device, "--work", str(args.work)]


def run_part(part: str, budget_s: float, args: argparse.Namespace, rows_dir: Path,
             command: list[str] | None = None) -> list[Row]:
    """The part in its own process (own session, so a kill reaches its children too), stopped
    ``GRACE_S`` after its budget; rows it reported before that are kept. ``command`` replaces
    the part's process (tests); it must append rows to ``rows_dir/<part>.jsonl``."""
    rows_path = rows_dir / f"{part}.jsonl"
    command = command or child_command(part, budget_s, args, rows_path)
    print(f"== {part} (budget {budget_s:.0f} s)", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait(timeout=budget_s + GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        rows = read_rows(rows_path)
        rows.append(Row(part, "part", f"stopped after {time.perf_counter() - start:.0f} s", status="FAIL",
                        why=f"over its {budget_s:.0f} s budget; later measurements not taken"))
        return rows
    rows = read_rows(rows_path)
    if code != 0:
        rows.append(Row(part, "part", f"exit {code}", status="FAIL", why="the part's process failed (see log above)"))
    elif not rows:
        rows.append(Row(part, "part", "no result", status="FAIL", why="the part reported nothing"))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="all", help=f"comma-separated, from: {', '.join(PARTS)} (default all)")
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper",
                        help="paper: the paper's sizes (the GPU run); tiny: a CPU dry run of the harness")
    parser.add_argument("--device", default="cuda", help="cuda (default) | cuda:N | cpu")
    parser.add_argument("--budget", action="append", metavar="PART=SECONDS",
                        help=f"a part's time budget (defaults {DEFAULT_BUDGETS})")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) here")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--budget-s", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    try:
        parts, budgets = select_parts(args.parts), parse_budgets(args.budget)
    except ValueError as error:
        raise SystemExit(f"gpu_suite: {error}") from None
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pcam_core.cli: children inherit it
    with contextlib.ExitStack() as stack:
        if args.work is None:
            args.work = stack.enter_context(tempfile.TemporaryDirectory(prefix="pcam-gpu-suite-"))
        Path(args.work).mkdir(parents=True, exist_ok=True)
        rows_dir = Path(args.work) / "rows"
        rows_dir.mkdir(exist_ok=True)
        start = time.perf_counter()
        rows: list[Row] = []
        for part in parts:
            rows += run_part(part, budgets[part], args, rows_dir)
        skipped = [p for p in PARTS if p not in parts]
        if skipped:
            rows.append(Row("suite", "parts not selected", ", ".join(skipped), status="skip",
                            why=f"--parts {args.parts}"))
        rows.append(Row("suite", "wall time", f"{time.perf_counter() - start:.0f} s",
                        goal=f"<= {sum(budgets[p] for p in parts) + GRACE_S * len(parts):.0f} s (budgets)",
                        why=f"--size {args.size} --device {args.device}"))
        table = format_table(rows)
    print("\n" + table, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"# pcam GPU suite\n\n{table}")
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
