"""``pcam summary``: the run's Tables 1-4 side by side, with the paper's numbers for VOC.

Reads, per variant ``v`` of ``R = results/<run>``, the metrics JSON files written by
``pcam_core.evaluation.miou.write_metrics`` (key ``miou``, a fraction in [0, 1]; ``iou`` per class):

    R/v/cam/metrics_{train,val}.json      Table 1 (thresholded CAMs)
    R/v/pseudo/metrics_{train,val}.json   Table 2 (random-walk refined maps = pseudo labels)
    R/v/deeplab/metrics_val.json          Table 3 (DeepLabv3+ trained on the pseudo labels)
    R/v/deeplab/metrics_val_true_classes.json   Table 3 like for like (true classes only)
    R/v/calibration/{cam_threshold,ir_labels,walk}.json   the thresholds used (pcam_core/calibration/thresholds.py)
    R/v/quality_gates.json                the stage checks (pcam_core/evaluation/quality_gates.py)

A missing file is shown as "—" and listed under Notes; nothing is dropped silently. A file
that exists but cannot be read is an error (it means a stage wrote something broken). A
split without ground-truth masks is written unscored by the evaluation (mIoU null and a
note); the summary shows "—", says that mIoU needs masks and where the outputs are.

The variants without a CAM stage have no Table 1 row ("—", not applicable, no note):

    R/wtp/deeplab/...                     Table 3 (DeepLab trained on the clicks, "What's the point")
    R/pmp_blot/pseudo/blot_metrics_{train,val}.json   Table 2: the point blots, scored on the
                                          pixels they label (pcam score-blots), with their coverage
    R/pmp_blot/deeplab/...                Table 3 (DeepLab trained on the blots)

Ordering checks (the papers' claims, in the form the demo can test): CAM < PCAM on Table 1,
each map < its refined map (Table 1 -> 2), and final >= refined - 0.03 (Table 2 -> 3), the
last also like for like; and point supervision without CAMs below PCAM on Table 3 (WTP 35.1
and PMP blots 49.1 against PCAM 70.5 on VOC val). The blots' Table 2 number counts only the
pixels they label, so no Tables 2-3 check applies to them.

For ``--dataset voc2012`` the paper's numbers are shown in adjacent columns. They are
constants QUOTED from McEver & Manjunath (Tables 1-4, PASCAL VOC 2012), Bearman et al.
(Table 1a) and Akiva & Dana (Table 3), not measured here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pcam_core.common.atomic_output import write_text
from pcam_core.common.markdown_html import markdown_to_html
from pcam_core.data.voc_reader import VOC_CLASSES  # the paper's Table 4 columns only

SUMMARY_FORMAT = "pcam-summary/2"  # 2: calibration, quality gates, like-for-like Table 3
SPLITS = ("train", "val")
# stage key -> (file under R/<variant> with {split}, splits scored, table title)
STAGES = {
    "cam": ("cam/metrics_{split}.json", SPLITS, "Table 1 — activation maps (thresholded CAMs)"),
    "refined": ("pseudo/metrics_{split}.json", SPLITS, "Table 2 — refined maps (random-walk pseudo labels)"),
    "final": ("deeplab/metrics_{split}.json", ("val",),
              "Table 3 — final: DeepLabv3+ trained on the pseudo labels"),
    # The val pseudo labels only hold each image's true classes (the export uses the GT image
    # labels, spec §5.9), DeepLab's predictions may hold any class: this row compares like
    # with like (DeepLab's argmax over background + the image's true classes).
    "final_true_classes": ("deeplab/metrics_{split}_true_classes.json", ("val",),
                           "Table 3, like for like — DeepLabv3+ restricted to each image's true "
                           "classes, as the val pseudo labels are"),
}
VARIANT_NAMES = {"cam": "CAM (image labels)", "pcam": "PCAM (points)",
                 "pcam_full": "PCAM F (every GT pixel a point)",
                 "wtp": "WTP (points, What's the point)", "pmp_blot": "PMP blots (points)"}
# Variants whose branch has no CAM stage, and which of the stages above it has instead.
# A stage mapped to None does not apply ("—" without a "missing" note); pmp_blot's
# "refined" row is its point blots, scored on the pixels they label (pcam score-blots).
VARIANT_STAGE_FILES: dict[str, dict[str, str | None]] = {
    "wtp": {"cam": None, "refined": None},
    "pmp_blot": {"cam": None, "refined": "pseudo/blot_metrics_{split}.json"},
}
# Point supervision without CAMs scores below PCAM on VOC val (Table 3): 35.1 (Bearman et al.,
# image labels + one point, no objectness) and 49.1 (Akiva & Dana, point blots alone) vs 70.5.
BELOW_PCAM = ("wtp", "pmp_blot")
# Table 3 may fall below Table 2 by this much (mIoU fraction) and still pass: the paper gains
# +2.0 (68.5 -> 70.5), but a short DeepLab schedule on the small demo can lose a little of the
# labels' quality; a broken decoder or misaligned labels costs far more than 3 points.
FINAL_TOLERANCE = 0.03

# ---- Paper numbers: mIoU in PERCENT, PASCAL VOC 2012, quoted from McEver & Manjunath,
# "PCAMs: Weakly Supervised Semantic Segmentation Using Point Supervision" (spec §7.3).
# Constants, not results of this code. Keys are our variant names.
PAPER_SOURCE = ("McEver & Manjunath, PCAMs (PASCAL VOC 2012): Tables 1-4, quoted; "
                "ResNet-50 CAM/IRNet, DeepLabv3+ single-scale. wtp: Bearman et al., What's the "
                "point, Table 1a, Img + 1Point (no objectness prior), FCN-32s VGG-16 from ImageNet. "
                "pmp_blot: Akiva & Dana, PMP, Table 3, point blots alone (no distance fields, no "
                "PAC refiner), ResNet-50 FCN from scratch, points from box centres")
PAPER_PERCENT: dict[str, dict[str, dict[str, float]]] = {
    "cam": {"cam": {"train": 48.3, "val": 46.0}, "pcam": {"train": 56.5, "val": 54.4},
            "pcam_full": {"train": 64.0, "val": 55.5}},
    "refined": {"cam": {"train": 66.5, "val": 57.4}, "pcam": {"train": 70.8, "val": 68.5}},
    "final": {"pcam": {"val": 70.5}, "wtp": {"val": 35.1}, "pmp_blot": {"val": 49.1}},
}
# Bearman et al., Table 1a: the same network from image-level labels alone (Eq. 2), the
# "image-level < point" step of their ordering; and their best, with an objectness detector
# trained on outside images (not offered here).
PAPER_WTP_IMAGE_LEVEL_PERCENT = 29.8
PAPER_WTP_OBJECTNESS_PERCENT = 42.7
PAPER_FULLY_SUPERVISED_PERCENT = 78.9  # Table 3, DeepLabv3+ on the real ground truth
PAPER_TABLE4_PCAM_FINAL_PERCENT = dict(zip(VOC_CLASSES, (
    89.9, 66.1, 30.1, 85.2, 62.5, 75.8, 87.1, 80.4, 87.1, 34.0, 85.1,
    60.0, 84.4, 82.4, 77.4, 68.4, 56.1, 84.0, 46.1, 72.6, 64.2)))
PAPER_TABLE4_MEAN_PERCENT = 70.5  # as printed; the 21 values above average 70.42


def stage_file(variant: str, stage: str) -> str | None:
    """The metrics file of a variant's stage under R/<variant> ({split} left in); None = n/a."""
    return VARIANT_STAGE_FILES.get(variant, {}).get(stage, STAGES[stage][0])


