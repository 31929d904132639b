"""Sparse random walk against IRN's dense procedure, and the pseudo-label read-out (spec §5)."""

import numpy as np
import pytest
import torch

from pcam_core.irn.random_walk import (dense_propagate, disc_transition_weights, labels_from_propagated,
                                   propagate, propagate_batch)


def _inputs(seed, k_maps, h=20, w=20, dtype=torch.float32):
    """Random CAMs and a random boundary with one vertical and one horizontal ridge."""
    g = torch.Generator().manual_seed(seed)
    cams = torch.rand(k_maps, h, w, generator=g, dtype=dtype)
    boundary = 0.3 * torch.rand(h, w, generator=g, dtype=dtype)
    boundary[:, w // 2] = 0.9 + 0.1 * torch.rand(h, generator=g, dtype=dtype)
    boundary[h // 3, : w // 2] = 0.95
    return cams, boundary


@pytest.mark.parametrize("method", ["shift", "csr"])
@pytest.mark.parametrize("seed, k_maps", [(0, 1), (1, 2), (2, 3)])
def test_sparse_equals_dense(seed, k_maps, method):
    cams, boundary = _inputs(seed, k_maps)
    sparse = propagate(cams, boundary, beta=10, exp_times=8, method=method)
    dense = dense_propagate(cams.double(), boundary.double(), beta=10, exp_times=8)
    assert sparse.dtype == torch.float32 and sparse.shape == cams.shape
    error = (sparse.double() - dense).abs().max() / dense.abs().max()
    assert error < 1e-5, float(error)


def test_sparse_equals_dense_in_float64_tightly():
    cams, boundary = _inputs(3, 2, h=14, w=17, dtype=torch.float64)
    sparse = propagate(cams, boundary, beta=12, exp_times=8)
    dense = dense_propagate(cams, boundary, beta=12, exp_times=8)
    assert sparse.dtype == torch.float64
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)


def test_strong_walls_and_zero_seeds_match_dense():
    # Realistic magnitudes: 0.999 walls make a^beta ~1e-36 and the walk's tails subnormal in
    # float32; the CPU path flushes those (relative to the peak) without changing the result.
    h, w = 20, 20
    boundary = 0.02 * torch.rand(h, w, generator=torch.Generator().manual_seed(11))
    boundary[::7, :] = 0.999
    boundary[:, ::6] = 0.999
    cams = torch.zeros(2, h, w)
    cams[0, 2:5, 2:4] = 1.0
    cams[1, 9:12, 13:16] = 0.5
    dense = dense_propagate(cams.double(), boundary.double(), beta=12)
    for method in ("shift", "csr"):
        sparse = propagate(cams, boundary, beta=12, method=method)
        assert (sparse.double() - dense).abs().max() / dense.abs().max() < 1e-5


def test_flush_is_relative_to_the_peak():
    cams, boundary = _inputs(12, 2, 16, 16)
    reference = propagate(cams, boundary, beta=12)
    tiny = propagate(cams * 1e-30, boundary, beta=12)
    torch.testing.assert_close(tiny * 1e30, reference, rtol=1e-5, atol=1e-7 * float(reference.max()))


@pytest.mark.parametrize("h, w", [(1, 9), (9, 1), (1, 1), (3, 2), (4, 7), (11, 6)])
def test_any_grid_size(h, w):
    cams, boundary = _inputs(4, 2, h, w, dtype=torch.float64)
    dense = dense_propagate(cams, boundary, beta=10, exp_times=5)
    for method in ("shift", "csr"):
        sparse = propagate(cams, boundary, beta=10, exp_times=5, method=method)
        torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("exp_times", [0, 1, 3])
def test_exp_times_is_the_log2_of_the_step_count(exp_times):
    cams, boundary = _inputs(5, 1, 8, 9, dtype=torch.float64)
    weights, offsets = disc_transition_weights(boundary[None], beta=10)
    # explicit single steps with a dense transition matrix assembled from the weights
    h, w = boundary.shape
    trans = torch.zeros(h * w, h * w, dtype=torch.float64)
    for k, (dy, dx) in enumerate(offsets.tolist()):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    trans[(y + dy) * w + x + dx, y * w + x] += weights[0, k, y, x]
    v = (cams * (1 - boundary)).reshape(1, -1)
    for _ in range(2 ** exp_times):
        v = v @ trans
    torch.testing.assert_close(propagate(cams, boundary, 10, exp_times=exp_times).reshape(1, -1), v)
    torch.testing.assert_close(dense_propagate(cams, boundary, 10, exp_times=exp_times).reshape(1, -1), v)


def test_transition_is_column_stochastic_and_symmetric_in_w():
    _, boundary = _inputs(6, 1, 10, 12, dtype=torch.float64)
    weights, offsets = disc_transition_weights(boundary[None], beta=10)
    assert weights.shape == (1, 69, 10, 12)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 10, 12, dtype=torch.float64))
    assert (weights[0, 0] > 0).all()  # the self loop is always there


