"""``pcam qualitative-grid``: the paper's qualitative figure (PCAM Figs. 3-4) for a fixed sample.

One row per image; the columns are the image, its clicks (dots in the class colour, dark
outline), one column per CAM variant (``--cam``: e.g. CAM and PCAM), one per folder of label
PNGs (``--labels``: e.g. the refined pseudo labels and the DeepLab predictions) and the
ground truth, all in the dataset's own class colours (``label_colouring``) with a legend of
the classes shown. Written as one PNG by matplotlib's Agg backend, atomically.

Example (the demo run, variant pcam against cam)::

    pcam qualitative-grid --index results/demo/data/index.json \\
        --cam CAM results/demo/cam/calibration/cam_threshold.json results/demo/cam/cam/maps/*.h5 \\
        --cam PCAM results/demo/pcam/calibration/cam_threshold.json results/demo/pcam/cam/maps/*.h5 \\
        --labels refined results/demo/pcam/pseudo/1-of-2 results/demo/pcam/pseudo/2-of-2 \\
        --labels DeepLab results/demo/pcam/deeplab/predictions/1-of-2 results/demo/pcam/deeplab/predictions/2-of-2 \\
        --split val --count 6 --out grid.png

A CAM cell is the label map ``pcam evaluate-cams`` scores (``cam_evaluation.threshold_labels``
at the variant's calibrated ``cam_eval_threshold``, or a number given instead of the JSON);
an image without classes has no maps by design and shows all background, as it is scored.

Which images: the split's images with a ground-truth mask, ordered by the SHA-256 of their id
(the order ``calibration.calibration_records`` uses), the first ``--count``. The sample is the
same on every run, whatever the shards or the index's order, and adding images never drops an
old one that is still first. A split without any masked image (a custom dataset without
masks) falls back to the masked train images, and without any mask at all to the split's
images, with the ground-truth column saying "no mask"; the title says which. A map missing
for a sampled image is drawn as an empty "missing" cell and counted in the printed summary.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pcam_core.common.class_list import ClassList, Colour
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord, hash_ordered
from pcam_core.common.label_colouring import colour_labels, colour_table, legend_entries, legend_handles

MISSING = "missing"
NO_MASK = "no mask"
CALIBRATION_KEY = "cam_eval_threshold"  # the threshold evaluate-cams reads from the same JSON

# Layout. 1.6 in per cell keeps seven columns within a page width (11.2 in) and, at 150 dpi,
# gives a cell 240 px: more than the demo's ~130 px images, half a VOC image.
CELL_INCHES = 1.6
DPI = 150
# Rows take their image's aspect ratio, clamped so that a strip-shaped image neither
# vanishes nor takes the page.
MIN_ASPECT, MAX_ASPECT = 0.4, 2.5
TITLE_INCHES = 0.75  # figure title + column titles
LEGEND_ROW_INCHES = 0.22  # one line of 8 pt legend text
# Click dots: 40 pt^2 is a ~6 pt disc, visible on a 1.6 in cell without hiding a small object;
# the 1 pt black edge makes a dark class colour show on a dark photo and a light one on a light.
CLICK_DOT_AREA = 40
CLICK_EDGE_WIDTH = 1.0


@dataclass(frozen=True)
class CamColumn:
    """A CAM variant's column: its stores (every shard) and its background threshold."""

    name: str
    threshold: float
    stores: tuple[Path, ...]


@dataclass(frozen=True)
class LabelColumn:
    """A column of label PNGs (``<id>.png`` under any of the folders, e.g. one per shard)."""

    name: str
    folders: tuple[Path, ...]


@dataclass
class Cell:
    """One cell: a picture (with click dots) or, when there is nothing to show, a text."""

    rgb: np.ndarray | None = None  # uint8 (H, W, 3)
    label: np.ndarray | None = None  # the label map coloured into ``rgb`` (legend, tests)
    points: tuple[tuple[float, float, Colour], ...] = ()  # clicks: (x, y, class colour)
    text: str | None = None  # MISSING, NO_MASK


@dataclass
class Sample:
    """The sampled records, the split they come from and why (a fallback says so)."""

    records: list[ImageRecord]
    split: str
    note: str = ""


