"""Figures of the HTML report, each drawn from one stage's own output files.

A number in a table says that a stage went wrong; a curve says how: a loss that never
fell, a learning rate that did not decay, a threshold chosen at the edge of its grid, a
class that the clicks barely cover. Each figure reads only the files a run has already
written (training logs, metrics JSON, calibration JSON, the data report), so it can be
redrawn at any time without rerunning a stage:

* ``training-curves``: one panel per logged quantity (every loss term, the learning rate,
  images/s) against the step, one line per log;
* ``class-iou``: per-class IoU of several metrics files side by side, the mean last;
* ``calibration``: the measured curves against the threshold grid and the thresholds used;
* ``data-report``: points per image, clicks per class and every counted quirk or skip.

Every ``plot_*`` function returns a matplotlib ``Figure`` (so tests can check what is drawn);
the command line writes it as a PNG under a temporary name and renames it into place, so a
killed job never leaves a half-written image that Snakemake would take as finished.
Figures are made with ``matplotlib.figure.Figure``, not pyplot: nothing global to close,
and no display is ever needed.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes have no display

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from pcam_core.common.atomic_output import atomic_path  # noqa: E402

# 100 dpi: a 10-inch-wide figure is 1000 px, the width of an HTML report's column.
DPI = 100
# Text wider than this (notes, titles) is wrapped: ~110 characters fill a 10-inch figure
# at the 10-pt default font.
WRAP = 110
# Distinct colours for the lines/bars of different logs or metrics files (up to 10 apart).
SERIES_COLOURS = colormaps["tab10"].colors
# Figure heights grow with the class count, but a PNG taller than this (10,000 px) is
# unwieldy in a browser; 254 classes (the most a uint8 label map holds) still get ~0.4 in.
MAX_HEIGHT_IN = 100.0


# ----------------------------------------------------------------------------- shared helpers
def _read_json(path: str | Path, what: str) -> dict:
    """A JSON object from ``path``; any problem is a ValueError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the {what} ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the {what} must be a JSON object, got {type(data).__name__}")
    return data


def _number(value) -> float:
    """A finite float, or NaN for anything else (null, strings, booleans, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _finite(value) -> bool:
    return not math.isnan(_number(value))


def _section(data: dict, key: str) -> dict:
    """A sub-object of a report, or {} when it is missing or not an object."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _count(value) -> int | None:
    """A count from a report (an int, not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _labels_for(paths: Sequence[Path], labels: Sequence[str] | None, what: str) -> list[str]:
    """One label per file; the parent folder's name (the stage: cam, irn, deeplab) by default."""
    if labels is None or len(labels) == 0:
        return [Path(p).parent.name or Path(p).stem for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} {what}: give one label per file")
    return [str(label) for label in labels]


def _message(ax: Axes, text: str, fontsize: float = 11) -> None:
    """Turn ``ax`` into a text panel (a figure must say why it has nothing to plot)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=fontsize, wrap=True,
            transform=ax.transAxes)


def _wrap(text: str) -> str:
    return "\n".join(textwrap.fill(line, WRAP) for line in text.splitlines())


def save_png(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (temp name beside ``out``, then rename)."""
    with atomic_path(out) as tmp:
        # The temp name ends in .tmp, so the format must be given, not guessed.
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(out)


# ----------------------------------------------------------------------------- training curves
# Panel titles of the quantities the three trainers log (cam_training, irn_training,
# deeplab_training); any other numeric key gets a panel titled by its name.
QUANTITY_TITLES = {
    "loss": "total loss",
    "loss_img": "image-level classification loss",
    "loss_pt": "point loss",
    "pos_bg": "IRNet affinity loss: background pairs",
    "pos_fg": "IRNet affinity loss: foreground pairs",
    "neg": "IRNet affinity loss: pairs across a boundary",
    "images_with_points": "images with a point in the batch",
}
# IRNet's affinity loss terms do not start with "loss" but are loss terms all the same.
LOSS_TERMS = ("pos_bg", "pos_fg", "neg")
RATE_KEY = "images_per_s"