def metrics_path(results_dir: Path, variant: str, stage: str, split: str) -> Path | None:
    relative = stage_file(variant, stage)
    return None if relative is None else results_dir / variant / relative.format(split=split)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """The metrics dict, or None when the file does not exist."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read metrics JSON ({error})") from None
    if not isinstance(data, dict) or "miou" not in data:
        raise ValueError(f"{path}: no 'miou' key; not a file written by pcam evaluate")
    miou = data["miou"]
    if miou is not None and not (isinstance(miou, (int, float)) and 0.0 <= miou <= 1.0):
        raise ValueError(f"{path}: 'miou' must be a fraction in [0, 1], got {miou!r}")
    return data


def collect(results_dir: Path, variants: list[str]) -> tuple[dict, dict, list[str]]:
    """(mIoU table, per-class final IoU, notes about missing files)."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    per_class: dict[str, dict[str, float | None]] = {}
    notes: list[str] = []
    for variant in variants:
        table[variant] = {}
        for stage, (_, splits, _) in STAGES.items():
            table[variant][stage] = {}
            for split in splits:
                path = metrics_path(results_dir, variant, stage, split)
                if path is None:  # the variant's branch has no such stage
                    table[variant][stage][split] = None
                    continue
                data = read_metrics(path)
                if data is None:
                    notes.append(f"missing: {path}")
                    table[variant][stage][split] = None
                    continue
                if data["miou"] is None and not data.get("note"):
                    notes.append(f"{path}: no scored pixels (mIoU undefined)")
                table[variant][stage][split] = data["miou"]
                if stage == "final" and isinstance(data.get("iou"), dict):
                    per_class[variant] = data["iou"]
    return table, per_class, notes


