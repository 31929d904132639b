"""A tiny on-disk dataset (a few small JPEGs, palette GT PNGs, clicks, index.json) for CAM tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pcam_core.common.dataset_index import Click, DatasetIndex, ImageRecord
from pcam_core.common.label_png import write_label_png
from pcam_core.data.voc_reader import voc_class_list


def make_tiny_index(root: Path, num_train: int = 6, num_val: int = 2, size: tuple[int, int] = (40, 52),
                    seed: int = 0, empty_val: bool = False) -> Path:
    """Images with one or two coloured rectangles (class 1 + maybe class 2) and a click in each.

    ``empty_val`` makes the last val image all background (no class, no click).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    records, splits = [], {"train": [], "val": [], "train_aug": []}
    height, width = size
    for i in range(num_train + num_val):
        image_id = f"2000_{i:06d}"
        rgb = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        clicks = []
        is_empty = empty_val and i == num_train + num_val - 1
        objects = [] if is_empty else [(1, (255, 40, 40))] + ([(2, (40, 40, 255))] if i % 2 else [])
        for k, (cls, colour) in enumerate(objects):
            top, left = 4 + 18 * k, 4 + 20 * k
            mask[top:top + 14, left:left + 16] = cls
            mask[top, left:left + 16] = 255  # a void line, as VOC borders
            rgb[top:top + 14, left:left + 16] = colour
            clicks.append(Click(cls, left + 8.3, top + 7.6, 1))
        Image.fromarray(rgb).save(root / "img" / f"{image_id}.jpg", quality=95)
        write_label_png(root / "gt" / f"{image_id}.png", mask)
        split = "train" if i < num_train else "val"
        record_splits = ("train", "train_aug") if split == "train" else ("val",)
        classes = tuple(sorted({c.cls for c in clicks}))
        records.append(ImageRecord(id=image_id, image=str(root / "img" / f"{image_id}.jpg"), height=height,
                                   width=width, splits=record_splits, classes=classes,
                                   gt_classes=classes, clicks=tuple(clicks),
                                   gt_png=str(root / "gt" / f"{image_id}.png")))
        for s in record_splits:
            splits[s].append(image_id)
    path = root / "index.json"
    DatasetIndex(records, splits, "tiny", voc_class_list()).save(path)
    return path


TINY_PARAMS = {
    "backbone": "resnet18", "batch_size": 2, "crop_size": 32, "resize_long": [32, 48], "epochs": 2,
    "checkpoint_every": 2, "num_workers": 0, "export_scales": [1.0, 0.5], "seed": 0,
}