class LoggedSteps:
    """The step records of one JSON-lines training log, later records winning per step."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{self.path}: cannot read the training log ({error})") from None
        by_step: dict[int, dict[str, float]] = {}
        starts, backwards, last = 0, 0, None
        # A job killed mid-write leaves a truncated line (the log is appended, not renamed
        # into place); the figure skips it and says so rather than refusing the whole log.
        self.unreadable = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                self.unreadable += 1
                continue
            if not isinstance(record, dict):
                self.unreadable += 1
                continue
            if "event" in record:  # start / done markers, not steps
                starts += record.get("event") == "start"
                continue
            step = record.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                continue
            # Only DeepLab logs start events; a step that goes back marks any trainer's resume.
            backwards += last is not None and step <= last
            last = step
            # A resumed run repeats the steps after its last checkpoint: the later line wins.
            by_step[step] = {k: _number(v) for k, v in record.items()
                             if k != "step" and not isinstance(v, (bool, str, list, dict))}
        if not by_step:
            raise ValueError(f"{self.path}: no step record (lines with a 'step' and numbers such as "
                             f"'loss'); is the training log empty?")
        self.steps = sorted(by_step)
        self.records = [by_step[s] for s in self.steps]
        self.restarts = max(starts - 1, backwards)

    def keys(self) -> list[str]:
        """Numeric keys in first-seen order."""
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the records that have ``key``."""
        pairs = [(s, r[key]) for s, r in zip(self.steps, self.records) if key in r]
        return [s for s, _ in pairs], [v for _, v in pairs]


def _is_lr(key: str) -> bool:
    return key == "lr" or key.startswith("lr_")