def unscored_splits(results_dir: Path, variants: list[str]) -> list[str]:
    """Splits whose metrics say they were not scored (no ground-truth mask)."""
    found = []
    for variant in variants:
        for stage, (_, splits, _) in STAGES.items():
            for split in splits:
                path = metrics_path(results_dir, variant, stage, split)
                data = None if path is None else read_metrics(path)
                if data is not None and data.get("note") and split not in found:
                    found.append(split)
    return found


def _check(name: str, values: dict[str, float | None], passed) -> dict[str, Any]:
    if any(v is None for v in values.values()):
        absent = [k for k, v in values.items() if v is None]
        return {"check": name, "status": "not evaluated", "values": values,
                "detail": f"no mIoU for {', '.join(absent)}"}
    return {"check": name, "status": "pass" if passed(values) else "fail", "values": values}


def ordering_checks(table: dict) -> list[dict[str, Any]]:
    """The paper's orderings: CAM < PCAM, map < refined map, final >= refined - tolerance."""
    checks = []
    if "cam" in table and "pcam" in table:
        for split in SPLITS:
            values = {"CAM": table["cam"]["cam"][split], "PCAM": table["pcam"]["cam"][split]}
            checks.append(_check(f"CAM < PCAM (Table 1, {split})", values,
                                 lambda v: v["CAM"] < v["PCAM"]))
    for variant, stages in table.items():
        if variant in VARIANT_STAGE_FILES:  # no CAM stage: the checks below
            continue
        label = VARIANT_NAMES.get(variant, variant).split(" (")[0]
        for split in SPLITS:
            values = {label: stages["cam"][split], f"refined {label}": stages["refined"][split]}
            checks.append(_check(f"{label} < refined {label} (Tables 1-2, {split})", values,
                                 lambda v, a=label: v[a] < v[f"refined {a}"]))
        values = {f"refined {label}": stages["refined"]["val"], "final": stages["final"]["val"]}
        checks.append(_check(f"{label}: final >= refined - {100 * FINAL_TOLERANCE:.0f} points "
                             "(Tables 2-3, val)",
                             values, lambda v, a=label: v["final"] >= v[f"refined {a}"] - FINAL_TOLERANCE))
        values = {f"refined {label}": stages["refined"]["val"],
                  "final, true classes": stages["final_true_classes"]["val"]}
        checks.append(_check(f"{label}: final like for like >= refined - {100 * FINAL_TOLERANCE:.0f} "
                             "points (Tables 2-3, val)", values,
                             lambda v, a=label: v["final, true classes"] >= v[f"refined {a}"] - FINAL_TOLERANCE))
    if "pcam" in table:
        for variant in BELOW_PCAM:
            if variant not in table:
                continue
            label = VARIANT_NAMES[variant].split(" (")[0]
            values = {label: table[variant]["final"]["val"], "PCAM": table["pcam"]["final"]["val"]}
            checks.append(_check(f"{label} < PCAM (Table 3, val)", values,
                                 lambda v, a=label: v[a] < v["PCAM"]))
    return checks


def collect_blot_coverage(results_dir: Path, variants: list[str]) -> dict[str, float | None]:
    """Split -> the fraction of the non-void pixels the point blots label (pmp_blot runs)."""
    if "pmp_blot" not in variants:
        return {}
    coverage = {}
    for split in SPLITS:
        data = read_metrics(metrics_path(results_dir, "pmp_blot", "refined", split))
        coverage[split] = None if data is None else data.get("coverage")
    return coverage


