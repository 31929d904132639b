"""PathIndex counts (spec §13), boundary -> affinity, label downsampling and affinity labels."""

import numpy as np
import pytest
import torch
from PIL import Image

from pcam_core.irn.path_index import (PathIndex, affinity_from_boundary, affinity_labels,
                                  downsample_label)


@pytest.mark.parametrize("radius, directions, max_length, cells", [
    (5, 34, 11, 242),
    (10, 152, 22, 2134),
])
def test_path_index_counts(radius, directions, max_length, cells):
    index = PathIndex(radius)
    assert len(index) == directions
    assert index.path_lengths.min() == 2 and index.path_lengths.max() == max_length
    assert index.path_lengths.sum() == cells
    assert (np.diff(index.path_lengths) >= 0).all()  # grouped by length, ascending
    for (dy, dx), path in zip(index.directions, index.paths):
        assert dy * dy + dx * dx < radius * radius
        assert (dy > 0) or (dy == 0 and dx > 0)  # half plane
        assert tuple(path[0]) == (dy, dx)  # destination first
        assert {(0, 0), (dy, dx)} <= set(map(tuple, path.tolist()))


def test_full_neighbourhood_of_radius_5_is_69_cells():
    index = PathIndex(5)
    offsets = {tuple(d) for d in index.directions} | {(-dy, -dx) for dy, dx in index.directions}
    assert len(offsets) == 68 and (0, 0) not in offsets


def test_order_within_a_length_group_is_enumeration_order():
    index = PathIndex(5)
    enumeration = [(0, dx) for dx in range(1, 5)] + [
        (dy, dx) for dy in range(1, 5) for dx in range(-4, 5) if dy * dy + dx * dx < 25]
    for length in np.unique(index.path_lengths):
        group = [tuple(d) for d, n in zip(index.directions.tolist(), index.path_lengths) if n == length]
        assert group == [d for d in enumeration if d in group]


def test_hand_checked_paths():
    index = PathIndex(5)
    paths = {tuple(d): {tuple(c) for c in p.tolist()} for d, p in zip(index.directions, index.paths)}
    assert paths[(0, 1)] == {(0, 0), (0, 1)}
    assert paths[(0, 3)] == {(0, 0), (0, 1), (0, 2), (0, 3)}
    assert paths[(1, 1)] == {(0, 0), (0, 1), (1, 0), (1, 1)}  # |off-line cells| = 1/sqrt(2) < 1
    # (2, 1): the line passes (1, 0.5); cells (1,0) and (1,1) are at distance 1/sqrt(5) < 1
    assert paths[(2, 1)] == {(0, 0), (1, 0), (1, 1), (2, 1), (0, 1), (2, 0)}
    assert paths[(2, -1)] == {(0, 0), (1, 0), (1, -1), (2, -1), (0, -1), (2, 0)}


def test_sources():
    assert PathIndex(10).num_sources(128, 128) == 13090
    rows, cols = PathIndex(5).source_region(20, 30)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 16, 4, 26)
    with pytest.raises(ValueError):
        PathIndex(5).source_region(4, 30)


def test_pair_destinations_stay_inside_the_grid():
    index = PathIndex(10)
    src, dst = index.pair_indices(37, 41)
    assert dst.shape == (152, src.size) and dst.min() >= 0 and dst.max() < 37 * 41
    # no wrap-around across rows: destination columns equal source column + dx
    assert ((dst % 41) - (src % 41)[None] == index.directions[:, 1:2]).all()


def _gather_reference(boundary, index):
    """IRN's formulation: gather every path cell by flat index, max over the path."""
    batch, h, w = boundary.shape
    flat = boundary.reshape(batch, -1)
    out = [1 - flat[:, torch.from_numpy(cells)].max(dim=1).values
           for cells in index.path_cell_indices(h, w)]
    return torch.stack(out, dim=1)


def test_affinity_matches_gather_reference():
    torch.manual_seed(0)
    index = PathIndex(5)
    boundary = torch.rand(2, 13, 17)
    aff = affinity_from_boundary(boundary, index)
    assert aff.shape == (2, 34, index.num_sources(13, 17))
    torch.testing.assert_close(aff, _gather_reference(boundary, index), rtol=0, atol=0)


