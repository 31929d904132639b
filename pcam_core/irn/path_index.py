"""IRNet's half-plane pair enumeration ("PathIndex") and boundary -> affinity (spec §4.4-4.6).

A pair (s, s+d) of stride-4 cells is scored by the strongest boundary on the straight path
between them: a(s, s+d) = 1 - max_{p in path(d)} B(s+p). Only half of the disc of offsets is
enumerated (each unordered pair once). Directions are grouped by path length, ascending, keeping
enumeration order within a group: IRN orders affinities, affinity labels and displacement
targets this way, so every consumer must use ``PathIndex.directions`` as the one order.

Affinities are computed with shifted slices of the boundary map (one view per path cell) rather
than IRN's flat ``index_select`` of every path cell, and the backward pass routes the gradient
through the stored argmax only (as max-pool does), so training keeps a uint8 argmax per pair
instead of 2,134 x 13,090 saved floats per 512 crop (spec §11.2).
"""

from __future__ import annotations

import math

import numpy as np
import torch

IGNORE_LABEL = 255


class PathIndex:
    """Directions, their path cells and the source region for one radius.

    Attributes (all in the shared direction order):
      directions: int64 (D, 2) array of (dy, dx).
      paths: list of D int64 (L_d, 2) arrays of path cells (dy, dx), sorted by descending
        |dy| + |dx| (stable), so ``paths[k][0]`` is the destination itself.
      path_lengths: int64 (D,) array, non-decreasing.
    """

    def __init__(self, radius: float):
        if radius <= 1:
            raise ValueError(f"radius must be > 1 to give any direction, got {radius}")
        self.radius = radius
        # Sources stay r_f cells away from the left/right/bottom borders so that every
        # destination s + d (|dx|, dy <= r_f) is inside the grid.
        self.radius_floor = int(math.ceil(radius)) - 1
        by_length: dict[int, list[tuple[tuple[int, int], np.ndarray]]] = {}
        for direction in self._enumerate_directions():
            cells = self._path_cells(direction)
            by_length.setdefault(len(cells), []).append((direction, cells))
        ordered = [item for length in sorted(by_length) for item in by_length[length]]
        self.directions = np.array([d for d, _ in ordered], dtype=np.int64).reshape(-1, 2)
        self.paths = [cells for _, cells in ordered]
        self.path_lengths = np.array([len(c) for c in self.paths], dtype=np.int64)

    def _enumerate_directions(self) -> list[tuple[int, int]]:
        """The half plane: (0, dx) for dx > 0, then dy > 0 with any dx; strict |d|^2 < r^2."""
        r = self.radius
        rf = self.radius_floor
        directions = [(0, dx) for dx in range(1, rf + 1) if dx * dx < r * r]
        for dy in range(1, rf + 1):
            for dx in range(-rf, rf + 1):
                if dy * dy + dx * dx < r * r:
                    directions.append((dy, dx))
        return directions

    @staticmethod
    def _path_cells(direction: tuple[int, int]) -> np.ndarray:
        """Integer cells of the box spanned by (0,0) and d at distance < 1 (strict) from the line."""
        dy, dx = direction
        length_sq = dy * dy + dx * dx
        cells = []
        for y in range(min(0, dy), max(0, dy) + 1):
            for x in range(min(0, dx), max(0, dx) + 1):
                # squared distance of (y, x) to the line through 0 and d, exact in integers
                if (dy * x - dx * y) ** 2 < length_sq:
                    cells.append((y, x))
        cells.sort(key=lambda c: -abs(c[0]) - abs(c[1]))  # stable: destination first
        return np.array(cells, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.directions)

    @property
    def max_path_length(self) -> int:
        return int(self.path_lengths.max())

    def source_region(self, h: int, w: int) -> tuple[slice, slice]:
        """Rows 0..h-r_f-1 and columns r_f..w-r_f-1 of an h x w grid, as slices."""
        rf = self.radius_floor
        if h - rf <= 0 or w - 2 * rf <= 0:
            raise ValueError(f"a {h}x{w} grid has no source cell for radius {self.radius} "
                             f"(needs h > {rf} and w > {2 * rf})")
        return slice(0, h - rf), slice(rf, w - rf)

    def num_sources(self, h: int, w: int) -> int:
        rows, cols = self.source_region(h, w)
        return (rows.stop - rows.start) * (cols.stop - cols.start)

    def pair_indices(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the sources (n_src,) and of their destinations (D, n_src)."""
        rows, cols = self.source_region(h, w)
        grid = np.arange(h * w, dtype=np.int64).reshape(h, w)
        src = grid[rows, cols].ravel()
        dst = src[None, :] + self.directions[:, 0:1] * w + self.directions[:, 1:2]
        return src, dst

    def path_cell_indices(self, h: int, w: int) -> list[np.ndarray]:
        """Per direction, flat indices (L_d, n_src) of its path cells seen from every source
        (IRN's gather layout; the affinity code does not need it, tests use it as reference)."""
        src, _ = self.pair_indices(h, w)
        return [src[None, :] + cells[:, 0:1] * w + cells[:, 1:2] for cells in self.paths]


class _PathMaxAffinity(torch.autograd.Function):
    """1 - max over path cells, with the gradient routed through the argmax cell only."""

    @staticmethod
    def forward(ctx, boundary: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
        batch, h, w = boundary.shape
        rows, cols = path_index.source_region(h, w)
        hs, ws = rows.stop, cols.stop - cols.start
        x0 = cols.start
        maxima, argmax = [], []
        for cells in path_index.paths:
            # one view per path cell; stacking <= 22 of them keeps the transient small
            stacked = torch.stack([boundary[:, dy:dy + hs, x0 + dx:x0 + dx + ws]
                                   for dy, dx in cells.tolist()])
            value, index = stacked.max(dim=0)
            maxima.append(value)
            argmax.append(index.to(torch.uint8))  # path lengths are <= 4r < 256
        out = 1 - torch.stack(maxima, dim=1).reshape(batch, len(path_index), hs * ws)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.stack(argmax, dim=1).reshape(batch, len(path_index), -1))
            ctx.path_index = path_index
            ctx.grid = (h, w)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (argmax,) = ctx.saved_tensors
        path_index: PathIndex = ctx.path_index
        h, w = ctx.grid
        batch = grad_out.shape[0]
        src, _ = path_index.pair_indices(h, w)
        src = torch.from_numpy(src).to(grad_out.device)
        grad = torch.zeros(batch, h * w, dtype=grad_out.dtype, device=grad_out.device)
        for k, cells in enumerate(path_index.paths):
            offsets = torch.from_numpy(cells[:, 0] * w + cells[:, 1]).to(grad_out.device)
            target = src[None, :] + offsets[argmax[:, k].long()]
            grad.scatter_add_(1, target, -grad_out[:, k])  # d(1 - max)/d(argmax cell) = -1
        return grad.view(batch, h, w), None


def affinity_from_boundary(boundary: torch.Tensor, path_index: PathIndex) -> torch.Tensor:
    """Affinities (B, D, n_src) = 1 - max of the boundary map (B, h, w) along each pair's path.

    Sources are the cells of ``path_index.source_region(h, w)`` in row-major order; directions
    follow ``path_index.directions``. Differentiable with respect to ``boundary``.
    """
    if boundary.dim() != 3:
        raise ValueError(f"boundary must be (B, h, w), got shape {tuple(boundary.shape)}")
    return _PathMaxAffinity.apply(boundary, path_index)


def _pil_nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Source index of each output pixel of a PIL NEAREST resize along one axis.

    Pillow (ImagingScaleAffine) starts at 0.5 * scale and adds the scale once per output pixel
    in double precision, truncating each position; an exact-rational formula differs from it
    at sizes such as 106 -> 27, so the accumulation is replicated step by step.
    """
    scale = size_in / size_out
    steps = np.full(size_out, scale, dtype=np.float64)
    steps[0] = scale * 0.5
    return np.minimum(np.add.accumulate(steps).astype(np.int64), size_in - 1)


def downsample_label(label: np.ndarray) -> np.ndarray:
    """Label map (H, W) -> (ceil(H/4), ceil(W/4)), identical to IRN's PIL NEAREST rescale by 1/4."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be 2-D, got shape {label.shape}")
    height, width = label.shape
    rows = _pil_nearest_indices(height, -(-height // 4))
    cols = _pil_nearest_indices(width, -(-width // 4))
    return label[np.ix_(rows, cols)]


def affinity_labels(label4, path_index: PathIndex) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair masks (bg_pos, fg_pos, neg), each float32 (D, n_src), from a stride-4 label map.

    A pair is valid when neither label is 255; bg_pos = both 0, fg_pos = both the same object
    class, neg = different classes (spec §4.6). Pairs touching a 255 are in none of the masks.
    """
    label4 = torch.as_tensor(np.asarray(label4))
    if label4.dim() != 2:
        raise ValueError(f"label map must be 2-D, got shape {tuple(label4.shape)}")
    label4 = label4.long()
    # Any class count: ids 0..254 are classes, 255 is void; only a non-uint8 value is wrong.
    bad = (label4 > IGNORE_LABEL) | (label4 < 0)
    if bad.any():
        raise ValueError(f"label map holds values outside 0..255: "
                         f"{torch.unique(label4[bad]).tolist()[:10]}")
    h, w = label4.shape
    src, dst = path_index.pair_indices(h, w)
    flat = label4.reshape(-1)
    from_label = flat[torch.from_numpy(src)][None, :]
    to_label = flat[torch.from_numpy(dst)]
    valid = (from_label != IGNORE_LABEL) & (to_label != IGNORE_LABEL)
    equal = from_label == to_label
    bg_pos = valid & equal & (from_label == 0)
    fg_pos = valid & equal & (from_label > 0)
    neg = valid & ~equal
    return bg_pos.float(), fg_pos.float(), neg.float()