def read_json_if_present(path: Path, what: str, notes: list[str]) -> dict | None:
    """A calibration or gates JSON, or None (and a note) when the file is missing."""
    if not path.exists():
        notes.append(f"missing: {path}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the {what} JSON ({error})") from None


def collect_calibration(results_dir: Path, variants: list[str], notes: list[str]) -> dict:
    """Per variant: the thresholds its stages used and where they came from."""
    out = {}
    for variant in variants:
        if variant in VARIANT_STAGE_FILES:  # no CAM stage, nothing calibrated
            continue
        entry = {}
        for step in ("cam_threshold", "ir_labels", "walk"):
            data = read_json_if_present(results_dir / variant / "calibration" / f"{step}.json",
                                        "calibration", notes)
            if data is None:
                continue
            for key in ("cam_eval_threshold", "ir_fg_threshold", "ir_bg_threshold", "walk_bg_threshold"):
                if key in data:
                    entry[key] = data[key]
                    if data.get("measured_choice", {}).get(key) is not None:
                        entry[f"{key}_measured"] = data["measured_choice"][key]
            entry[f"{step}_source"] = data["source"]
            entry[f"{step}_images"] = data["images"]
            if data["source"] == "fallback" and data["note"] not in notes:
                notes.append(f"{variant}: {data['note']}")
        out[variant] = entry
    return out


def collect_gates(results_dir: Path, variants: list[str], notes: list[str]) -> dict:
    out = {}
    for variant in variants:
        data = read_json_if_present(results_dir / variant / "quality_gates.json", "quality gates", notes)
        if data is not None:
            out[variant] = data["gates"]
    return out


# ----------------------------------------------------------------------------- Markdown
def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _paper(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def summary_markdown(report: dict[str, Any]) -> str:
    with_paper = report["paper"] is not None
    lines = [f"# pcam summary — run `{report['run']}` (dataset {report['dataset']})", "",
             f"mIoU in percent: one confusion matrix over each split, {report['num_classes']} "
             "classes (background included), void ignored. '—' = not available (see Notes)."]
    if report["unscored_splits"]:
        lines += ["", f"**No mIoU for {' and '.join(report['unscored_splits'])}: mIoU needs ground-truth "
                  "masks, and no image of that split has one.** Every stage still ran: the pseudo "
                  "labels are in `<variant>/pseudo/`, the DeepLab model is "
                  "`<variant>/deeplab/model.pt` and its predictions are in "
                  "`<variant>/deeplab/predictions/` (val) and `<variant>/deeplab/predict/` "
                  "(the `predict` target). Add label PNGs for a few images (`dataset.masks`) "
                  "to score the stages."]
    if with_paper:
        lines.append("Columns marked *paper* are QUOTED from the PCAM paper (PASCAL VOC 2012), "
                     "and for wtp and pmp_blot from their own papers, not measured by this run.")
    not_applicable = report.get("not_applicable", {})
    for stage, (_, splits, title) in STAGES.items():
        lines += ["", f"## {title}", ""]
        header = ["variant"] + list(splits)
        if with_paper:
            header += [f"paper {s}" for s in splits]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---|" + "---:|" * (len(header) - 1))
        for variant, stages in report["miou"].items():
            name = VARIANT_NAMES.get(variant, variant)
            if stage == "refined" and variant == "pmp_blot":
                name = "PMP point blots, labelled pixels only †"
            row = [name] + [_pct(stages[stage][s]) for s in splits]
            if with_paper:
                paper = report["paper"]["miou_percent"].get(stage, {}).get(variant, {})
                row += [_paper(paper.get(s)) for s in splits]
            lines.append("| " + " | ".join(row) + " |")
        if stage == "final" and with_paper:
            lines.append(f"| DeepLabv3+ fully supervised (paper only) | — | "
                         f"{_paper(report['paper']['fully_supervised_percent'])} |")
            if "wtp" in report["miou"]:
                lines.append(f"| WTP from image labels alone (paper only) | — | "
                             f"{_paper(report['paper']['wtp_image_level_percent'])} |")
        if stage == "final" and set(report["miou"]) & set(VARIANT_STAGE_FILES):
            lines += ["", "wtp: DeepLabv3+ trained on the image labels and clicks directly (\"What's "
                      "the point\" losses); pmp_blot: on the point blots, unlabelled pixels ignored. "
                      "Same network and schedule as on the pseudo labels."]
        lacking = [v for v, stages in not_applicable.items() if stage in stages]
        if lacking:
            lines += ["", f"— for {', '.join(lacking)}: {'its' if len(lacking) == 1 else 'their'} "
                      "branch has no such stage (no CAMs)."]
        if stage == "refined" and "pmp_blot" in report["miou"]:
            coverage = report.get("blot_coverage", {})
            lines += ["", "† The point blots label only part of each image (DeepLab ignores the "
                      "rest): scored on the pixels they label, which are "
                      f"{_pct(coverage.get('train'))} % (train) and {_pct(coverage.get('val'))} % "
                      "(val) of the pixels. Not comparable with the refined maps above, which "
                      "label every pixel."]
    lines += _table4_markdown(report)
    lines += _calibration_markdown(report) + _gates_markdown(report)
    lines += ["", "## Checks", ""]
    marks = {"pass": "PASS", "fail": "FAIL", "not evaluated": "n/a "}
    for check in report["checks"]:
        values = ", ".join(f"{k} {_pct(v)}" for k, v in check["values"].items())
        detail = f" ({check['detail']})" if "detail" in check else ""
        lines.append(f"- **{marks[check['status']]}** {check['check']}: {values}{detail}")
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in report["notes"]] or ["- every metrics file was found"]
    if with_paper:
        lines.append(f"- paper numbers: {report['paper']['source']}")
    return "\n".join(lines) + "\n"


