"""A tiny custom dataset (the user's folder layout) with any number of object classes.

Images are noisy RGB PNGs with one or two coloured rectangles of different classes; every
image has a label-PNG mask (rectangle = class id, its top row void) and one click inside each
rectangle in a plain ``image,x,y,class`` CSV (float coordinates, class by name); the last val
image is empty (background only, no click), as tiles without objects are. The class
plan puts EVERY class id 1..N in a training image, the last ten train images holding one
class each (ids 21..30 when N = 30), so the high ids reach every stage.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from pcam_core.common.label_png import write_label_png

HEIGHT, WIDTH = 40, 48
NUM_TRAIN = 20  # images 0-9 hold two classes, 10-19 one: 30 class slots
NUM_VAL = 5
RECT_H, RECT_W = 16, 18
# (top, left) of the first and the second rectangle: they never overlap
RECT_CORNERS = ((3, 3), (21, 27))
# The last class gets an explicit colour (not the default colour map's) so that palette
# checks see the dataset's colours and not a default.
LAST_CLASS_COLOUR = [17, 201, 93]


def class_name(cls: int) -> str:
    return f"class_{cls:02d}"


def class_items(num_classes: int) -> list:
    """``dataset.classes``: names, the last one with an explicit colour."""
    items: list = [class_name(c) for c in range(1, num_classes)]
    items.append({"name": class_name(num_classes), "colour": LAST_CLASS_COLOUR})
    return items


def draw_colour(cls: int, num_classes: int) -> tuple[int, int, int]:
    """The colour a class's rectangles are painted in (distinct hues, bright)."""
    r, g, b = colorsys.hsv_to_rgb((cls - 1) / num_classes, 0.9, 0.95)
    return int(255 * r), int(255 * g), int(255 * b)


def class_plan(num_classes: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Classes of each train and val image; the train images cover every id 1..N (N <= 30)."""
    pairs, singles = NUM_TRAIN // 2, NUM_TRAIN - NUM_TRAIN // 2
    slots = [s % num_classes + 1 for s in range(2 * pairs + singles)]
    train = [(slots[2 * i], slots[2 * i + 1]) for i in range(pairs)]
    train += [(slots[2 * pairs + i],) for i in range(singles)]
    val = []
    for j in range(NUM_VAL):
        first = num_classes - j % num_classes
        second = (5 * j) % num_classes + 1
        val.append((first,) if j % 2 or second == first else (first, second))
    val[-1] = ()  # an empty tile: no object, no click (scored as all background)
    return train, val


def make_custom_dataset(root: Path, num_classes: int, seed: int = 0) -> dict:
    """Write images/, masks/, clicks.csv and val.txt under ``root``; returns the params of
    ``build_custom_index`` plus the plan (ids -> classes)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    train_plan, val_plan = class_plan(num_classes)
    plan: dict[str, tuple[int, ...]] = {}
    plan.update({f"train_{i:02d}": c for i, c in enumerate(train_plan)})
    plan.update({f"val_{j:02d}": c for j, c in enumerate(val_plan)})
    rows = ["image,x,y,class"]
    for image_id, classes in plan.items():
        rgb = rng.integers(0, 70, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        for (top, left), cls in zip(RECT_CORNERS, classes):
            rgb[top:top + RECT_H, left:left + RECT_W] = draw_colour(cls, num_classes)
            mask[top:top + RECT_H, left:left + RECT_W] = cls
            mask[top, left:left + RECT_W] = 255  # a void line, as VOC's borders
            x = left + 8.6 + 0.1 * rng.random()
            y = top + 7.4 + 0.1 * rng.random()
            rows.append(f"{image_id},{x:.3f},{y:.3f},{class_name(cls)}")
        Image.fromarray(rgb).save(images / f"{image_id}.png")
        write_label_png(masks / f"{image_id}.png", mask)
    (root / "clicks.csv").write_text("\n".join(rows) + "\n")
    val_ids = [i for i in plan if i.startswith("val_")]
    (root / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    params = {"images": str(images), "classes": class_items(num_classes),
              "clicks": str(root / "clicks.csv"), "clicks_format": "csv", "masks": str(masks),
              "val": str(root / "val.txt")}
    return {"params": params, "plan": plan, "val_ids": val_ids}
