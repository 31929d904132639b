"""Random walks on the image's colours: the blob a walk from one pixel covers.

The pixel graph is 8-connected. The weight between neighbours i and j is Grady's Gaussian
colour weight as scikit-image's ``random_walker`` scales it (Grady 2006, "Random walks for
image segmentation", the reference PMP cites for its walks):

    w_ij = exp(-beta * ||x_i - x_j||^2 / (10 * std(X)))      x in [0, 1]^3 (RGB / 255)

so the weights adapt to each image's contrast (beta 130 is scikit-image's default). A pixel
also keeps a self loop of weight 1 (a lazy walk: the grid graph is bipartite, and a walk
without it oscillates between the two colourings). The transition probability from i to a
neighbour j is w_ij / sum_k w_ik.

A walk of T steps started at a seed pixel: p_0 = e_seed, p_{t+1} = p_t P. Its visit
frequency v = (1/T) sum_{t<T} p_t is highest around the seed and falls off fast across
colour edges. The walk's blob is the 8-connected component, holding the seed, of the pixels
with v >= threshold * max(v), plus the seed itself.

A walk of T steps moves at most T pixels, so each seed is walked in a window of half-size
T + 1 around it (exact, not an approximation); all seeds of an image walk at once.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# The 8 neighbour offsets (drow, dcol) and the self loop first.
OFFSETS = ((0, 0), (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
# scikit-image's random_walker scales the squared colour differences by beta / (10 std(X)).
STD_SCALE = 10.0
EIGHT_CONNECTED = np.ones((3, 3), bool)


def _shifted(array: np.ndarray, dr: int, dc: int, fill: float = 0.0) -> np.ndarray:
    """``out[r, c] = array[r + dr, c + dc]`` over the last two axes (``fill`` outside)."""
    out = np.full_like(array, fill)
    h, w = array.shape[-2:]
    rows_out = slice(max(0, -dr), h - max(0, dr))
    cols_out = slice(max(0, -dc), w - max(0, dc))
    rows_in = slice(max(0, dr), h - max(0, -dr))
    cols_in = slice(max(0, dc), w - max(0, -dc))
    out[..., rows_out, cols_out] = array[..., rows_in, cols_in]
    return out


def transition_fields(rgb: np.ndarray, beta: float) -> np.ndarray:
    """(9, H, W) float32: ``P[k, r, c]`` = probability of stepping from (r, c) by ``OFFSETS[k]``.

    Rows sum to 1 over k; a step that would leave the image has probability 0.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    x = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    scale = beta / (STD_SCALE * max(float(x.std()), 1e-6))
    h, w = x.shape[:2]
    weights = np.zeros((len(OFFSETS), h, w), np.float64)
    weights[0] = 1.0
    inside = np.ones((h, w), np.float64)
    for k, (dr, dc) in enumerate(OFFSETS[1:], start=1):
        neighbour = np.stack([_shifted(x[..., ch], dr, dc) for ch in range(3)], axis=-1)
        valid = _shifted(inside, dr, dc)
        distance = ((x - neighbour) ** 2).sum(axis=-1)
        weights[k] = np.exp(-scale * distance) * valid
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


def visit_frequencies(fields: np.ndarray, seeds: np.ndarray, steps: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Visit frequencies of a ``steps``-step walk from each seed, in a window around it.

    ``seeds`` is (S, 2) int (row, col) inside the image. Returns ``(visits, origins)``:
    visits (S, 2R+1, 2R+1) with R = steps + 1, window s covering image rows
    ``origins[s, 0] .. + 2R`` and columns ``origins[s, 1] .. + 2R`` (parts outside the image
    hold 0).
    """
    if steps < 1:
        raise ValueError(f"a walk needs at least one step, got {steps}")
    seeds = np.asarray(seeds, np.int64).reshape(-1, 2)
    radius = steps + 1
    size = 2 * radius + 1
    padded = np.pad(fields, ((0, 0), (radius, radius), (radius, radius)))
    windows = np.stack([padded[:, r:r + size, c:c + size] for r, c in seeds]) if len(seeds) else \
        np.zeros((0, len(OFFSETS), size, size), np.float32)
    p = np.zeros((len(seeds), size, size), np.float32)
    p[:, radius, radius] = 1.0
    visits = np.zeros_like(p)
    for _ in range(steps):
        visits += p
        moved = np.zeros_like(p)
        for k, (dr, dc) in enumerate(OFFSETS):
            # mass at (r, c) moving by (dr, dc) lands on (r + dr, c + dc)
            moved += _shifted(p * windows[:, k], -dr, -dc)
        p = moved
    return visits / steps, seeds - radius


def walk_blobs(fields: np.ndarray, seeds: np.ndarray, steps: int, threshold: float
               ) -> list[np.ndarray]:
    """Each seed's blob as a full-size boolean mask (see the module docstring)."""
    h, w = fields.shape[1:]
    visits, origins = visit_frequencies(fields, seeds, steps)
    size = visits.shape[-1]
    blobs = []
    for visit, (top, left), (r, c) in zip(visits, origins, np.asarray(seeds).reshape(-1, 2)):
        above = visit >= threshold * visit.max()
        components, _ = ndimage.label(above, structure=EIGHT_CONNECTED)
        centre = size // 2
        own = components == components[centre, centre] if above[centre, centre] else \
            np.zeros_like(above)
        own[centre, centre] = True
        mask = np.zeros((h, w), bool)
        rows = slice(max(top, 0), min(top + size, h))
        cols = slice(max(left, 0), min(left + size, w))
        mask[rows, cols] = own[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
        blobs.append(mask)
    return blobs
