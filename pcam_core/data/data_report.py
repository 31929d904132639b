"""The data report: the counts a user needs to trust a dataset before anything trains
(splits, click quirks, points per image, click noise against the masks, where the image-level
labels came from), as JSON and as Markdown. Shared by the VOC-layout and custom-data readers.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from pcam_core.common.class_list import IGNORE_INDEX, ClassList
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.data.bad_input import KINDS


def count_click_noise(noise: Counter, mask: np.ndarray, clicks) -> None:
    """Add the clicks that land on void or on another class's pixel of the GT mask (label noise)."""
    for click in clicks:
        hit = int(mask[click.pixel])
        noise["on_gt_pixel"] += 1
        if hit == IGNORE_INDEX:
            noise["on_void"] += 1
        elif hit != click.cls:
            noise["on_other_class"] += 1


def data_report(index: DatasetIndex, clicks: dict, noise: dict, seconds: float, sources: dict,
                masks: dict | None = None,
                split_note: str = "VOC val ids are never in train_aug",
                image_labels: dict | None = None, skipped: dict | None = None) -> dict:
    """Counts a user needs to trust the data: splits, quirks, points per image, noise.

    ``masks`` holds the mask counts of the layout (VOC: VOC PNGs and SBD-only masks);
    ``image_labels`` (VOC layout) the ``ImageLabelCounts`` of where ``classes`` came from;
    ``skipped`` the ``bad_input.InputProblems`` section (what strict: false left out).
    """
    train_aug = index.split("train_aug")
    per_image = np.array([len(r.clicks) for r in train_aug]) if train_aug else np.zeros(0)
    histogram = {str(k): int((per_image == k).sum()) for k in range(5)}
    histogram["5+"] = int((per_image >= 5).sum())
    no_click = [r.id for r in train_aug if not r.clicks]
    left_out = [r.id for r in train_aug if not r.classes]
    # Click classes, not ``classes``: with XML labels these differ, and this count is the
    # clicks' agreement with the masks.
    disagree = sum(1 for r in index.records.values()
                   if r.gt_classes and r.clicks and {c.cls for c in r.clicks} != set(r.gt_classes))
    if masks is None:
        masks = {"images_with_voc_mask": sum(1 for r in index.records.values() if r.gt_png),
                 "images_with_sbd_mask_only": sum(1 for r in index.records.values()
                                                  if r.gt_mat and not r.gt_png)}
    return {
        "dataset": index.dataset,
        "sources": sources,
        "images": {name: len(ids) for name, ids in index.splits.items()},
        "val_ids_removed_from_train_aug": split_note,
        "clicks": clicks,
        "points_per_image_train_aug": {
            "mean": float(per_image.mean()) if per_image.size else 0.0,
            "median": float(np.median(per_image)) if per_image.size else 0.0,
            "histogram": histogram,
        },
        "train_aug_without_valid_click": {
            "count": len(no_click), "examples": no_click[:10],
            "left_out_of_training": len(left_out),
            "note": ("left out of training (no image-level label)" if no_click == left_out else
                     f"{len(left_out)} left out of training (no image-level label); the other "
                     f"{len(no_click) - len(left_out)} train on their XML image-level label alone")},
        "click_noise": noise,
        "images_whose_click_classes_differ_from_gt_classes": disagree,
        **masks,
        **({"image_labels": image_labels} if image_labels is not None else {}),
        **({"skipped": skipped} if skipped is not None else {}),
        "build_seconds": round(seconds, 2),
    }


# Click counts in the order the report lists them (VOC's quirks, then those of other formats).
CLICK_COUNT_ROWS = (
    ("clicks_in_file", "clicks in the file(s)"),
    ("valid_clicks", "valid clicks"),
    ("out_of_bounds", "out of bounds (x >= width or y >= height)"),
    ("negative", "negative coordinate"),
    ("unknown_class", "unknown class"),
    ("malformed", "malformed entry"),
    ("non_point_shape", "non-point shape (ignored)"),
    ("image_not_found", "click for an image not in the dataset"),
    ("clicks_on_skipped_images", "click for a skipped image (see Skipped input)"),
    ("empty_ids", "empty ids"),
    ("missing_ids", "missing ids"),
    ("ids_not_in_dataset", "ids not in dataset"),
    ("images_without_clicks", "images without any click"),
)