def training_panels(keys: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(panel name, keys drawn in it): the losses first, then the rest, learning rate, images/s.

    Every learning-rate key (lr, lr_classifier) shares one panel: they follow one schedule.
    """
    losses = [k for k in keys if k == "loss"] + [k for k in keys if k.startswith("loss") and k != "loss"]
    losses += [k for k in keys if k in LOSS_TERMS]
    lr = [k for k in keys if _is_lr(k)]
    others = [k for k in keys if k not in losses and k not in lr and k != RATE_KEY]
    panels = [(k, [k]) for k in losses + others]
    if lr:
        panels.append(("lr", lr))
    if RATE_KEY in keys:
        panels.append((RATE_KEY, [RATE_KEY]))
    return panels


def plot_training_curves(logs: Sequence[str | Path], labels: Sequence[str] | None = None,
                         title: str = "Training curves") -> Figure:
    """One panel per logged quantity against the step, one line per log."""
    if not logs:
        raise ValueError("training-curves needs at least one log")
    paths = [Path(p) for p in logs]
    names = _labels_for(paths, labels, "logs")
    parsed = [LoggedSteps(p) for p in paths]
    keys: dict[str, None] = {}
    for log in parsed:
        keys.update(dict.fromkeys(log.keys()))
    panels = training_panels(list(keys))
    if not panels:
        raise ValueError(f"{paths[0]}: the step records hold no numeric quantity to plot")

    ncols = 3 if len(panels) >= 5 else min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.3 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    for ax, (panel, panel_keys) in zip(axes, panels):
        for i, (log, name) in enumerate(zip(parsed, names)):
            for j, key in enumerate(panel_keys):
                steps, values = log.series(key)
                if not steps:
                    continue
                label = name if len(panel_keys) == 1 else f"{name}: {key}"
                ax.plot(steps, values, label=label, color=SERIES_COLOURS[i % len(SERIES_COLOURS)],
                        linestyle=("-", "--", ":", "-.")[j % 4], linewidth=1.2,
                        marker="o" if len(steps) == 1 else None)  # one step: a dot, not nothing
        if panel == "lr":
            ax.set_title("learning rate")
            ax.set_ylabel("learning rate")
            values = [v for line in ax.get_lines() for v in line.get_ydata() if v == v]
            if values and min(values) > 0:
                ax.set_yscale("log")  # poly decay spans decades; linear hides the tail
        elif panel == RATE_KEY:
            ax.set_title("throughput")
            ax.set_ylabel("images / s")
        else:
            ax.set_title(QUANTITY_TITLES.get(panel, panel))
            ax.set_ylabel(panel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    notes = []
    for log, name in zip(parsed, names):
        note = f"{name}: {len(log.steps)} steps ({log.steps[0]}-{log.steps[-1]})"
        if log.restarts:
            note += f", resumed or rerun {log.restarts}x (later lines win)"
        if log.unreadable:
            note += f", {log.unreadable} unreadable line(s) skipped"
        notes.append(note)
    fig.suptitle(title + "\n" + _wrap("; ".join(notes)), fontsize=12)
    return fig


# ----------------------------------------------------------------------------- class IoU
def _class_names(index: str | Path | None) -> tuple[tuple[str, ...], tuple] | None:
    """(names, colours) of the dataset index, or None without one."""
    if index is None:
        return None
    from pcam_core.common.dataset_index import DatasetIndex

    try:
        classes = DatasetIndex.load(index).classes
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{index}: cannot read the dataset index ({error})") from None
    return classes.names, classes.colours


def _metrics_iou(path: Path, data: dict, index_classes) -> tuple[list[str], list[float]]:
    """Class names and IoUs (NaN = absent) of one metrics file."""
    iou = data.get("iou")
    if isinstance(iou, dict):
        return [str(k) for k in iou], [_number(v) for v in iou.values()]
    if isinstance(iou, list):
        values = [_number(v) for v in iou]
        if index_classes is None:
            return [f"class {i}" for i in range(len(values))], values
        names = list(index_classes[0])
        if len(names) != len(values):
            raise ValueError(f"{path}: {len(values)} IoUs but the dataset index has {len(names)} classes")
        return names, values
    raise ValueError(f"{path}: not a metrics file of 'pcam evaluate' (no per-class 'iou' list or object)")


def plot_class_iou(metrics: Sequence[str | Path], labels: Sequence[str] | None = None,
                   title: str = "IoU per class", index: str | Path | None = None) -> Figure:
    """Grouped horizontal bars: one group per present class, one bar per metrics file, mean last.

    Classes absent from the ground truth and every prediction (IoU null) have no IoU and
    are left out of the mean by the evaluation, so they are skipped here too (and counted).
    """
    if not metrics:
        raise ValueError("class-iou needs at least one metrics file")
    paths = [Path(p) for p in metrics]
    names = _labels_for(paths, labels, "metrics files")
    index_classes = _class_names(index)
    classes: list[str] | None = None
    table, means, notes = [], [], []
    for path, label in zip(paths, names):
        data = _read_json(path, "metrics file")
        file_classes, values = _metrics_iou(path, data, index_classes)
        if classes is None:
            classes = file_classes
        elif file_classes != classes:
            raise ValueError(f"{path}: its classes ({len(file_classes)}) differ from those of {paths[0]} "
                             f"({len(classes)}); compare metrics of one dataset")
        table.append(values)
        mean = _number(data.get("miou")) if "miou" in data else _nanmean(values)
        means.append(mean)
        if data.get("note") and not mean == mean:
            notes.append(f"{label}: {data['note']}")

    present = [c for c in range(len(classes)) if any(row[c] == row[c] for row in table)]
    skipped = len(classes) - len(present)
    groups = [classes[c] for c in present] + ["mean (mIoU)"]
    values = [[row[c] for c in present] + [mean] for row, mean in zip(table, means)]
    m = len(paths)

    # ~0.2 in per group plus 0.13 in per bar keeps 8-pt labels apart.
    height = min(MAX_HEIGHT_IN, 2.2 + len(groups) * (0.2 + 0.13 * m))
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.add_subplot()
    subtitle = (f"{len(present)} of {len(classes)} classes present; {skipped} skipped "
                "(absent from ground truth and predictions)")
    if notes:
        subtitle += "\n" + "\n".join(notes)
    ax.set_title(_wrap(subtitle), fontsize=9)
    fig.suptitle(title, fontsize=13)
    if not present:
        _message(ax, "no class has an IoU: nothing was scored" + ("\n" + "\n".join(notes) if notes else ""))
        return fig

    bar = 0.8 / m
    for j, (label, row) in enumerate(zip(names, values)):
        ys = [g + (j - (m - 1) / 2) * bar for g in range(len(groups))]
        widths = [100 * v if v == v else 0.0 for v in row]
        mean = row[-1]
        legend = f"{label} (mIoU {100 * mean:.1f})" if mean == mean else f"{label} (not scored)"
        ax.barh(ys, widths, height=bar, color=SERIES_COLOURS[j % len(SERIES_COLOURS)], label=legend)
        if len(groups) <= 60:  # beyond that the numbers overlap; the bars still read
            for y, v in zip(ys, row):
                ax.text((100 * v if v == v else 0) + 0.8, y, f"{100 * v:.1f}" if v == v else "—",
                        va="center", fontsize=7)
    ax.set_yticks(range(len(groups)), groups, fontsize=8 if len(groups) <= 60 else 6)
    ax.get_yticklabels()[-1].set_fontweight("bold")
    ax.axhline(len(groups) - 1.5, color="0.4", linewidth=0.8)  # the mean is not a class
    ax.set_ylim(len(groups) - 0.5, -0.5)  # first class at the top, the mean at the bottom
    ax.set_xlim(0, 108)  # room for the value labels right of a 100 % bar
    ax.set_xlabel("IoU (%)")
    ax.grid(axis="x", alpha=0.3)
    if index_classes is not None and len(index_classes[1]) == len(classes):
        # The class's own colour (as in the label PNGs) beside its name.
        colours = [tuple(v / 255 for v in index_classes[1][c]) for c in present]
        ax.scatter([-0.012] * len(present), range(len(present)), c=colours, marker="s", s=40,
                   edgecolors="0.3", linewidths=0.5, clip_on=False, zorder=3,
                   transform=blended_transform_factory(ax.transAxes, ax.transData))
        ax.tick_params(axis="y", pad=12)
    fig.legend(loc="outside lower center", ncols=min(m, 4), fontsize=9)
    return fig


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else math.nan


# ----------------------------------------------------------------------------- calibration
CURVE_TITLES = {
    "miou": "mIoU",
    "fg_precision": "foreground precision (right class)",
    "fg_coverage": "foreground coverage (right class)",
    "fg_detected": "object pixels kept out of background",
    "bg_precision": "background precision",
    "bg_coverage": "background coverage",
    "fg_fraction": "predicted foreground fraction",
}
THRESHOLD_NAMES = {
    "cam_eval_threshold": "CAM eval",
    "ir_fg_threshold": "IR fg",
    "ir_bg_threshold": "IR bg",
    "walk_bg_threshold": "walk bg",
}
# The curve each calibration target bounds (see calibration.ir_thresholds).
TARGET_CURVES = {
    "ir_fg_precision": ("fg_precision", "target fg precision"),
    "ir_fg_min_coverage": ("fg_coverage", "min fg coverage"),
    "ir_bg_object_recall": ("fg_detected", "target object recall"),
}


def _threshold_name(key: str) -> str:
    return THRESHOLD_NAMES.get(key, key.removesuffix("_threshold").replace("_", " "))


def plot_calibration(calibration: str | Path, title: str = "Calibration") -> Figure:
    """The calibration curves against τ, the thresholds used (solid) and, when the configured
    values were used instead, what auto would have chosen (dashed)."""
    from pcam_core.calibration.calibration_file import CALIBRATION_FORMAT

    path = Path(calibration)
    data = _read_json(path, "calibration file")
    if data.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path}: not a pcam calibration file (format {data.get('format')!r}, "
                         f"expected {CALIBRATION_FORMAT!r})")
    configured = _section(data, "configured")
    keys = list(configured) or [k for k in THRESHOLD_NAMES if k in data]
    used = {k: _number(data.get(k, configured.get(k))) for k in keys}
    measured = _section(data, "measured_choice")
    mode, source = data.get("mode", "?"), data.get("source", "?")
    images = _count(data.get("images"))
    note = str(data.get("note", ""))

    fig = Figure(figsize=(11, 6), layout="constrained")
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize=13)
    used_text = ", ".join(f"{_threshold_name(k)} {v:.2f}" for k, v in used.items() if v == v) or "none"
    curves = data.get("curves")
    grid = curves.get("threshold") if isinstance(curves, dict) else None
    if not isinstance(grid, list) or not grid:
        ax.set_title(f"{data.get('stage', '')} — mode {mode}, thresholds {source}", fontsize=10)
        _message(ax, _wrap(f"No masked train image was available ({images or 0} images), so no curve "
                           f"was measured.\nThe configured values were used: {used_text}."
                           + (f"\n\n{note}" if note else "")))
        return fig

    x = [_number(t) for t in grid]
    for i, (name, values) in enumerate((k, v) for k, v in curves.items() if k != "threshold"):
        if not isinstance(values, list) or len(values) != len(x):
            raise ValueError(f"{path}: curve {name!r} has "
                             f"{len(values) if isinstance(values, list) else 'no list of'} values "
                             f"for {len(x)} thresholds")
        ax.plot(x, [_number(v) for v in values], marker=".", linewidth=1.4, label=CURVE_TITLES.get(name, name),
                color=SERIES_COLOURS[i % len(SERIES_COLOURS)], gid=f"curve:{name}")
    curve_colours = {line.get_gid().removeprefix("curve:"): line.get_color() for line in ax.get_lines()}
    targets = _section(data, "targets")
    for key, value in targets.items():
        curve, text = TARGET_CURVES.get(key, (None, key.replace("_", " ")))
        value = _number(value)
        if value == value:
            ax.axhline(value, linestyle=":", linewidth=1, color=curve_colours.get(curve, "0.5"),
                       label=f"{text} {value:.2f}", gid=f"target:{key}")

    line_colours = ("black", "tab:red", "tab:purple", "tab:brown")
    for i, (key, value) in enumerate(used.items()):
        if value != value:
            continue
        label = f"{_threshold_name(key)} {value:.2f}"
        ax.axvline(value, color=line_colours[i % 4], linewidth=2, label=f"used: {label}", gid=f"used:{key}")
        ax.text(value, 0.02, f" {label}", rotation=90, va="bottom", ha="right", fontsize=9,
                color=line_colours[i % 4], transform=blended_transform_factory(ax.transData, ax.transAxes))
    if source != "calibrated":
        # Fixed mode (or a fallback) used the configured values: show what auto measured.
        for i, key in enumerate(keys):
            value = _number(measured.get(key))
            if value != value:
                continue
            label = f"{_threshold_name(key)} {value:.2f}"
            ax.axvline(value, color=line_colours[i % 4], linewidth=1.5, linestyle="--",
                       label=f"auto would choose: {label}", gid=f"auto:{key}")
            ax.text(value, 0.98, f"auto: {label} ", rotation=90, va="top", ha="right", fontsize=9,
                    color=line_colours[i % 4],
                    transform=blended_transform_factory(ax.transData, ax.transAxes))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("threshold τ")
    ax.set_ylabel("fraction on the masked train images")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    ax.set_title(_wrap(f"{data.get('stage', '')} — mode {mode}, thresholds {source} "
                       f"({images if images is not None else '?'} masked train images): {used_text}"
                       + (f"\n{note}" if note else "")), fontsize=9)
    return fig


# ----------------------------------------------------------------------------- data report
# Counts of the report besides the click section's (key path, text).
OTHER_QUIRKS = (
    (("train_aug_without_valid_click", "count"), "train_aug images without a valid click"),
    (("train_aug_without_valid_click", "left_out_of_training"), "... of which left out of training"),
    (("click_noise", "on_other_class"), "valid clicks on another GT class's pixel"),
    (("click_noise", "on_void"), "valid clicks on a void GT pixel"),
    (("images_whose_click_classes_differ_from_gt_classes",), "images whose click classes differ from GT"),
    (("image_labels", "images_without_xml"), "images without an XML file"),
    (("image_labels", "clicks_class_not_in_xml"), "clicks dropped: class not in the XML"),
    (("image_labels", "xml_classes_without_click"), "XML classes without a click"),
    (("image_labels", "images_with_disagreement"), "images whose XML and click classes differ"),
    (("masks_without_image",), "masks without an image"),
)
# Click-section totals (not quirks): they go into the panel title instead of a bar.
CLICK_TOTALS = ("clicks_in_file", "valid_clicks")


def _dig(data, keys: Sequence[str]):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def quirk_counts(report: dict) -> list[tuple[str, int]]:
    """(text, count) of every counted quirk or skip that the report holds, in report order."""
    from pcam_core.data.data_report import CLICK_COUNT_ROWS

    clicks = _section(report, "clicks")
    rows = [(text, _count(clicks.get(key))) for key, text in CLICK_COUNT_ROWS if key not in CLICK_TOTALS]
    rows += [(text, _count(_dig(report, keys))) for keys, text in OTHER_QUIRKS]
    return [(text, count) for text, count in rows if count is not None]


def _report_text(report: dict) -> str:
    """The report's context as text lines: splits, masks, label source, examples."""
    lines = []
    if report.get("dataset"):
        lines.append(f"dataset: {report['dataset']}")
    images = report.get("images")
    if isinstance(images, dict) and images:
        lines.append("images: " + ", ".join(f"{k} {v:,}" if _count(v) is not None else f"{k} {v}"
                                            for k, v in images.items()))
    for key in ("images_with_voc_mask", "images_with_sbd_mask_only", "images_with_mask"):
        if _count(report.get(key)) is not None:
            lines.append(f"{key.replace('_', ' ')}: {report[key]:,}")
    labels = report.get("image_labels")
    if isinstance(labels, dict) and labels.get("source"):
        lines.append(f"image-level labels from: {labels['source']}")
    left = report.get("train_aug_without_valid_click")
    if isinstance(left, dict) and left.get("note"):
        lines.append(f"without a valid click: {left['note']}")
    clicks = _section(report, "clicks")
    if clicks.get("format"):
        lines.append(f"click format: {clicks['format']}")
    unknown = clicks.get("unknown_class_names")
    if isinstance(unknown, dict) and unknown:
        lines.append("unknown class names: " + ", ".join(f"{k!r} ({v})" for k, v in list(unknown.items())[:8]))
    examples = clicks.get("examples")
    if isinstance(examples, dict) and examples:
        lines.append("examples:")
        for quirk, ids in examples.items():
            if isinstance(ids, list) and ids:
                lines.append(f"  {quirk.replace('_', ' ')}: {', '.join(str(i) for i in ids[:3])}"
                             + (" ..." if len(ids) > 3 else ""))
    if _finite(report.get("build_seconds")):
        lines.append(f"built in {report['build_seconds']} s")
    # Long notes and ids (custom datasets: file paths) would run off the panel: wrap them,
    # at most three lines each. The panel is ~6 in wide (less beside long quirk labels);
    # 9-pt monospace is 0.075 in a character, so 66 characters fit with a margin.
    wrapped = []
    for line in lines:
        indent = "    " if line.startswith("  ") else "  "
        wrapped += textwrap.wrap(line, 66, subsequent_indent=indent, max_lines=3, placeholder=" ...")
    return "\n".join(wrapped)


def plot_data_report(report_path: str | Path, title: str = "Data report",
                     index: str | Path | None = None) -> Figure:
    """Points per image, clicks per class, the counted quirks and skips, and the context.

    A section the report lacks (custom datasets have no XML labels, older reports fewer
    counts) becomes a panel saying so, never an error.
    """
    path = Path(report_path)
    data = _read_json(path, "data report")
    names, colours = None, None
    if str(data.get("format", "")).startswith("pcam-dataset-index") and isinstance(data.get("report"), dict):
        # The index holds the report too, and the class names with it.
        classes = _section(data, "classes")
        names, colours = classes.get("names"), classes.get("colours")
        data = data["report"]
    known = ("clicks", "points_per_image_train_aug", "images", "train_aug_without_valid_click")
    if not any(key in data for key in known):
        raise ValueError(f"{path}: not a data report (none of {', '.join(known)})")
    index_classes = _class_names(index)
    if index_classes is not None:
        names, colours = index_classes

    def class_name(cls: int) -> str:
        return names[cls] if isinstance(names, list | tuple) and 0 <= cls < len(names) else f"class {cls}"

    clicks = _section(data, "clicks")
    per_class = _section(clicks, "clicks_per_class")
    per_class_rows = []
    for key, count in per_class.items():
        try:
            cls = int(key)
        except (TypeError, ValueError):
            cls = None
        if _count(count) is not None:
            per_class_rows.append((cls, class_name(cls) if cls is not None else str(key), count))
    quirks = quirk_counts(data)

    rows = max(len(per_class_rows), len(quirks))
    # The bar panels sit side by side in the lower row: ~0.22 in per bar keeps labels apart.
    height = min(MAX_HEIGHT_IN, 5.0 + max(4.0, 0.22 * rows))
    fig = Figure(figsize=(14, height), layout="constrained")
    (ax_hist, ax_text), (ax_class, ax_quirk) = fig.subplots(
        2, 2, gridspec_kw={"height_ratios": [4.0, max(4.0, 0.22 * rows)]})
    fig.suptitle(title, fontsize=13)

    # Points per train_aug image.
    ppi = _section(data, "points_per_image_train_aug")
    histogram = _section(ppi, "histogram")
    summary = ", ".join(f"{k} {_number(ppi[k]):.2f}" for k in ("mean", "median") if _finite(ppi.get(k)))
    if histogram:
        bins = [str(k) for k in histogram]
        counts = [_count(v) or 0 for v in histogram.values()]
        bars = ax_hist.bar(bins, counts, color=SERIES_COLOURS[0])
        ax_hist.bar_label(bars, fontsize=8)
        ax_hist.set_xlabel("valid clicks on the image")
        ax_hist.set_ylabel("train_aug images")
        ax_hist.set_title("points per train_aug image" + (f" ({summary})" if summary else ""))
        ax_hist.grid(axis="y", alpha=0.3)
        ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))  # image counts
    else:
        ax_hist.set_title("points per train_aug image")
        _message(ax_hist, f"the report has no distribution of points per image"
                 + (f"\n{summary}" if summary else ""))

    # Clicks per class.
    total, valid = _count(clicks.get("clicks_in_file")), _count(clicks.get("valid_clicks"))
    if per_class_rows:
        ys = range(len(per_class_rows))
        face = [tuple(v / 255 for v in colours[c]) if colours is not None and c is not None and 0 <= c < len(colours)
                else SERIES_COLOURS[0] for c, _, _ in per_class_rows]
        bars = ax_class.barh(ys, [n for _, _, n in per_class_rows], color=face, edgecolor="0.2", linewidth=0.6)
        ax_class.bar_label(bars, fontsize=8, padding=2)
        ax_class.set_yticks(ys, [name for _, name, _ in per_class_rows], fontsize=8)
        ax_class.invert_yaxis()
        ax_class.set_xlabel("valid clicks")
        ax_class.grid(axis="x", alpha=0.3)
        ax_class.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_class.set_title(f"clicks per class ({sum(n for _, _, n in per_class_rows):,} valid)")
    else:
        ax_class.set_title("clicks per class")
        _message(ax_class, "the report has no clicks per class")

    # Counted quirks and skips.
    if quirks:
        ys = range(len(quirks))
        bars = ax_quirk.barh(ys, [n for _, n in quirks],
                             color=["tab:red" if n else "0.75" for _, n in quirks])  # zero: checked, none
        ax_quirk.bar_label(bars, fontsize=8, padding=2)
        ax_quirk.set_yticks(ys, [text for text, _ in quirks], fontsize=8)
        ax_quirk.invert_yaxis()
        ax_quirk.set_xlabel("count")
        ax_quirk.set_xlim(0, max(1, max(n for _, n in quirks)) * 1.15)  # room for the labels
        ax_quirk.grid(axis="x", alpha=0.3)
        ax_quirk.xaxis.set_major_locator(MaxNLocator(integer=True))
        totals = f" ({valid:,} valid of {total:,} clicks)" if total is not None and valid is not None else ""
        ax_quirk.set_title("counted quirks and skips" + totals)
    else:
        ax_quirk.set_title("counted quirks and skips")
        _message(ax_quirk, "the report counts no quirk or skip")

    ax_text.set_axis_off()
    ax_text.set_title("context")
    ax_text.text(0.0, 1.0, _report_text(data) or "(nothing else in the report)",
                 ha="left", va="top", fontsize=9, family="monospace", transform=ax_text.transAxes)
    return fig


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    fmt = parser.formatter_class

    def command(name: str, help_text: str, default_title: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=fmt)
        p.add_argument("--title", default=default_title, help="figure title")
        p.add_argument("--out", required=True, help="PNG to write (atomically)")
        return p

    p = command("training-curves", "loss terms, learning rate and images/s of training logs against the step",
                "Training curves")
    p.add_argument("--log", nargs="+", action="extend", required=True,
                   help="train_log.jsonl file(s); repeat or list several")
    p.add_argument("--labels", nargs="+", action="extend", default=None,
                   help="one name per log; None: each log's folder name (cam, irn, deeplab)")

    p = command("class-iou", "per-class IoU of metrics files side by side, mIoU last", "IoU per class")
    p.add_argument("--metrics", nargs="+", action="extend", required=True,
                   help="metrics JSON file(s) of 'pcam evaluate'; repeat or list several")
    p.add_argument("--labels", nargs="+", action="extend", default=None,
                   help="one name per metrics file; None: each file's folder name")
    p.add_argument("--index", default=None,
                   help="dataset index.json: class colours, and names when the metrics hold a bare list")

    p = command("calibration", "calibration curves against the threshold and the thresholds used",
                "Calibration")
    p.add_argument("--calibration", required=True, help="calibration JSON of 'pcam calibrate-cams' or 'calibrate-walk'")

    p = command("data-report", "points per image, clicks per class and counted quirks of the data report",
                "Data report")
    p.add_argument("--report", required=True, help="data_report.json (or index.json, which embeds it)")
    p.add_argument("--index", default=None, help="dataset index.json: class names and colours")


def main(args: argparse.Namespace) -> int:
    if args.figure == "training-curves":
        fig = plot_training_curves(args.log, args.labels, args.title)
    elif args.figure == "class-iou":
        fig = plot_class_iou(args.metrics, args.labels, args.title, args.index)
    elif args.figure == "calibration":
        fig = plot_calibration(args.calibration, args.title)
    elif args.figure == "data-report":
        fig = plot_data_report(args.report, args.title, args.index)
    else:
        raise ValueError(f"unknown figure {args.figure!r}")
    save_png(fig, args.out)
    print(f"report-figure {args.figure}: {args.out}")
    return 0
