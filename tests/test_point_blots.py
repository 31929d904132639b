"""PMP point blots: the colour walk against a dense reference, the blot generator's invariants
(blots hold their clicks, stay in the image, are seeded), and the shard and scoring commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pcam_core.cli import main as pcam_main
from pcam_core.common.dataset_index import Click, DatasetIndex, ImageRecord
from pcam_core.common.label_png import read_label_png, write_label_png
from pcam_core.data.voc_reader import voc_class_list
from pcam_core.pmp.colour_walk import OFFSETS, transition_fields, visit_frequencies, walk_blobs
from pcam_core.pmp.point_blots import (BlotSettings, background_points, colour_histogram, image_rng,
                                       iou, kl_divergence, perturb, point_blots)

SETTINGS = dict(iterations=6, max_rotation=10.0, max_shift=0.2, walk_steps=8, beta=15.0,
                walk_threshold=0.03, kld_max=0.2, iou_min=0.1, bg_points_per_click=4,
                bg_min_distance=0.25, seed=0)


def two_squares(h=40, w=48, seed=0):
    """Grey noisy background with a red square (class 1) and a blue square (class 2)."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(120, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    rgb[5:17, 6:18] = (220, 30, 30)
    truth[5:17, 6:18] = 1
    rgb[22:36, 28:44] = (30, 40, 220)
    truth[22:36, 28:44] = 2
    return rgb, truth, [(10, 11, 1), (28, 35, 2)]


def dense_visits(fields, seed, steps):
    """Reference: the walk over the whole image, one step at a time, with explicit loops."""
    _, h, w = fields.shape
    p = np.zeros((h, w))
    p[seed] = 1.0
    visits = np.zeros((h, w))
    for _ in range(steps):
        visits += p
        moved = np.zeros((h, w))
        for r in range(h):
            for c in range(w):
                for k, (dr, dc) in enumerate(OFFSETS):
                    if p[r, c] and 0 <= r + dr < h and 0 <= c + dc < w:
                        moved[r + dr, c + dc] += p[r, c] * fields[k, r, c]
        p = moved
    return visits / steps


def test_transition_rows_sum_to_one_and_never_leave_the_image():
    rgb, _, _ = two_squares()
    fields = transition_fields(rgb, beta=15.0)
    assert np.allclose(fields.sum(axis=0), 1.0, atol=1e-6)
    up = [k for k, (dr, _) in enumerate(OFFSETS) if dr == -1]
    left = [k for k, (_, dc) in enumerate(OFFSETS) if dc == -1]
    assert np.all(fields[up][:, 0, :] == 0) and np.all(fields[left][:, :, 0] == 0)
    # a colour edge is hard to cross: from inside the red square, stepping out is rare
    assert fields[5, 10, 17] < 0.01 < fields[5, 10, 16]  # (0, +1): out of / inside the square


def test_windowed_walk_equals_the_dense_walk_near_a_corner():
    rgb, _, _ = two_squares(h=14, w=16)
    fields = transition_fields(rgb, beta=15.0)
    seeds = np.array([[1, 2], [12, 14]])
    visits, origins = visit_frequencies(fields, seeds, steps=5)
    for visit, (top, left), seed in zip(visits, origins, seeds):
        dense = dense_visits(fields, tuple(seed), 5)
        window = np.zeros_like(dense)
        size = visit.shape[0]
        for r in range(size):
            for c in range(size):
                if 0 <= top + r < 14 and 0 <= left + c < 16:
                    window[top + r, left + c] = visit[r, c]
                else:
                    assert visit[r, c] == 0  # no mass outside the image
        assert np.allclose(window, dense, atol=1e-6)
        assert visit.sum() == pytest.approx(1.0, abs=1e-5)  # mass is kept


def test_a_walk_blob_stays_in_its_colour_region_and_holds_its_seed():
    rgb, truth, clicks = two_squares()
    fields = transition_fields(rgb, beta=15.0)
    blobs = walk_blobs(fields, np.array([c[:2] for c in clicks]), steps=10, threshold=0.03)
    for blob, (r, c, cls) in zip(blobs, clicks):
        assert blob[r, c] and blob.sum() > 20
        assert np.all(truth[blob] == cls)


def test_kl_iou_and_histograms_by_hand():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0] = 255
    mask = np.array([[True, False], [True, False]])
    h = colour_histogram(rgb, mask)  # one pixel in bin 15, one in bin 0, per channel
    assert h.shape == (3, 16) and np.allclose(h.sum(axis=1), 1)
    assert h[0, 0] == pytest.approx(1.5 / 10) and h[0, 15] == pytest.approx(1.5 / 10)
    assert kl_divergence(h, h) == 0
    q = np.full((3, 16), 1 / 16)
    assert kl_divergence(h, q) == pytest.approx(float(np.sum(h[0] * np.log(h[0] * 16))))
    a = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [1, 0]], bool)
    assert iou(a, b) == pytest.approx(1 / 3) and iou(a, a) == 1.0


def test_perturb_rotates_about_the_centre_and_shifts():
    centre = np.array([[4.5, 4.5]])  # the centre of a 10 x 10 image (pixel centres)
    assert np.allclose(perturb(centre, (10, 10), 33.0, (0, 0)), centre)
    moved = perturb(np.array([[4.5, 9.5]]), (10, 10), 90.0, (1.0, -2.0))
    assert np.allclose(moved, [[4.5 - 5 + 1, 4.5 - 2]])