def _threshold(entry: dict, key: str) -> str:
    if key not in entry:
        return "—"
    measured = entry.get(f"{key}_measured")
    shown = f"{entry[key]:.2f}"
    # fixed mode: the value used, and what auto would have chosen beside it
    return shown if measured is None or measured == entry[key] else f"{shown} (auto: {measured:.2f})"


# Past this many classes Table 4 turns to one row per class (as the evaluation tables do).
TABLE4_WIDE_MAX_CLASSES = 25


def _table4_markdown(report: dict[str, Any]) -> list[str]:
    """Table 4: the final model's per-class IoU on val, one row per variant (the paper's form)."""
    per_class = report["per_class_final"]
    paper = report["paper"]
    names = list(VOC_CLASSES) if paper else next((list(v) for v in per_class.values() if v), [])
    if not names:
        return []
    rows = []  # (row name, values by class, mean)
    for variant in report["miou"]:
        ious = per_class.get(variant, {})
        rows.append((VARIANT_NAMES.get(variant, variant), [_pct(ious.get(n)) for n in names],
                     _pct(report["miou"][variant]["final"]["val"])))
    if paper:
        rows.append(("paper: Ours – final (PCAM)",
                     [_paper(paper["table4_pcam_final_percent"][n]) for n in names],
                     _paper(paper["table4_mean_percent"])))
    lines = ["", "## Table 4 — final per-class IoU (val)", ""]
    if len(names) <= TABLE4_WIDE_MAX_CLASSES:
        lines.append("| row | " + " | ".join(names) + " | mean |")
        lines.append("|---|" + "---:|" * (len(names) + 1))
        lines += [f"| {row} | " + " | ".join(values) + f" | {mean} |" for row, values, mean in rows]
    else:
        lines.append("| class | " + " | ".join(row for row, _, _ in rows) + " |")
        lines.append("|---|" + "---:|" * len(rows))
        for i, name in enumerate(names):
            lines.append(f"| {name} | " + " | ".join(values[i] for _, values, _ in rows) + " |")
        lines.append("| **mean** | " + " | ".join(mean for _, _, mean in rows) + " |")
    return lines


