"""Tiny on-disk data for the IRNet-stage tests: images, an index, a shard list, a CAM store.

Each image is a textured background with one or two coloured rectangles; its CAMs are
smooth bumps over the rectangles (what a trained CAM network would roughly give), so the
mining and random-walk stages see realistic inputs at a few dozen pixels a side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pcam_core.cam.store import CamStoreWriter
from pcam_core.common.dataset_index import DatasetIndex, ImageRecord
from pcam_core.common.label_png import label_to_image
from pcam_core.data.voc_reader import voc_class_list

COLOURS = {3: (230, 200, 30), 8: (40, 190, 60), 12: (40, 80, 220)}


def _image(rng: np.random.Generator, h: int, w: int, classes: tuple[int, ...]):
    rgb = (110 + 20 * rng.standard_normal((h, w, 3))).clip(0, 255).astype(np.uint8)
    gt = np.zeros((h, w), np.uint8)
    maps = []
    for k, cls in enumerate(classes):
        y0, x0 = int(h * (0.15 + 0.4 * k)), int(w * (0.1 + 0.45 * k))
        y1, x1 = min(h, y0 + h // 2), min(w, x0 + w // 2)
        rgb[y0:y1, x0:x1] = COLOURS[cls]
        gt[y0:y1, x0:x1] = cls
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        bump = np.exp(-(((yy - cy) / (0.4 * (y1 - y0))) ** 2 + ((xx - cx) / (0.4 * (x1 - x0))) ** 2))
        maps.append(bump / bump.max())
    high_res = np.stack(maps).astype(np.float32) if maps else np.zeros((0, h, w), np.float32)
    return rgb, gt, high_res


def make_data(root: Path, sizes=((37, 53), (130, 70), (48, 48), (64, 40)),
              classes=((8,), (3, 12), (), (12,)), split="train_aug", seed: int = 0,
              not_stored=()) -> dict:
    """Write images, GT PNGs, index.json, shard.txt and cams.h5 under ``root``.

    Images whose position is in ``not_stored`` are left out of the CAM store.
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records, store = [], []
    for n, ((h, w), cls) in enumerate(zip(sizes, classes)):
        image_id = f"img_{n}"
        rgb, gt, high_res = _image(rng, h, w, cls)
        Image.fromarray(rgb).save(root / "img" / f"{image_id}.png")
        label_to_image(gt).save(root / "img" / f"{image_id}_gt.png")
        records.append(ImageRecord(id=image_id, image=str(root / "img" / f"{image_id}.png"), height=h,
                                   width=w, splits=(split,), classes=tuple(cls), gt_classes=tuple(cls),
                                   gt_png=str(root / "img" / f"{image_id}_gt.png")))
        # stride-4 map: a plain subsample of the full-resolution one (enough for tests)
        cam = high_res[:, 1::4, 1::4]
        cam = np.pad(cam, ((0, 0), (0, (h + 3) // 4 - cam.shape[1]), (0, (w + 3) // 4 - cam.shape[2])), mode="edge")
        if n not in not_stored:
            store.append((image_id, cls, cam, high_res))
    index = DatasetIndex(records, {split: [r.id for r in records]}, dataset="test",
                         classes=voc_class_list())
    index.save(root / "index.json")
    (root / "shard.txt").write_text("".join(f"{r.id}\n" for r in records))
    with CamStoreWriter(root / "cams.h5") as writer:
        for image_id, cls, cam, high_res in store:
            writer.add(image_id, cls, cam, high_res)
    return {"index": root / "index.json", "shard": root / "shard.txt", "cams": root / "cams.h5",
            "records": records}