def test_background_points_keep_away_from_the_clicks():
    rng = np.random.default_rng(0)
    excluded = np.zeros((30, 40), bool)
    excluded[:, :5] = True
    points = background_points((30, 40), np.array([[15, 20]]), excluded, 8, 0.25, rng)
    assert len(points) == 8
    assert np.all((points[:, 0] - 15) ** 2 + (points[:, 1] - 20) ** 2 >= (0.25 * 30) ** 2)
    assert np.all(points[:, 1] >= 5)
    # no room: none, not an error
    assert len(background_points((30, 40), np.array([[15, 20]]), excluded, 8, 2.0, rng)) == 0


def _blots(rgb, clicks, seed=0, **overrides):
    settings = BlotSettings.from_params({**SETTINGS, **overrides})
    return point_blots(rgb, clicks, settings, image_rng(seed, "img"))


def test_blots_hold_their_clicks_stay_in_the_image_and_use_only_click_classes():
    rgb, truth, clicks = two_squares()
    result = _blots(rgb, clicks)
    label = result.label
    assert label.shape == truth.shape and label.dtype == np.uint8
    for r, c, cls in clicks:
        assert label[r, c] == cls
    assert set(np.unique(label)) <= {0, 1, 2, 255}
    assert {1, 2, 255} <= set(np.unique(label))  # unlabelled pixels stay 255
    assert result.object_points == 2 and result.background_points == 8
    labelled = label != 255
    assert (label[labelled] == truth[labelled]).mean() > 0.97  # the blots follow the squares
    assert (label == 0).sum() > 50  # background blots exist


def test_blots_are_deterministic_for_a_seed_and_differ_between_seeds():
    rgb, _, clicks = two_squares()
    first = _blots(rgb, clicks, seed=3).label
    assert np.array_equal(first, _blots(rgb, clicks, seed=3).label)
    assert not np.array_equal(first, _blots(rgb, clicks, seed=4).label)


def test_large_perturbations_leave_the_image_without_harm():
    rgb, _, clicks = two_squares()
    result = _blots(rgb, clicks, max_shift=3.0, max_rotation=180.0, iterations=8)
    assert result.candidates < 8 * 10  # moved points outside the image are skipped
    assert result.label.shape == rgb.shape[:2]
    assert all(result.label[r, c] == cls for r, c, cls in clicks)


def test_clicks_of_two_classes_on_one_pixel_leave_it_unlabelled():
    rgb, _, _ = two_squares()
    label = _blots(rgb, [(10, 11, 1), (10, 11, 2)], bg_points_per_click=0, iterations=0).label
    assert label[10, 11] == 255


def test_no_clicks_no_labels_and_bad_settings_are_named():
    rgb, _, _ = two_squares()
    assert np.all(_blots(rgb, []).label == 255)
    with pytest.raises(ValueError, match="lacks"):
        BlotSettings.from_params({"beta": 1.0})
    with pytest.raises(ValueError, match="walk_threshold"):
        BlotSettings.from_params({**SETTINGS, "walk_threshold": 0})
    with pytest.raises(ValueError, match="outside"):
        _blots(rgb, [(40, 0, 1)])


@pytest.fixture()
def square_dataset(tmp_path):
    """Three images of two squares: two train (masked) and one val, one train without clicks."""
    records = []
    for i in range(4):
        rgb, truth, clicks = two_squares(seed=i)
        Image.fromarray(rgb).save(tmp_path / f"img{i}.png")
        write_label_png(tmp_path / "masks" / f"img{i}.png", truth)
        click_list = () if i == 2 else tuple(Click(cls, c + 0.5, r + 0.5, 1) for r, c, cls in clicks)
        records.append(ImageRecord(id=f"img{i}", image=str(tmp_path / f"img{i}.png"), height=40,
                                   width=48, splits=("val",) if i == 3 else ("train", "train_aug"),
                                   classes=(1, 2), gt_classes=(1, 2), clicks=click_list,
                                   gt_png=str(tmp_path / "masks" / f"img{i}.png")))
    index = DatasetIndex(records, {"train": ["img0", "img1", "img2"], "train_aug": ["img0", "img1", "img2"],
                                   "val": ["img3"]}, dataset="demo", classes=voc_class_list())
    index.save(tmp_path / "index.json")
    (tmp_path / "shard.txt").write_text("img0\nimg1\nimg2\nimg3\n")
    return tmp_path


def test_shard_command_writes_one_png_per_clicked_image_and_scores_them(square_dataset):
    root = square_dataset
    out = root / "pseudo" / "1-of-1"
    pcam_main(["point-blots", "--index", str(root / "index.json"), "--shard", str(root / "shard.txt"),
               "--params", json.dumps(SETTINGS), "--out-dir", str(out), "--report", str(root / "r.json")])
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img1.png", "img3.png"]
    counts = json.loads((root / "r.json").read_text())
    assert counts["written"] == 3 and counts["without_clicks"] == 1 and counts["object_points"] == 6
    label = read_label_png(out / "img0.png")
    assert label[10, 11] == 1 and label[28, 35] == 2

    pcam_main(["score-blots", "--index", str(root / "index.json"), "--split", "train",
               "--blot-dirs", str(out), "--out-json", str(root / "s.json"), "--out-md", str(root / "s.md")])
    scores = json.loads((root / "s.json").read_text())
    assert scores["labelled_pixels_only"] and scores["pixel_accuracy"] > 0.97
    assert scores["images_without_blots"] == 1  # img2: no click, wholly unlabelled
    # coverage by hand: labelled pixels of img0 and img1 over all pixels of the three masks
    labelled = sum(int((read_label_png(out / f"img{i}.png") != 255).sum()) for i in (0, 1))
    assert scores["coverage"] == pytest.approx(labelled / (3 * 40 * 48), abs=1e-4)
    assert 0 < scores["object_coverage"] < 1 and "pixels the blots label" in (root / "s.md").read_text()