def test_wall_blocks_affinity():
    index = PathIndex(5)
    h, w = 12, 16
    boundary = torch.zeros(1, h, w)
    boundary[0, :, 8] = 1.0  # a vertical wall at column 8
    aff = affinity_from_boundary(boundary, index)[0]
    src, dst = index.pair_indices(h, w)
    src_col = src % w
    dst_col = dst % w
    # a pair is blocked iff its path meets column 8: one endpoint on it, or the two on both sides
    touches = (src_col[None] == 8) | (dst_col == 8) | (
        (np.minimum(src_col[None], dst_col) < 8) & (np.maximum(src_col[None], dst_col) > 8))
    assert touches.any() and (~touches).any()
    assert (aff[torch.from_numpy(touches)] == 0).all()
    assert (aff[torch.from_numpy(~touches)] == 1).all()


def test_affinity_gradient_goes_through_the_path_maximum():
    torch.manual_seed(1)
    index = PathIndex(5)
    boundary = torch.rand(2, 10, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: affinity_from_boundary(b, index), (boundary,))
    # same gradient as autograd through the gather reference (max routes to one cell)
    weights = torch.rand(2, 34, index.num_sources(10, 11), dtype=torch.float64)
    (g1,) = torch.autograd.grad((affinity_from_boundary(boundary, index) * weights).sum(), boundary)
    (g2,) = torch.autograd.grad((_gather_reference(boundary, index) * weights).sum(), boundary)
    torch.testing.assert_close(g1, g2)


def test_no_grad_saves_nothing_and_works():
    index = PathIndex(10)
    with torch.no_grad():
        aff = affinity_from_boundary(torch.rand(1, 32, 32), index)
    assert aff.shape == (1, 152, index.num_sources(32, 32)) and not aff.requires_grad


@pytest.mark.parametrize("height, width", [(512, 512), (500, 375), (106, 130), (7, 5), (1, 1), (281, 339)])
def test_downsample_label_matches_pillow(height, width):
    rng = np.random.default_rng(height * 1000 + width)
    label = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(label).resize(
        (-(-width // 4), -(-height // 4)), Image.NEAREST))
    out = downsample_label(label)
    assert out.shape == (-(-height // 4), -(-width // 4))
    np.testing.assert_array_equal(out, expected)


def test_downsample_label_of_512_is_the_block_centre_grid():
    label = np.arange(512 * 512, dtype=np.int64).reshape(512, 512) % 251
    np.testing.assert_array_equal(downsample_label(label), label[2::4, 2::4])


def test_affinity_labels_hand_counted():
    # radius 2: enumeration (0,1), (1,-1), (1,0), (1,1); path lengths 2, 4, 2, 4, so grouping by
    # length moves (1,0) forward. r_f = 1; 3x4 grid -> sources rows 0..1, columns 1..2: 16 pairs.
    index = PathIndex(2)
    assert [tuple(d) for d in index.directions] == [(0, 1), (1, 0), (1, -1), (1, 1)]
    label = np.array([[0, 0, 1, 1],
                      [0, 255, 1, 1],
                      [0, 0, 2, 1]], dtype=np.uint8)
    bg, fg, neg = affinity_labels(label, index)
    assert bg.shape == fg.shape == neg.shape == (4, 4) and bg.dtype == torch.float32
    # Sources in row-major order: (0,1)=0, (0,2)=1, (1,1)=255, (1,2)=1.
    # Direction (0,1):  0->1 neg, 1->1 fg, 255 ignored, 1->1 fg
    # Direction (1,0):  0->255 ign, 1->1 fg, 255 ign, 1->2 neg
    # Direction (1,-1): 0->0 bg, 1->255 ign, 255 ign, 1->0 neg
    # Direction (1,1):  0->1 neg, 1->1 fg, 255 ign, 1->1 fg
    expected_bg = [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    expected_fg = [[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]]
    expected_neg = [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]]
    assert bg.tolist() == expected_bg
    assert fg.tolist() == expected_fg
    assert neg.tolist() == expected_neg
    assert int(bg.sum() + fg.sum() + neg.sum()) == 16 - 6  # 6 pairs touch a 255


def test_affinity_labels_reject_unknown_values():
    with pytest.raises(ValueError, match="outside"):
        affinity_labels(np.full((5, 5), 300, np.int64), PathIndex(2))
