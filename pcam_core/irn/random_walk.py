"""IRNet's semantic random walk (spec §5): boundary-aware propagation of stride-4 CAMs.

The transition matrix T over the h*w stride-4 cells is built from affinities
a(i, j) = 1 - max_{p in path} B(p) for every offset in the disc 0 < |delta|^2 < r^2 (68 offsets
at r = 5) plus a self loop a = 1; W = a^beta; T is column-normalised (the column sum includes the
self loop). The seeds v0 = cams * (1 - B) are propagated as v0 . T^(2^exp_times).

``propagate`` is the production form (§5.6): because W is symmetric and T column-stochastic,
one step v <- v.T is a normalised local average over the 69-cell disc, so exactly 2^exp_times
such steps reproduce IRN's repeated squaring at ~2*69*n*K FLOPs per step and ~69*n floats of
memory, instead of 16*n^3 FLOPs and several dense n x n matrices (7e13 FLOPs and 1 GiB per
matrix at a 512^2 image). ``dense_propagate`` is IRN's dense procedure, kept for tests only.

Two step implementations give the same numbers:

* ``shift``: 69 shifted multiply-adds on a zero-bordered (B, K, h+2r_f, w+2r_f) buffer. Fastest
  on CPU: at 128x128, K = 3, one thread, 0.39 s against 0.91 s for CSR SpMM
  (benchmarks/random_walk.py); an index gather (K, n, 69) per step took 2.5-6 s in a trial.
  Batching does not help on CPU (the per-image weights fall out of cache), so call it per image.
* ``csr``: one sparse CSR (B*n x B*n, block diagonal, <= 69 non-zeros per row) times dense
  (B*n, K) product per step: 256 kernel calls per batch instead of 256*69, hence the default on
  CUDA, where per-call launch overhead dominates at these sizes (a choice not yet timed on a
  GPU: run the benchmark there, it compares both).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from pcam_core.irn.path_index import PathIndex, affinity_from_boundary
from pcam_core.common.class_list import MAX_OBJECT_CLASSES

METHODS = ("auto", "shift", "csr")


def _check_inputs(cams: torch.Tensor, boundary: torch.Tensor, exp_times: int, batched: bool):
    cam_dims = 4 if batched else 3
    if cams.dim() != cam_dims or boundary.dim() != cam_dims - 1:
        shape = "(B, K, h, w) and (B, h, w)" if batched else "(K, h, w) and (h, w)"
        raise ValueError(f"cams and boundary must be {shape}, got {tuple(cams.shape)} and "
                         f"{tuple(boundary.shape)}")
    if cams.shape[:-3] + cams.shape[-2:] != boundary.shape:
        raise ValueError(f"cams {tuple(cams.shape)} and boundary {tuple(boundary.shape)} "
                         "disagree in batch or grid size")
    if int(exp_times) != exp_times or exp_times < 0:
        raise ValueError(f"exp_times must be a non-negative integer, got {exp_times}")


def _flush_level(dtype: torch.dtype) -> float:
    """Magnitude below which weights and (peak-normalised) maps are set to 0 on CPU.

    Real boundary maps reach 0.999, so a^beta falls to ~1e-36 with beta = 12 and the far tails
    of the walk sink below float32's smallest normal (1.2e-38). x86 CPUs handle such subnormal
    operands and results in microcode, measured 3x slower for the whole walk at 128x128
    (torch.set_flush_denormal only affects the calling thread, not the intra-op pool). With
    every factor at least sqrt(tiny) * 16 (1.7e-18 in float32) no product is subnormal; what is
    dropped is < 1e-17 of the peak, far below float32 resolution.
    """
    return float(np.sqrt(torch.finfo(dtype).tiny)) * 16


def _work_dtype(cams: torch.Tensor) -> torch.dtype:
    """At least float32: 256 averaging steps in float16/bfloat16 would lose the tails."""
    return torch.promote_types(cams.dtype, torch.float32)


def disc_transition_weights(boundary: torch.Tensor, beta: float, radius: float = 5
                            ) -> tuple[torch.Tensor, np.ndarray]:
    """Per-node transition weights over the disc of offsets.

    Returns ``(weights, offsets)``: ``offsets`` int64 (N, 2) = self, the PathIndex half plane,
    then its mirror image (N = 69 at r = 5); ``weights`` (B, N, h, w) with
    weights[b, k, y, x] = T((y, x) + offsets[k] -> (y, x)) = W / column sum, 0 where the
    neighbour is outside the image. Each node's weights sum to 1.
    """
    index = PathIndex(radius)
    rf = index.radius_floor
    batch, h, w = boundary.shape
    # Pad right, left and bottom with 1.0 so that the source region of the padded grid is the
    # whole image; pairs whose destination falls in the padding are masked out below.
    padded = F.pad(boundary, (rf, rf, 0, rf), value=1.0)
    with torch.no_grad():
        aff = affinity_from_boundary(padded, index).view(batch, len(index), h, w)
    # 1 - max(B) lies in [0, 1] for a boundary in [0, 1]; the clamp keeps a^beta real for a
    # non-integer beta if a network ever returns values a rounding error outside.
    forward = aff.clamp(0, 1) ** beta
    dirs = index.directions
    ys = torch.arange(h, device=boundary.device)[:, None]
    xs = torch.arange(w, device=boundary.device)[None, :]
    for k, (dy, dx) in enumerate(dirs.tolist()):
        inside = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)  # dy >= 0 in the half plane
        forward[:, k] *= inside
    # The mirrored offset -d at node j is the pair (j - d) -> j, whose weight was computed at
    # source j - d: shift the forward map by +d (zeros where j - d leaves the image).
    shifted = F.pad(forward, (rf, rf, rf, rf))
    backward = torch.stack([shifted[:, k, rf - dy:rf - dy + h, rf - dx:rf - dx + w]
                            for k, (dy, dx) in enumerate(dirs.tolist())], dim=1)
    weights = torch.cat([torch.ones_like(forward[:, :1]), forward, backward], dim=1)
    weights = weights / weights.sum(dim=1, keepdim=True)  # >= 1 thanks to the self loop
    offsets = np.concatenate([np.zeros((1, 2), np.int64), dirs, -dirs])
    return weights, offsets


def _run_shift(v: torch.Tensor, weights: torch.Tensor, offsets: np.ndarray, steps: int,
               flush: float) -> torch.Tensor:
    batch, k_maps, h, w = v.shape
    pad = int(np.abs(offsets).max())
    buffer = v.new_zeros(batch, k_maps, h + 2 * pad, w + 2 * pad)  # border stays 0
    interior = buffer[:, :, pad:pad + h, pad:pad + w]
    out = torch.empty_like(v)
    planes = [weights[:, k, None] for k in range(len(offsets))]  # (B, 1, h, w), broadcast over K
    windows = [buffer[:, :, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
               for dy, dx in offsets.tolist()]
    for _ in range(steps):
        interior.copy_(v)
        torch.mul(planes[0], windows[0], out=out)
        for plane, window in zip(planes[1:], windows[1:]):
            out.addcmul_(plane, window)
        if flush:
            out.masked_fill_(out.abs() < flush, 0)
        v, out = out, v
    return v


def _transition_csr(weights: torch.Tensor, offsets: np.ndarray) -> torch.Tensor:
    """Block-diagonal CSR matrix M with (M @ V)[j] = sum_k weights[k, j] * V[j + offsets[k]]."""
    batch, n_offsets, h, w = weights.shape
    n = h * w
    # Ordering the offsets by their flat shift keeps every row's columns ascending.
    order = np.argsort(offsets[:, 0] * w + offsets[:, 1], kind="stable")
    offsets = torch.from_numpy(offsets[order]).to(weights.device)
    weights = weights[:, torch.from_numpy(order).to(weights.device)]
    ys = torch.arange(h, device=weights.device).repeat_interleave(w)[:, None] + offsets[:, 0]
    xs = torch.arange(w, device=weights.device).repeat(h)[:, None] + offsets[:, 1]
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # (n, N)
    columns = (ys * w + xs)[None] + (torch.arange(batch, device=weights.device) * n)[:, None, None]
    values = weights.permute(0, 2, 3, 1).reshape(batch, n, n_offsets)
    keep = inside.expand(batch, n, n_offsets)
    counts = keep.sum(dim=2).reshape(-1)
    crow = torch.zeros(batch * n + 1, dtype=torch.int64, device=weights.device)
    crow[1:] = torch.cumsum(counts, 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # Invariant check on: O(nnz) once per batch, negligible next to 2^exp_times products.
        return torch.sparse_csr_tensor(crow, columns[keep], values[keep],
                                       size=(batch * n, batch * n), check_invariants=True)


def _run_csr(v: torch.Tensor, weights: torch.Tensor, offsets: np.ndarray, steps: int,
             flush: float) -> torch.Tensor:
    batch, k_maps, h, w = v.shape
    matrix = _transition_csr(weights, offsets)
    x = v.permute(0, 2, 3, 1).reshape(batch * h * w, k_maps).contiguous()
    for _ in range(steps):
        x = matrix @ x
        if flush:
            x.masked_fill_(x.abs() < flush, 0)
    return x.view(batch, h, w, k_maps).permute(0, 3, 1, 2).contiguous()


def propagate_batch(cams: torch.Tensor, boundary: torch.Tensor, beta: float, exp_times: int = 8,
                    radius: float = 5, method: str = "auto") -> torch.Tensor:
    """``propagate`` for B images of one grid size: cams (B, K, h, w), boundary (B, h, w).

    Images with fewer classes can be padded with all-zero maps: propagation is linear and
    per image, so a zero map stays zero and does not affect the others.
    """
    _check_inputs(cams, boundary, exp_times, batched=True)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "csr" if cams.device.type == "cuda" else "shift"
    dtype = _work_dtype(cams)
    boundary = boundary.to(device=cams.device, dtype=dtype)
    with torch.no_grad():
        seeds = cams.to(dtype) * (1 - boundary[:, None])
        if cams.shape[1] == 0:
            return seeds
        weights, offsets = disc_transition_weights(boundary, beta, radius)
        run = _run_csr if method == "csr" else _run_shift
        if cams.device.type != "cpu":  # GPUs process subnormals at full speed
            return run(seeds, weights, offsets, 2 ** int(exp_times), 0.0)
        # The walk is linear: run it on peak-normalised seeds so that the flush level is
        # relative to each image's peak, then scale back.
        flush = _flush_level(dtype)
        peak = seeds.abs().amax(dim=(1, 2, 3), keepdim=True)
        scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        weights.masked_fill_(weights < flush, 0)
        return run(seeds / scale, weights, offsets, 2 ** int(exp_times), flush) * scale


def propagate(cams: torch.Tensor, boundary: torch.Tensor, beta: float, exp_times: int = 8,
              radius: float = 5, method: str = "auto") -> torch.Tensor:
    """Random-walk propagated maps (K, h, w) = (cams * (1 - boundary)) . T^(2^exp_times).

    ``cams`` (K, h, w) stride-4 class maps, ``boundary`` (h, w) in [0, 1] on the same grid.
    Runs on the device of ``cams``, in at least float32. Values are not normalised or
    thresholded (see ``labels_from_propagated``).
    """
    _check_inputs(cams, boundary, exp_times, batched=False)
    return propagate_batch(cams[None], boundary[None], beta, exp_times, radius, method)[0]


def dense_propagate(cams: torch.Tensor, boundary: torch.Tensor, beta: float, exp_times: int = 8,
                    radius: float = 5) -> torch.Tensor:
    """IRN's dense reference (``propagate_to_edge``): for tests on small grids only.

    Pads the boundary (left r, right r, bottom r) with 1.0, gathers the half-plane affinities of
    the padded grid, builds the dense symmetric matrix with an identity, slices it back to the
    real cells, column-normalises W = a^beta and squares it exp_times times. Computes in the
    inputs' dtype (use float64 for a tight reference). O(n^2) memory and O(n^3) time.
    """
    _check_inputs(cams, boundary, exp_times, batched=False)
    k_maps, h, w = cams.shape
    r = int(np.ceil(radius))
    index = PathIndex(radius)
    boundary = boundary.to(cams.dtype)
    padded = F.pad(boundary, (r, r, 0, r), value=1.0)
    hp, wp = padded.shape
    flat = padded.reshape(-1)
    aff = torch.cat([1 - flat[torch.from_numpy(cells).to(cams.device)].max(dim=0).values[None]
                     for cells in index.path_cell_indices(hp, wp)])
    src, dst = index.pair_indices(hp, wp)
    src = torch.from_numpy(np.broadcast_to(src, dst.shape).ravel()).to(cams.device)
    dst = torch.from_numpy(dst.ravel()).to(cams.device)
    dense = torch.eye(hp * wp, dtype=cams.dtype, device=cams.device)
    dense[src, dst] = aff.reshape(-1)
    dense[dst, src] = aff.reshape(-1)
    dense = dense.view(hp, wp, hp, wp)[:h, r:r + w, :h, r:r + w].reshape(h * w, h * w)
    weights = dense ** beta
    trans = weights / weights.sum(dim=0, keepdim=True)
    for _ in range(int(exp_times)):
        trans = trans @ trans
    seeds = (cams * (1 - boundary)).reshape(k_maps, h * w)
    return (seeds @ trans).view(k_maps, h, w)


def normalised_maps(propagated: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(K, height, width) maps in [0, 1]: bilinear x4 upsample (align_corners=False), top-left
    crop, ONE global max normalisation over all classes and pixels (spec §5.7 steps 1-2).

    Split from ``labels_from_propagated`` so that calibration sweeps the background
    threshold over the same values the labels are cut from.
    """
    k_maps, h, w = propagated.shape
    maps = propagated.to(_work_dtype(propagated))
    up = F.interpolate(maps[None], size=(4 * h, 4 * w), mode="bilinear",
                       align_corners=False)[0, :, :height, :width]
    peak = up.max()
    if peak > 0:  # all-zero maps (e.g. seeds entirely on boundaries) stay background
        up = up / peak
    return up


