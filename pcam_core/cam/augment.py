"""Click-aware training augmentation for the CAM network, and its Dataset (spec §1.5).

IRN's classification augmentation, in IRN's order: random long-side resize (bicubic),
ImageNet normalisation, horizontal flip (p = 0.5), random crop (IRN ``random_crop``: crop
when the axis is longer than the crop, else paste at a random offset into a 0-filled canvas,
i.e. the mean colour after normalisation). Clicks follow every step as integer pixels:

* resize: x' = floor((x + 0.5) * W'/W), the pixel whose centre is nearest to the mapped
  centre (= round((x+0.5)W'/W - 0.5) of the spec, and PIL's pixel-centre convention);
* flip: x' = W' - 1 - x';
* crop: x'' = x' - img_left + cont_left; clicks outside the copied region are dropped.

The GT mask (``pcam_full`` only) follows with nearest resize and 255 (void) fill.

Randomness is per sample and comes from a seed the sampler hands out with the index
(``ResumableBatchSampler``), so a resumed run sees exactly the batches and crops an
uninterrupted run would, whatever the number of DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pcam_core.common.dataset_index import ImageRecord
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.image_io import ImageReading, normalize, read_rgb, resize_label, resize_rgb, to_chw_tensor


# ----------------------------------------------------------------------------- point maps
def clicks_to_pixels(record: ImageRecord) -> np.ndarray:
    """(N, 3) int64 rows (x, y, cls) of a record's clicks at their pixel hit (int(x), int(y))."""
    rows = [(int(c.x), int(c.y), c.cls) for c in record.clicks
            if 0 <= c.x < record.width and 0 <= c.y < record.height]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def resize_points(points: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Pixel-centre mapping of integer pixels under a resize from src_hw to dst_hw."""
    out = points.copy()
    (h0, w0), (h1, w1) = src_hw, dst_hw
    out[:, 0] = np.clip(np.floor((points[:, 0] + 0.5) * w1 / w0), 0, w1 - 1)
    out[:, 1] = np.clip(np.floor((points[:, 1] + 0.5) * h1 / h0), 0, h1 - 1)
    return out


def flip_points(points: np.ndarray, width: int) -> np.ndarray:
    out = points.copy()
    out[:, 0] = width - 1 - points[:, 0]
    return out


@dataclass(frozen=True)
class CropBox:
    """IRN's crop box: rows/cols [img_top, img_top+ch) x [img_left, img_left+cw) of the image
    go to [cont_top, cont_top+ch) x [cont_left, cont_left+cw) of the crop canvas."""

    cont_top: int
    cont_left: int
    img_top: int
    img_left: int
    ch: int
    cw: int


def random_crop_box(height: int, width: int, crop: int, rng: np.random.Generator) -> CropBox:
    """IRN ``get_random_crop_box``: random image offset when longer, random paste offset when shorter."""
    def axis(size: int) -> tuple[int, int]:
        space = size - crop
        if space > 0:
            return 0, int(rng.integers(0, space + 1))  # (cont offset, img offset)
        return int(rng.integers(0, -space + 1)), 0

    cont_top, img_top = axis(height)
    cont_left, img_left = axis(width)
    return CropBox(cont_top, cont_left, img_top, img_left, min(crop, height), min(crop, width))


def crop_array(array: np.ndarray, box: CropBox, crop: int, fill: float) -> np.ndarray:
    out = np.full((crop, crop, *array.shape[2:]), fill, dtype=array.dtype)
    out[box.cont_top:box.cont_top + box.ch, box.cont_left:box.cont_left + box.cw] = \
        array[box.img_top:box.img_top + box.ch, box.img_left:box.img_left + box.cw]
    return out


def crop_points(points: np.ndarray, box: CropBox) -> np.ndarray:
    """Move points into the crop canvas; drop those outside the copied image region."""
    x, y = points[:, 0], points[:, 1]
    keep = ((x >= box.img_left) & (x < box.img_left + box.cw)
            & (y >= box.img_top) & (y < box.img_top + box.ch))
    out = points[keep].copy()
    out[:, 0] += box.cont_left - box.img_left
    out[:, 1] += box.cont_top - box.img_top
    return out


@dataclass
class Augmented:
    image: np.ndarray  # float32 (crop, crop, 3), normalised, 0 outside the pasted image
    points: np.ndarray  # int64 (N, 3) (x, y, cls) in crop pixels
    mask: np.ndarray | None  # uint8 (crop, crop), 255 outside the pasted image


def augment(rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator, crop: int,
            resize_long: Sequence[int], mask: np.ndarray | None = None) -> Augmented:
    """Spec §1.5 on one sample: resize (bicubic) -> normalise -> hflip -> random crop."""
    h0, w0 = rgb.shape[:2]
    long_side = int(rng.integers(int(resize_long[0]), int(resize_long[1]) + 1))  # both ends inclusive
    scale = long_side / max(h0, w0)
    # IRN sizes with int(np.round(.)) (half to even); keep it for parity.
    h1, w1 = max(1, int(np.round(h0 * scale))), max(1, int(np.round(w0 * scale)))
    image = normalize(resize_rgb(rgb, h1, w1))
    points = resize_points(points, (h0, w0), (h1, w1))
    if mask is not None:
        mask = resize_label(mask, h1, w1)
    if rng.random() < 0.5:
        image = image[:, ::-1]
        points = flip_points(points, w1)
        if mask is not None:
            mask = mask[:, ::-1]
    box = random_crop_box(h1, w1, crop, rng)
    image = crop_array(image, box, crop, 0.0)
    points = crop_points(points, box)
    if mask is not None:
        mask = crop_array(mask, box, crop, IGNORE_INDEX)
    return Augmented(image, points, mask)


# ----------------------------------------------------------------------------- dataset
def label_vector(classes: Sequence[int], num_object_classes: int) -> np.ndarray:
    """N-dim {0,1} image label; segmentation id k -> index k - 1 (spec §0.2)."""
    vector = np.zeros(num_object_classes, dtype=np.float32)
    for cls in classes:
        vector[cls - 1] = 1.0
    return vector


class CamTrainDataset(Dataset):
    """Augmented training samples of ``DatasetIndex.training_records()``.

    Item key: ``(index, seed)`` from ``ResumableBatchSampler`` (a bare int uses seed = index).
    Returns a dict: ``image`` (3, crop, crop) float32, ``label`` (N,), ``points``
    (max_points, 3) float32 padded rows (x, y, cls), ``count`` the valid rows, and with
    ``with_mask`` the augmented GT ``mask`` (crop, crop) int64 (255 = void or padding; all
    255 when the image has no mask).
    """

    def __init__(self, records: Sequence[ImageRecord], crop_size: int, resize_long: Sequence[int],
                 num_object_classes: int, with_mask: bool = False, reading: ImageReading | None = None):
        if not records:
            raise ValueError("no training images (train_aug images with at least one click)")
        self.records = list(records)
        self.crop = int(crop_size)
        self.resize_long = (int(resize_long[0]), int(resize_long[1]))
        if self.resize_long[0] > self.resize_long[1] or self.resize_long[0] < 1:
            raise ValueError(f"resize_long must be [low, high] with 1 <= low <= high, got {resize_long}")
        self.with_mask = with_mask
        self.num_object_classes = int(num_object_classes)
        self.reading = reading
        # pcam_full: images with neither a VOC PNG nor an SBD mask give no points (counted).
        self.without_mask = sum(1 for r in self.records if not (r.gt_png or r.gt_mat)) if with_mask else 0
        self.max_points = max(1, max(len(r.clicks) for r in self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, key)
        record = self.records[index]
        rgb = read_rgb(record.image, self.reading)
        if rgb.shape[:2] != (record.height, record.width):
            raise ValueError(f"{record.image}: image is {rgb.shape[1]}x{rgb.shape[0]} but the index says "
                             f"{record.width}x{record.height}; rebuild the index")
        mask = None
        if self.with_mask:
            mask = record.load_gt_mask()
            if mask is None:
                mask = np.full(rgb.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        out = augment(rgb, clicks_to_pixels(record), np.random.default_rng(seed), self.crop,
                      self.resize_long, mask)
        points = np.zeros((self.max_points, 3), dtype=np.float32)
        points[:len(out.points)] = out.points
        item = {
            "image": to_chw_tensor(out.image),
            "label": torch.from_numpy(label_vector(record.classes, self.num_object_classes)),
            "points": torch.from_numpy(points),
            "count": torch.tensor(len(out.points), dtype=torch.int64),
        }
        if self.with_mask:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(out.mask).astype(np.int64))
        return item


def mask_to_points(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``pcam_full``: every non-void pixel of each (B, H, W) mask as a point (x, y, cls).

    Background pixels become cls-0 points (target 0 for every class of C'). Returns padded
    (B, P, 3) float points and (B,) counts, P = the largest count in the batch.
    """
    batch = masks.shape[0]
    coords = [torch.nonzero(m != IGNORE_INDEX) for m in masks]  # (N, 2) rows (y, x)
    counts = torch.tensor([len(c) for c in coords], dtype=torch.int64, device=masks.device)
    points = torch.zeros((batch, max(1, int(counts.max()) if batch else 1), 3),
                         dtype=torch.float32, device=masks.device)
    for b, yx in enumerate(coords):
        if len(yx):
            points[b, :len(yx), 0] = yx[:, 1].float()
            points[b, :len(yx), 1] = yx[:, 0].float()
            points[b, :len(yx), 2] = masks[b][yx[:, 0], yx[:, 1]].float()
    return points, counts


class ResumableBatchSampler(Sampler):
    """Batches for steps ``start_step .. total_steps - 1``, reshuffled every epoch, drop_last.

    Epoch e's order is a permutation drawn from (seed, e); each sample's augmentation seed
    from (seed, e, position). Both depend only on the step, so a run resumed at step k sees
    the very batches the uninterrupted run saw from step k, and one DataLoader iterator
    (one set of workers) serves the whole run.
    """

    def __init__(self, num_samples: int, batch_size: int, total_steps: int, seed: int, start_step: int = 0):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.steps_per_epoch = num_samples // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch size {batch_size} is larger than the {num_samples} training images")
        self.total_steps = total_steps
        self.seed = seed
        self.start_step = start_step

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        for step in range(self.start_step, self.total_steps):
            epoch, position = divmod(step, self.steps_per_epoch)
            if epoch_cache is None or epoch_cache[0] != epoch:
                rng = np.random.default_rng([self.seed, epoch])
                order = rng.permutation(self.num_samples)
                seeds = rng.integers(0, 2**63 - 1, size=self.num_samples)
                epoch_cache = (epoch, order, seeds)
            _, order, seeds = epoch_cache
            lo = position * self.batch_size
            yield [(int(order[i]), int(seeds[i])) for i in range(lo, lo + self.batch_size)]


def steps_for(num_samples: int, batch_size: int, epochs: int) -> int:
    """Total optimiser steps: epochs x floor(N / batch) (drop_last, as IRN)."""
    return int(epochs) * (num_samples // int(batch_size))