def _calibration_markdown(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Calibration — the thresholds each variant used", "",
             "Chosen on masked train images (`calibration: auto`) or as configured (`fixed`, or "
             "`fallback` when no train image has a mask). Table 1 uses the CAM threshold, the IR "
             "labels the foreground/background pair, Table 2 the walk threshold.", "",
             "| variant | CAM eval | IR fg | IR bg | walk bg | source (CAM / IR / walk) | images |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for variant, entry in report["calibration"].items():
        row = [VARIANT_NAMES.get(variant, variant)]
        row += [_threshold(entry, k) for k in ("cam_eval_threshold", "ir_fg_threshold",
                                              "ir_bg_threshold", "walk_bg_threshold")]
        sources = [entry.get(f"{step}_source", "—") for step in ("cam_threshold", "ir_labels", "walk")]
        row += [" / ".join(sources), str(entry.get("ir_labels_images", "—"))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _gates_markdown(report: dict[str, Any]) -> list[str]:
    lines = ["", "## Quality gates", "",
             "Measured checks of each stage (pcam_core/evaluation/quality_gates.py); a warning names what to "
             "change.", "",
             "| variant | gate | value | expected | status | what to change |", "|---|---|---:|---|---|---|"]
    for variant, gates in report["quality_gates"].items():
        for g in gates:
            value = "—" if g["value"] is None else f"{g['value']}"
            status = {"pass": "pass", "warn": "**warn**"}.get(g["status"], g["status"])
            lines.append(f"| {VARIANT_NAMES.get(variant, variant)} | {g['title']} | {value} | "
                         f"{g['expected']} | {status} | {g['advice']} |")
    return lines


# ----------------------------------------------------------------------------- command
def build_summary(results_dir: str | Path, variants: list[str], dataset: str,
                  num_classes: int | None = None) -> dict[str, Any]:
    results_dir = Path(results_dir)
    table, per_class, notes = collect(results_dir, variants)
    unscored = unscored_splits(results_dir, variants)
    if num_classes is None:  # from any metrics file: its confusion matrix is C x C
        for variant in variants:
            paths = [metrics_path(results_dir, variant, stage, "val") for stage in ("cam", "final")]
            data = next((d for d in (read_metrics(p) for p in paths if p) if d and d.get("iou")), None)
            if data:
                num_classes = len(data["iou"])
                break
    paper = None
    if dataset == "voc2012":
        paper = {"source": PAPER_SOURCE, "units": "percent (as printed in the paper)",
                 "miou_percent": PAPER_PERCENT,
                 "fully_supervised_percent": PAPER_FULLY_SUPERVISED_PERCENT,
                 "wtp_image_level_percent": PAPER_WTP_IMAGE_LEVEL_PERCENT,
                 "wtp_objectness_percent": PAPER_WTP_OBJECTNESS_PERCENT,
                 "table4_pcam_final_percent": PAPER_TABLE4_PCAM_FINAL_PERCENT,
                 "table4_mean_percent": PAPER_TABLE4_MEAN_PERCENT}
    return {"format": SUMMARY_FORMAT, "run": results_dir.name, "dataset": dataset,
            "units": "miou values are fractions in [0, 1]; paper values are percent",
            "num_classes": num_classes, "unscored_splits": unscored,
            "miou": table, "per_class_final": per_class, "checks": ordering_checks(table),
            "not_applicable": {v: [stage for stage in STAGES if stage_file(v, stage) is None]
                               for v in variants if v in VARIANT_STAGE_FILES},
            "blot_coverage": collect_blot_coverage(results_dir, variants),
            "calibration": collect_calibration(results_dir, variants, notes),
            "quality_gates": collect_gates(results_dir, variants, notes),
            "notes": notes, "paper": paper}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", required=True, help="results/<run_name>")
    parser.add_argument("--variants", nargs="+", required=True, help="variants to tabulate")
    parser.add_argument("--dataset", required=True, choices=("demo", "voc2012", "custom"),
                        help="voc2012 adds the paper's numbers beside ours")
    parser.add_argument("--out-md", required=True, help="summary Markdown")
    parser.add_argument("--out-json", required=True, help="summary JSON")
    parser.add_argument("--out-html", help="the summary as an HTML page (the report shows it)")


def main(args: argparse.Namespace) -> int:
    report = build_summary(args.results_dir, list(args.variants), args.dataset)
    write_text(args.out_json, json.dumps(report, indent=1) + "\n")
    markdown = summary_markdown(report)
    write_text(args.out_md, markdown)
    if args.out_html:
        write_text(args.out_html, markdown_to_html(markdown, f"pcam summary: {report['run']}"))
    failed = [c["check"] for c in report["checks"] if c["status"] == "fail"]
    print(f"summary: {args.out_md}; {len(report['notes'])} note(s); "
          f"{len(failed)} failed check(s){': ' + '; '.join(failed) if failed else ''}")
    return 0
