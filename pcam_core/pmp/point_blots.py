"""Point blots (Akiva & Dana, PMP §3.3): clicks grown into labelled blobs, without training.

For one image and its clicks:

1. Seeds: each click's pixel (its class), and ``bg_points_per_click`` background points
   per click (class 0). PMP's VOC setting samples four background points per object
   outside all boxes; click files hold no boxes and no background clicks, so here they are
   drawn uniformly (seeded per image) among the pixels at least ``bg_min_distance`` x the
   shorter image side away from every click and outside every click's first blob.
2. Initial blots: a colour random walk from each seed (``pcam_core/pmp/colour_walk.py``);
   each blot is the walk's connected blob around its seed.
3. ``iterations`` rounds k = 1..K of scatter-then-walk: one random affine map per round, a
   rotation about the image centre by U(-1, 1) x ``max_rotation`` x k/K degrees and a shift
   by U(-1, 1) x ``max_shift`` x k/K of the shorter side in each axis (the ranges grow with k,
   as in PMP), moves every seed; a moved seed that leaves the image is dropped for that
   round. The walk from each moved seed gives a candidate blob, accepted as an expansion of
   its seed's blot (blot <- blot U candidate) when both PMP tests hold:
   KL(candidate colours || blot colours) < ``kld_max`` (per-channel 16-bin RGB histograms,
   mean over the channels) and IoU(blot, candidate) > ``iou_min``.
4. Labels: 255 (unlabelled) everywhere, then each pixel covered by blots of exactly one class
   takes that class; pixels claimed by two classes stay 255; each click's own pixel takes its
   class (so a blot always holds its click), unless clicks of two classes share the pixel.

Everything random is drawn from a generator seeded by (``seed``, the image id): the blots
of an image are the same on every run, shard layout and machine.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields as dataclass_fields
from typing import Any, Sequence

import numpy as np

from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.pmp.colour_walk import transition_fields, walk_blobs

HISTOGRAM_BINS = 16  # per RGB channel (256 / 16 levels per bin)
HISTOGRAM_PRIOR = 0.5  # counts added to every bin: an empty bin must not make KL infinite


@dataclass(frozen=True)
class BlotSettings:
    """The ``pmp:`` config section (the schema documents each key and its source)."""

    iterations: int
    max_rotation: float
    max_shift: float
    walk_steps: int
    beta: float
    walk_threshold: float
    kld_max: float
    iou_min: float
    bg_points_per_click: int
    bg_min_distance: float
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "BlotSettings":
        names = [f.name for f in dataclass_fields(cls)]
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"--params lacks {missing} (pass the config's pmp section)")
        settings = cls(**{n: params[n] for n in names})
        if settings.iterations < 0 or settings.walk_steps < 1 or settings.bg_points_per_click < 0:
            raise ValueError("pmp.iterations must be >= 0, pmp.walk_steps >= 1 and "
                             "pmp.bg_points_per_click >= 0")
        if not 0 < settings.walk_threshold <= 1:
            raise ValueError(f"pmp.walk_threshold must be in (0, 1], got {settings.walk_threshold}")
        return settings


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The image's own random stream: independent of shards and of the other images."""
    digest = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def colour_histogram(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(3, HISTOGRAM_BINS) per-channel colour distribution of the masked pixels (smoothed)."""
    pixels = rgb[mask].astype(np.int64) * HISTOGRAM_BINS // 256
    counts = np.stack([np.bincount(pixels[:, ch], minlength=HISTOGRAM_BINS) for ch in range(3)])
    counts = counts + HISTOGRAM_PRIOR
    return counts / counts.sum(axis=1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over channels of KL(p || q) for (3, bins) distributions."""
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def background_points(shape: tuple[int, int], click_pixels: np.ndarray, excluded: np.ndarray,
                      count: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """(n <= count, 2) background seeds: uniform among the pixels far enough from every click
    (``min_distance`` x the shorter side) and outside ``excluded`` (the clicks' blots)."""
    h, w = shape
    if count == 0:
        return np.zeros((0, 2), np.int64)
    rows, cols = np.mgrid[0:h, 0:w]
    allowed = ~excluded
    limit = (min_distance * min(h, w)) ** 2
    for r, c in click_pixels:
        allowed &= (rows - r) ** 2 + (cols - c) ** 2 >= limit
    candidates = np.flatnonzero(allowed)
    if len(candidates) == 0:
        return np.zeros((0, 2), np.int64)
    chosen = rng.choice(candidates, size=min(count, len(candidates)), replace=False)
    return np.stack(np.unravel_index(np.sort(chosen), (h, w)), axis=1).astype(np.int64)


def perturb(points: np.ndarray, shape: tuple[int, int], rotation_deg: float,
            shift: Sequence[float]) -> np.ndarray:
    """Pixel centres rotated about the image centre and shifted; float (row, col)."""
    h, w = shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    angle = math.radians(rotation_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (points.astype(np.float64) - centre) @ rotation.T + centre + np.asarray(shift)


@dataclass
class BlotResult:
    label: np.ndarray  # uint8 H x W: click classes, 0 = background blots, 255 = unlabelled
    object_points: int
    background_points: int
    accepted: int  # candidate blobs accepted over all rounds
    candidates: int  # candidate blobs tested


def point_blots(rgb: np.ndarray, clicks: Sequence[tuple[int, int, int]], settings: BlotSettings,
                rng: np.random.Generator) -> BlotResult:
    """The blot label map of one image; ``clicks`` are (row, col, class) pixels inside it."""
    h, w = rgb.shape[:2]
    label = np.full((h, w), IGNORE_INDEX, np.uint8)
    if not clicks:
        return BlotResult(label, 0, 0, 0, 0)
    click_pixels = np.array([(r, c) for r, c, _ in clicks], np.int64)
    if ((click_pixels < 0) | (click_pixels >= (h, w))).any():
        raise ValueError(f"a click lies outside the {w}x{h} image: {click_pixels.tolist()}")
    fields = transition_fields(rgb, settings.beta)
    walk = lambda seeds: walk_blobs(fields, seeds, settings.walk_steps, settings.walk_threshold)

    blots = walk(click_pixels)
    excluded = np.logical_or.reduce(blots)
    background = background_points((h, w), click_pixels, excluded,
                                   settings.bg_points_per_click * len(clicks),
                                   settings.bg_min_distance, rng)
    blots += walk(background)
    seeds = np.concatenate([click_pixels, background])
    classes = [cls for _, _, cls in clicks] + [0] * len(background)
    histograms = [colour_histogram(rgb, blot) for blot in blots]

    accepted = tested = 0
    for k in range(1, settings.iterations + 1):
        reach = k / settings.iterations
        rotation = rng.uniform(-1, 1) * settings.max_rotation * reach
        shift = rng.uniform(-1, 1, size=2) * settings.max_shift * reach * min(h, w)
        moved = np.floor(perturb(seeds + 0.5, (h, w), rotation, shift)).astype(np.int64)
        inside = np.flatnonzero(((moved >= 0) & (moved < (h, w))).all(axis=1))
        for j, candidate in zip(inside, walk(moved[inside])):
            tested += 1
            if iou(blots[j], candidate) <= settings.iou_min:
                continue
            candidate_histogram = colour_histogram(rgb, candidate)
            if kl_divergence(candidate_histogram, histograms[j]) >= settings.kld_max:
                continue
            blots[j] = blots[j] | candidate
            histograms[j] = colour_histogram(rgb, blots[j])
            accepted += 1

    claims = np.zeros((h, w), np.int32)  # how many classes claim each pixel
    claimed_by = np.zeros((h, w), np.int32)
    for cls in sorted(set(classes)):
        covered = np.logical_or.reduce([b for b, c in zip(blots, classes) if c == cls])
        claims += covered
        claimed_by[covered] = cls
    label[claims == 1] = claimed_by[claims == 1]
    click_classes: dict[tuple[int, int], set[int]] = {}
    for r, c, cls in clicks:
        click_classes.setdefault((r, c), set()).add(cls)
    for (r, c), owners in click_classes.items():
        label[r, c] = owners.pop() if len(owners) == 1 else IGNORE_INDEX
    return BlotResult(label, len(clicks), len(background), accepted, tested)