@dataclass
class Grid:
    """Everything the figure shows, built without matplotlib (the tests read it directly)."""

    title: str
    columns: list[str]  # column names (the keys of ``missing``)
    headers: list[str]  # column titles as drawn
    ids: list[str]
    rows: list[list[Cell]]
    legend: list[tuple[str, Colour]]
    missing: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the sample
def has_mask(record: ImageRecord) -> bool:
    """Whether the record has a ground-truth mask (``load_gt_mask`` reads the PNG, else the .mat)."""
    return bool(record.gt_png or record.gt_mat)


def sample_records(index: DatasetIndex, split: str, count: int) -> Sample:
    """The first ``count`` masked images of ``split`` in hash order, with the fallbacks above."""
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    if split not in index.splits:
        raise KeyError(f"unknown split {split!r}; the index has {sorted(index.splits)}")
    pool = index.split(split)
    if not pool:
        raise ValueError(f"split {split!r} of the index holds no image")
    masked = [r for r in pool if has_mask(r)]
    if masked:
        return Sample(hash_ordered(masked)[:count], split)
    train = [r for r in index.split("train") if has_mask(r)] if "train" in index.splits else []
    if split != "train" and train:
        return Sample(hash_ordered(train)[:count], "train", f"{split} has no image with a ground-truth mask")
    return Sample(hash_ordered(pool)[:count], split, "no image has a ground-truth mask")