def labels_from_propagated(propagated: torch.Tensor, keys, height: int, width: int,
                           bg_threshold: float) -> np.ndarray:
    """Pseudo-label map uint8 (height, width) from propagated stride-4 maps (spec §5.7).

    Bilinear x4 upsample (align_corners=False), top-left crop, ONE global max normalisation
    over all classes and pixels, a constant background plane ``bg_threshold`` in front, argmax
    (ties go to background, the first plane), then ``[0] + keys`` maps indices to segmentation
    ids. ``keys`` are the segmentation ids (1..N, N <= 254) of the K maps.
    """
    keys = [int(k) for k in np.asarray(keys).reshape(-1)]
    if propagated.dim() != 3 or propagated.shape[0] != len(keys):
        raise ValueError(f"propagated must be (K, h, w) with K = {len(keys)} keys, got "
                         f"{tuple(propagated.shape)}")
    if any(not 0 < k <= MAX_OBJECT_CLASSES for k in keys):
        raise ValueError(f"keys must be segmentation ids 1..{MAX_OBJECT_CLASSES}, got {keys}")
    k_maps, h, w = propagated.shape
    if 4 * h < height or 4 * w < width:
        raise ValueError(f"a {h}x{w} stride-4 grid cannot cover a {height}x{width} image")
    if k_maps == 0:
        return np.zeros((height, width), dtype=np.uint8)
    up = normalised_maps(propagated, height, width)
    planes = torch.cat([torch.full_like(up[:1], bg_threshold), up])
    index = torch.argmax(planes, dim=0)  # first maximal index: ties -> background
    ids = torch.tensor([0] + keys, dtype=torch.uint8, device=index.device)
    return ids[index].cpu().numpy()