def test_mass_behaviour():
    # No boundary at all: every node's transition weights sum to 1 and W is symmetric, so the
    # total mass is conserved up to the degree weighting; a constant field stays constant.
    h, w = 12, 13
    boundary = torch.zeros(h, w, dtype=torch.float64)
    constant = torch.ones(1, h, w, dtype=torch.float64)
    out = propagate(constant, boundary, beta=10, exp_times=8)
    torch.testing.assert_close(out, constant)
    # A single seed spreads (non-negative, peak decreases) but a closed wall keeps it inside.
    boundary[:, 6] = 1.0
    seed = torch.zeros(1, h, w, dtype=torch.float64)
    seed[0, 5, 2] = 1.0
    out = propagate(seed, boundary, beta=10, exp_times=8)
    assert (out >= 0).all() and out.max() < 1
    assert (out[0, :, 6:] == 0).all()  # nothing crosses (or sits on) the wall
    assert (out[0, :, :6] > 0).all()  # 256 steps reach the whole left side
    # seeds on the boundary are damped by (1 - B)
    seed_on_wall = torch.zeros(1, h, w, dtype=torch.float64)
    seed_on_wall[0, 3, 6] = 1.0
    assert propagate(seed_on_wall, boundary, beta=10).abs().max() == 0


def test_batched_equals_per_image():
    cams_a, boundary_a = _inputs(7, 2, 9, 11)
    cams_b, boundary_b = _inputs(8, 2, 9, 11)
    cams = torch.stack([cams_a, cams_b])
    boundary = torch.stack([boundary_a, boundary_b])
    for method in ("shift", "csr"):
        out = propagate_batch(cams, boundary, beta=10, exp_times=6, method=method)
        torch.testing.assert_close(out[0], propagate(cams_a, boundary_a, 10, 6), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[1], propagate(cams_b, boundary_b, 10, 6), rtol=1e-5, atol=1e-6)


def test_input_checks():
    cams, boundary = _inputs(9, 2, 6, 6)
    with pytest.raises(ValueError):
        propagate(cams, boundary[:5], beta=10)
    with pytest.raises(ValueError):
        propagate(cams, boundary, beta=10, exp_times=-1)
    with pytest.raises(ValueError):
        propagate(cams, boundary, beta=10, method="dense")
    assert propagate(cams[:0], boundary, beta=10).shape == (0, 6, 6)


def test_labels_read_out():
    # Two maps on a 2x3 grid; keys are segmentation ids.
    propagated = torch.zeros(2, 2, 3)
    propagated[0, 0, 0] = 4.0  # strongest: normalised to 1
    propagated[1, 1, 2] = 2.0  # 0.5 after the global (not per-class) normalisation
    labels = labels_from_propagated(propagated, [3, 15], height=7, width=10, bg_threshold=0.3)
    assert labels.shape == (7, 10) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 3, 15}
    assert labels[0, 0] == 3 and labels[6, 9] == 15 and labels[6, 0] == 0
    # a threshold above the weaker class's normalised peak removes it: global normalisation
    labels = labels_from_propagated(propagated, [3, 15], height=7, width=10, bg_threshold=0.6)
    assert set(np.unique(labels)) == {0, 3}


def test_labels_ties_and_zero_maps_go_to_background():
    flat = torch.full((1, 3, 3), 5.0)  # normalised to exactly 1.0 everywhere
    assert (labels_from_propagated(flat, [7], 12, 12, bg_threshold=1.0) == 0).all()
    assert (labels_from_propagated(flat, [7], 12, 12, bg_threshold=0.5) == 7).all()
    assert (labels_from_propagated(torch.zeros(2, 3, 3), [1, 2], 10, 9, 0.25) == 0).all()
    assert (labels_from_propagated(torch.zeros(0, 3, 3), [], 10, 9, 0.25) == 0).all()


def test_labels_bilinear_upsample_is_align_corners_false():
    propagated = torch.tensor([[[0.0, 1.0]]])  # 1x2 grid -> 4x8 image
    labels = labels_from_propagated(propagated, [5], 4, 8, bg_threshold=0.5)
    # align_corners=False: output column c samples x = (c + 0.5) / 4 - 0.5, clamped; the value
    # crosses 0.5 exactly at x = 0.5 (c = 3.5), so columns 0..3 are background, 4..7 class 5.
    assert labels[0].tolist() == [0, 0, 0, 0, 5, 5, 5, 5]


def test_labels_end_to_end_subset_of_keys():
    cams, boundary = _inputs(10, 3, 13, 16)
    out = propagate(cams, boundary, beta=12)
    labels = labels_from_propagated(out, [2, 9, 20], height=50, width=61, bg_threshold=0.3)
    assert labels.shape == (50, 61)
    assert set(np.unique(labels)) <= {0, 2, 9, 20}
    with pytest.raises(ValueError):
        labels_from_propagated(out, [2, 9], 50, 61, 0.3)
    with pytest.raises(ValueError):
        labels_from_propagated(out, [0, 9, 20], 50, 61, 0.3)
    with pytest.raises(ValueError):
        labels_from_propagated(out, [2, 9, 20], 53, 61, 0.3)