def report_markdown(report: dict, classes: ClassList) -> str:
    clicks = report["clicks"]
    ppi = report["points_per_image_train_aug"]
    lines = [f"# Data report ({report['dataset']})", "",
             "| split | images |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in report["images"].items()]
    lines += ["", "## Clicks", "", "| what | count |", "|---|---:|"]
    for key, text in CLICK_COUNT_ROWS:
        if key in clicks:
            lines.append(f"| {text} | {clicks[key]:,} |")
    if clicks.get("unknown_class_names"):
        names = ", ".join(f"{name!r} ({count})" for name, count in clicks["unknown_class_names"].items())
        lines.append(f"| unknown class names | {names} |")
    left = report["train_aug_without_valid_click"]
    out = left.get("left_out_of_training", left["count"])  # reports written before XML labels
    if out == left["count"]:
        lines.append(f"| train_aug images without a valid click (left out of training) | {left['count']:,} |")
    else:
        lines.append(f"| train_aug images without a valid click | {left['count']:,} |")
        lines.append(f"| ... of which left out of training (no image-level label either) | {out:,} |")
    noise = report["click_noise"]
    if noise.get("on_gt_pixel"):
        lines.append(f"| valid clicks on a pixel of another GT class | {noise.get('on_other_class', 0):,} "
                     f"({100 * noise.get('on_other_class', 0) / noise['on_gt_pixel']:.1f}%) |")
        lines.append(f"| valid clicks on a void GT pixel | {noise.get('on_void', 0):,} "
                     f"({100 * noise.get('on_void', 0) / noise['on_gt_pixel']:.1f}%) |")
    lines += ["", f"Points per train_aug image: mean {ppi['mean']:.2f}, median {ppi['median']:.0f}.", "",
              "| clicks | " + " | ".join(ppi["histogram"]) + " |",
              "|---|" + "---:|" * len(ppi["histogram"]),
              "| images | " + " | ".join(str(v) for v in ppi["histogram"].values()) + " |",
              "", "## Clicks per class", "", "| class | clicks |", "|---|---:|"]
    lines += [f"| {classes.names[int(k)]} | {v:,} |" for k, v in clicks["clicks_per_class"].items()]
    if clicks.get("examples"):
        lines += ["", "Examples of images with each quirk:", ""]
        lines += [f"- {quirk.replace('_', ' ')}: {', '.join(ids)}" for quirk, ids in clicks["examples"].items()]
    lines += image_label_markdown(report.get("image_labels"))
    lines += skipped_markdown(report.get("skipped"))
    sources = ", ".join(f"{k} {v}" for k, v in report["sources"].items() if v)
    lines += ["", f"Built in {report['build_seconds']} s from {sources}."]
    return "\n".join(lines) + "\n"


def skipped_markdown(skipped: dict | None) -> list[str]:
    """The report's "Skipped input" section: each kind of bad input left out, with examples."""
    if not skipped:
        return []
    counts = {kind: count for kind, count in skipped["counts"].items() if count}
    lines = ["", "## Skipped input", ""]
    if not counts:
        return lines + [f"Nothing was skipped (strict: {str(skipped['strict']).lower()})."]
    lines += ["strict: false left these out of the index and counted them (strict: true stops "
              "the build on them instead, listing each one):", "",
              "| problem | count | examples | fix |", "|---|---:|---|---|"]
    for kind, count in counts.items():
        what, fix = KINDS.get(kind, (kind, ""))
        examples = "; ".join(f"`{e}`" for e in skipped["examples"].get(kind, [])[:3])
        lines.append(f"| {what} | {count:,} | {examples} | {fix} |")
    return lines


def image_label_markdown(labels: dict | None) -> list[str]:
    """The report's image-level label section (VOC layout only; none for custom datasets)."""
    if not labels:
        return []
    if labels["source"] == "xml":
        sentence = ("Each image's training label is the set of classes of its Annotations XML "
                    "(difficult and truncated objects included), so a class whose click was "
                    "unusable still counts; clicks of a class the XML does not list are dropped.")
    else:
        sentence = ("There is no Annotations folder, so each image's training label is the set "
                    "of classes of its valid clicks: a class whose only click was unusable "
                    "becomes a negative.")
    lines = ["", "## Image-level labels", "", sentence, "", "| what | count |", "|---|---:|",
             f"| source of the labels | {labels['source']} |"]
    if labels["source"] == "xml":
        lines += [
            f"| images without an XML file (click classes kept) | {labels['images_without_xml']:,} |",
            f"| valid clicks dropped: class not in the image's XML | {labels['clicks_class_not_in_xml']:,} |",
            f"| XML classes without a click (labelled by the XML alone) | {labels['xml_classes_without_click']:,} |",
            f"| images whose XML and click classes differ | {labels['images_with_disagreement']:,} |",
        ]
        if labels.get("examples"):
            lines += ["", "Examples: " + "; ".join(
                f"{e['id']} (XML {e['xml_classes']}, clicks {e['click_classes']})"
                for e in labels["examples"][:5]) + "."]
    return lines