# ----------------------------------------------------------------------------- the cells
def _check_size(label: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if label.shape != shape[:2]:
        raise ValueError(f"{what} is {label.shape[1]}x{label.shape[0]} (WxH) but its image is "
                         f"{shape[1]}x{shape[0]}; is it from another dataset index?")
    return label


def build_grid(index: DatasetIndex, sample: Sample, cam_columns: Sequence[CamColumn] = (),
               label_columns: Sequence[LabelColumn] = ()) -> Grid:
    """The grid's cells: every map read and coloured as described in the module docstring."""
    from pcam_core.evaluation.cam_scores import threshold_labels
    from pcam_core.cam.store import CamStore
    from pcam_core.evaluation.miou import find_predictions
    from pcam_core.common.label_png import read_label_png

    names = ["image", "clicks", *(c.name for c in cam_columns), *(c.name for c in label_columns),
             "ground truth"]
    if len(set(names)) != len(names):
        raise ValueError(f"column names must differ, got {names}")
    headers = ["image", "clicks", *(f"{c.name} (τ {c.threshold:g})" for c in cam_columns),
               *(c.name for c in label_columns), "ground truth"]
    classes = index.classes
    table = colour_table(classes)
    missing = {name: 0 for name in names[2:]}
    predictions = [find_predictions(list(c.folders)) for c in label_columns]
    stores = []
    try:
        for column in cam_columns:
            stores.append(CamStore(list(column.stores)))
        rows, labels, click_ids = [], [], set()
        for record in sample.records:
            rgb = index.read_image(record)
            row = [Cell(rgb=rgb)]
            points = tuple((c.x, c.y, tuple(int(v) for v in table[c.cls])) for c in record.clicks)
            click_ids.update(c.cls for c in record.clicks)
            row.append(Cell(rgb=rgb, points=points))
            maps: list[tuple[str, np.ndarray | None]] = []
            for column, store in zip(cam_columns, stores):
                if record.id in store:
                    label = _check_size(threshold_labels(store[record.id], column.threshold), rgb.shape,
                                        f"{record.id}: the {column.name} map")
                elif not record.export_classes():  # no classes, no maps: scored as all background
                    label = np.zeros(rgb.shape[:2], np.uint8)
                else:
                    label = None
                maps.append((column.name, label))
            for column, found in zip(label_columns, predictions):
                path = found.get(record.id)
                maps.append((column.name, None if path is None else
                             _check_size(read_label_png(path), rgb.shape, str(path))))
            for name, label in maps:
                if label is None:
                    missing[name] += 1
                    row.append(Cell(text=MISSING))
                else:
                    labels.append(label)
                    row.append(Cell(rgb=colour_labels(label, classes), label=label))
            row.append(_ground_truth(record, rgb.shape, classes, missing, labels))
            rows.append(row)
    finally:
        for store in stores:
            store.close()
    title = (f"{index.dataset}: {len(sample.records)} {sample.split} images "
             f"(a fixed hash-ordered sample)" + (f"; {sample.note}" if sample.note else ""))
    return Grid(title, names, headers, [r.id for r in sample.records], rows,
                legend_entries(classes, labels, click_ids), missing)


def _ground_truth(record: ImageRecord, shape: tuple[int, ...], classes: ClassList,
                  missing: dict[str, int], labels: list[np.ndarray]) -> Cell:
    """The GT cell, read as the evaluation reads it; a listed but absent file counts as missing."""
    if not has_mask(record):
        return Cell(text=NO_MASK)
    try:
        gt = record.load_gt_mask()
    except FileNotFoundError:
        missing["ground truth"] += 1
        return Cell(text=MISSING)
    gt = _check_size(gt, shape, f"{record.gt_png or record.gt_mat}")
    labels.append(gt)
    return Cell(rgb=colour_labels(gt, classes), label=gt)


# ----------------------------------------------------------------------------- the figure
def draw_grid(grid: Grid):
    """The grid as a matplotlib Figure on the Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = len(grid.columns)
    aspects = []
    for row in grid.rows:
        h, w = row[0].rgb.shape[:2]
        aspects.append(min(max(h / w, MIN_ASPECT), MAX_ASPECT))
    legend_cols = max(1, min(len(grid.legend), ncols))
    legend_rows = math.ceil(len(grid.legend) / legend_cols) if grid.legend else 0
    legend_inches = LEGEND_ROW_INCHES * legend_rows + (0.2 if legend_rows else 0.0)
    cells_inches = CELL_INCHES * sum(aspects) if aspects else CELL_INCHES * 0.5
    height = cells_inches + TITLE_INCHES + legend_inches
    fig = Figure(figsize=(CELL_INCHES * ncols + 0.3, height))
    FigureCanvasAgg(fig)
    fig.suptitle(grid.title, fontsize=9, y=1 - 0.12 / height)
    if grid.rows:
        axes = fig.subplots(len(grid.rows), ncols, squeeze=False,
                            gridspec_kw={"height_ratios": aspects, "hspace": 0.06, "wspace": 0.04})
        fig.subplots_adjust(left=0.3 / fig.get_figwidth(), right=0.995,
                            top=1 - TITLE_INCHES / height, bottom=legend_inches / height)
        for r, (image_id, row) in enumerate(zip(grid.ids, grid.rows)):
            h, w = row[0].rgb.shape[:2]
            for c, cell in enumerate(row):
                _draw_cell(axes[r][c], cell, h, w)
                if r == 0:
                    axes[r][c].set_title(grid.headers[c], fontsize=8)
            axes[r][0].set_ylabel(image_id, fontsize=6)
    if grid.legend:
        fig.legend(handles=legend_handles(grid.legend), loc="lower center", ncol=legend_cols,
                   fontsize=7, frameon=False, handlelength=1.2, columnspacing=1.0,
                   bbox_to_anchor=(0.5, 0.0))
    return fig


def _draw_cell(ax, cell: Cell, height: int, width: int) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if cell.rgb is not None:
        ax.imshow(cell.rgb, interpolation="nearest")
        for side in ax.spines.values():
            side.set_visible(False)
    else:
        ax.set_facecolor("white")
        for side in ax.spines.values():
            side.set_color("0.75")
        ax.text(0.5, 0.5, cell.text or "", transform=ax.transAxes, ha="center", va="center",
                fontsize=8, color="0.35")
    if cell.points:
        # A click at (x, y) lies in the pixel (int(y), int(x)), whose square imshow draws
        # from x - 0.5 to x + 0.5 around its index: the click is at (x - 0.5, y - 0.5).
        xs = [x - 0.5 for x, _, _ in cell.points]
        ys = [y - 0.5 for _, y, _ in cell.points]
        colours = [np.asarray(colour) / 255.0 for _, _, colour in cell.points]
        ax.scatter(xs, ys, s=CLICK_DOT_AREA, c=colours, edgecolors="black",
                   linewidths=CLICK_EDGE_WIDTH, zorder=3)
    # the same extent for every cell of a row, whether it holds a picture or a text
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_aspect("equal")


def write_grid(grid: Grid, out: str | Path, dpi: int = DPI) -> None:
    """Draw the grid and write it as a PNG, atomically."""
    from pcam_core.common.atomic_output import atomic_path

    fig = draw_grid(grid)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


# ----------------------------------------------------------------------------- CLI
def parse_threshold(text: str) -> float:
    """A number in [0, 1], or a calibration JSON's ``cam_eval_threshold`` (as evaluate-cams reads it)."""
    from pcam_core.calibration.calibration_file import read_calibration

    try:
        value = float(text)
    except ValueError:
        return read_calibration(text, CALIBRATION_KEY)
    if not 0 <= value <= 1:
        raise ValueError(f"--cam threshold must be in [0, 1] (the maps are max-normalised), got {text}")
    return value


def _column_name(name: str, option: str) -> str:
    """The NAME that starts an option's values; a path there means the name was forgotten."""
    if Path(name).exists() or name.endswith((".h5", ".json")) or "/" in name:
        raise ValueError(f"{option} takes a column NAME first (e.g. {option} CAM ...), got the path {name!r}")
    return name


def cam_column(values: Sequence[str]) -> CamColumn:
    """``--cam NAME THRESHOLD|CALIBRATION.json STORE [STORE ...]`` as a column."""
    if len(values) < 3:
        raise ValueError(f"--cam takes NAME THRESHOLD_OR_CALIBRATION STORE [STORE ...], got {list(values)}")
    name = _column_name(values[0], "--cam")
    return CamColumn(name, parse_threshold(values[1]), tuple(Path(v) for v in values[2:]))


def label_column(values: Sequence[str]) -> LabelColumn:
    """``--labels NAME DIR [DIR ...]`` as a column."""
    if len(values) < 2:
        raise ValueError(f"--labels takes NAME DIR [DIR ...], got {list(values)}")
    return LabelColumn(_column_name(values[0], "--labels"), tuple(Path(v) for v in values[1:]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="dataset index.json")
    parser.add_argument("--cam", action="append", nargs="+", default=[],
                        metavar="NAME THRESHOLD|CALIBRATION STORE",
                        help="a CAM column: NAME, the background threshold (a number, or the variant's "
                             "calibration/cam_threshold.json) and every shard's CAM store (.h5); repeat "
                             "per variant, columns in the given order")
    parser.add_argument("--labels", action="append", nargs="+", default=[], metavar="NAME DIR",
                        help="a column of label PNGs (<id>.png): NAME and its folders (e.g. one per "
                             "shard: pseudo labels, DeepLab predictions); repeatable, after the CAM columns")
    parser.add_argument("--split", default="val",
                        help="split to sample (falls back to train images with masks when it has none)")
    parser.add_argument("--count", type=int, default=6, help="images (rows) in the sample")
    parser.add_argument("--dpi", type=int, default=DPI, help="resolution of the PNG")
    parser.add_argument("--out", required=True, help="PNG to write")


def main(args: argparse.Namespace) -> int:
    try:
        cams = [cam_column(v) for v in args.cam]
        labels = [label_column(v) for v in args.labels]
    except ValueError as error:
        raise SystemExit(f"pcam qualitative-grid: {error}") from None
    index = DatasetIndex.load(args.index)
    sample = sample_records(index, args.split, args.count)
    grid = build_grid(index, sample, cams, labels)
    write_grid(grid, args.out, args.dpi)
    if sample.note:
        print(f"qualitative-grid: {sample.note}: sampled {sample.split} images")
    missing = ", ".join(f"{name} {n}" for name, n in grid.missing.items() if n)
    print(f"qualitative-grid: {len(grid.rows)} {sample.split} images x {len(grid.columns)} columns "
          f"written to {args.out}; missing maps: {missing or 'none'}")
    return 0
