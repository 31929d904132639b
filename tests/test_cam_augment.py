"""Clicks follow resize / flip / crop exactly as the (nearest-resized) masks do (spec §1.5)."""

import numpy as np
import pytest
import torch

from pcam_core.cam.augment import (CamTrainDataset, ResumableBatchSampler, augment, crop_array, crop_points,
                                   mask_to_points, random_crop_box, resize_points, steps_for)
from pcam_core.common.dataset_index import DatasetIndex
from pcam_core.common.image_io import resize_label

from cam_tiny_data import make_tiny_index


def _one_hot_masks(points, hw):
    masks = []
    for x, y, _ in points:
        m = np.zeros(hw, np.uint8)
        m[y, x] = 1
        masks.append(m)
    return masks


@pytest.mark.parametrize("dst", [(37, 53), (64, 90), (20, 20)])
def test_resize_points_hit_the_nearest_resized_pixel(dst):
    rng = np.random.default_rng(0)
    hw = (20, 30)
    points = np.stack([rng.integers(0, 30, 25), rng.integers(0, 20, 25), np.ones(25, int)], 1)
    moved = resize_points(points, hw, dst)
    if dst[0] >= hw[0] and dst[1] >= hw[1]:
        # Upscaling: the one-hot pixel becomes a block; the click must land inside it.
        for (x, y, _), m in zip(moved, _one_hot_masks(points, hw)):
            assert resize_label(m, *dst)[y, x] == 1
    else:
        # Downscaling: a 3x3 blob around the click must still cover the moved click.
        for (x0, y0, _), (x, y, _) in zip(points, moved):
            m = np.zeros(hw, np.uint8)
            m[max(0, y0 - 1):y0 + 2, max(0, x0 - 1):x0 + 2] = 1
            assert resize_label(m, *dst)[y, x] == 1


def test_full_augmentation_keeps_clicks_on_their_object():
    """Random objects + clicks, many random augmentations: every surviving click sits on a
    mask pixel of its own class in the identically augmented GT mask."""
    rng = np.random.default_rng(1)
    hw = (60, 80)
    checked = dropped = 0
    for trial in range(40):
        mask = np.zeros(hw, np.uint8)
        points = []
        for cls in (3, 7, 12):
            top, left = rng.integers(0, hw[0] - 6), rng.integers(0, hw[1] - 6)
            mask[top:top + 6, left:left + 6] = cls
            points.append((left + 2 + rng.integers(0, 2), top + 2 + rng.integers(0, 2), cls))
        points = np.asarray(points, np.int64)
        keep = [mask[y, x] == c for x, y, c in points]
        points = points[keep]
        rgb = rng.integers(0, 255, size=(*hw, 3), dtype=np.uint8)
        out = augment(rgb, points, np.random.default_rng(trial), crop=48, resize_long=(50, 120), mask=mask)
        assert out.image.shape == (48, 48, 3) and out.mask.shape == (48, 48)
        for x, y, cls in out.points:
            assert 0 <= x < 48 and 0 <= y < 48
            assert out.mask[y, x] == cls
            checked += 1
        dropped += len(points) - len(out.points)
    assert checked > 30 and dropped > 0  # both paths were exercised


def test_flip_then_crop_exact_and_dropped_when_cropped_away():
    mask = np.zeros((10, 12), np.uint8)
    mask[2, 9] = 5
    points = np.array([[9, 2, 5]])
    flipped = mask[:, ::-1]
    from pcam_core.cam.augment import flip_points

    fp = flip_points(points, 12)
    assert flipped[fp[0, 1], fp[0, 0]] == 5
    rng = np.random.default_rng(0)
    for _ in range(30):
        box = random_crop_box(10, 12, 6, rng)
        cm = crop_array(flipped, box, 6, 255)
        cp = crop_points(fp, box)
        if (cm == 5).any():
            assert len(cp) == 1 and cm[cp[0, 1], cp[0, 0]] == 5
        else:
            assert len(cp) == 0
    # An image smaller than the crop is pasted: fill 0 (image) / 255 (mask), point moves with it.
    box = random_crop_box(10, 12, 16, np.random.default_rng(3))
    cm = crop_array(mask, box, 16, 255)
    cp = crop_points(points, box)
    assert cm[cp[0, 1], cp[0, 0]] == 5 and (cm == 255).sum() == 16 * 16 - 10 * 12


def test_dataset_items_and_resumable_sampler(tmp_path):
    index = DatasetIndex.load(make_tiny_index(tmp_path, num_train=5, num_val=1))
    records = index.training_records()
    ds = CamTrainDataset(records, 32, (30, 40), 20, with_mask=True)
    sampler = ResumableBatchSampler(len(ds), 2, steps_for(len(ds), 2, 3), seed=0)
    batches = list(sampler)
    assert len(batches) == 6 and all(len(b) == 2 for b in batches)
    assert list(ResumableBatchSampler(len(ds), 2, 6, seed=0, start_step=4)) == batches[4:]
    item = ds[batches[0][0]]
    again = ds[batches[0][0]]
    assert item["image"].shape == (3, 32, 32) and item["label"].shape == (20,)
    torch.testing.assert_close(item["image"], again["image"])  # deterministic per (index, seed)
    n = int(item["count"])
    mask = item["mask"]
    for x, y, cls in item["points"][:n].long().tolist():
        assert mask[y, x] == cls
    pts, counts = mask_to_points(mask[None])
    assert int(counts[0]) == int((mask != 255).sum())
    x, y, cls = pts[0, 0].long().tolist()
    assert mask[y, x] == cls
