"""The generated demo dataset: a small point-annotated dataset in the real on-disk formats.

``pcam make-demo`` writes, from one seed and byte for byte reproducibly,

* ``VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}`` with palette
  PNG masks that carry 255 void bands along object outlines, as VOC's do;
* ``benchmark_RELEASE/dataset/{img, cls, train.txt, val.txt}`` (SBD): the extra train_aug
  images plus some VOC ones, ``cls/<id>.mat`` structs ``GTcls.Segmentation`` without void;
  SBD's lists name a few VOC val ids, as the real SBD does, so train_aug must remove them;
* ``points.json`` in the "What's the point" format, with person-like clicks and the real
  file's quirks (out-of-bounds, negative, unknown classes, empty and missing ids) injected
  in small numbers so that the data report and the validation code see them;
* ``VOCdevkit/VOC2012/Annotations/<id>.xml`` for every image, in VOC's XML format (one
  ``<object>`` per instance, 1-based pixel box): the image-level labels, as IRN reads them;
* ``demo_info.json``: the style, the classes drawn, the distractors and the quirks injected
  (what the report should find).

The pictures are designed so that small ResNets trained from scratch on a CPU in about a
minute learn them: five VOC classes on muted textured backgrounds, in one of two styles
(``dataset.demo.style``):

* ``colour`` (default): each class has its own colour family, shape and texture, so colour
  alone tells the classes apart;
* ``shape``: every object takes its hue from one palette shared by all classes, so only shape
  and texture tell them apart, and 0-2 object-coloured distractors per image (flat rings and
  irregular blobs, shapes no class uses) lie in the background, labelled background and never
  clicked. Objects are larger and textures coarser than in ``colour`` so that both cues
  survive the CAM stage's downscaling.

Both styles use the same splits, clicks logic, void bands and quirks; ``colour`` output is byte
for byte what it was before ``shape`` existed (its per-image random streams are unchanged).
The same reader code serves the demo and PASCAL VOC.
"""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from scipy import ndimage

from pcam_core.common.atomic_output import atomic_directory
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.label_png import label_to_image
from pcam_core.data.voc_reader import VOC_CLASSES

JPEG_QUALITY = 90
MAX_IMAGES = 100_000
STRAY_ID = "demo_999999"  # an id in points.json that is not part of the dataset
INT_PARAM_KEYS = ("seed", "num_train", "num_extra_train", "num_val", "min_size", "max_size")
PARAM_KEYS = (*INT_PARAM_KEYS, "style")
STYLES = ("colour", "shape")
DEFAULT_STYLE = "colour"  # param dicts written before the style existed mean this one


@dataclass(frozen=True)
class ClassStyle:
    """How one demo class looks: shape, hue (0..1) and texture."""

    cls: int
    shape: str
    hue: float
    texture: str


# Colour families far apart on the hue circle, shapes and textures all different: a network
# trained from scratch can tell them apart by colour alone and localise them by shape.
CLASS_STYLES = (
    ClassStyle(1, "triangle", 0.00, "stripes"),   # aeroplane: red triangle, stripes
    ClassStyle(3, "disc", 0.15, "spots"),          # bird: yellow disc, spots
    ClassStyle(8, "square", 0.33, "checker"),      # cat: green square, checker
    ClassStyle(12, "cross", 0.60, "diagonal"),     # dog: blue cross, diagonal stripes
    ClassStyle(15, "ellipse", 0.83, "shade"),      # person: magenta ellipse, radial shading
)
DEMO_CLASS_IDS = tuple(s.cls for s in CLASS_STYLES)

# Shape style: objects and distractors alike draw their hue from this palette whatever their
# class, so colour carries no class information. These are the colour style's five hues, so
# both styles show the same colours, only no longer tied to a class.
SHARED_HUES = tuple(s.hue for s in CLASS_STYLES)
# Shapes no class uses; drawn flat (no texture), so neither shape nor texture matches a class.
DISTRACTOR_SHAPES = ("ring", "blob")
# Object radius as a fraction of half the short side. Shape style keeps objects larger: their
# outline is the main cue left once colour is shared, and the CAM stage shrinks 96-144 px
# images to a 48-80 px long side (x 0.33-0.83): a 0.3 radius (14-22 px) keeps 5 px or more.
OBJECT_RADIUS = {"colour": (0.2, 0.55), "shape": (0.3, 0.6)}
# Texture period as a fraction of the radius, and (shape style) its floor: an 8 px cycle
# still spans more than 2.5 px after the smallest CAM resize (48/144 = 1/3), above the 2 px
# a pattern needs to survive resampling.
TEXTURE_PERIOD = {"colour": (0.25, 0.45), "shape": (0.3, 0.45)}
MIN_SHAPE_PERIOD = 8.0
# Texture contrast (relative brightness swing): stronger in shape style, where texture is
# one of the two cues left.
TEXTURE_AMPLITUDE = {"colour": (0.15, 0.25), "shape": (0.25, 0.35)}
# Distractors: 0-2 per image, radius up to the smallest object radius (they are never bigger
# than an object), kept 3 px clear of objects so that the objects' 1 px outward void band
# never reaches them and they stay plain background in every mask.
DISTRACTOR_COUNT_P = (0.3, 0.4, 0.3)
DISTRACTOR_RADIUS = (0.15, 0.3)
DISTRACTOR_MARGIN = 3
# The extra word of a style's per-image random stream; colour has none, which keeps its
# streams (and so its bytes) those of the datasets generated before styles existed.
STYLE_STREAM = {"colour": None, "shape": 1}


# --------------------------------------------------------------------------- parameters
def check_params(params: dict) -> dict:
    """Validate ``dataset.demo``; a clear error names the bad key (the schema may be bypassed).

    ``style`` may be absent (param dicts older than the style mean ``colour``).
    """
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ValueError(f"dataset.demo: unknown key(s) {unknown}; expected {list(PARAM_KEYS)}")
    missing = [k for k in INT_PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"dataset.demo: missing key(s) {missing}")
    out = {}
    for key in INT_PARAM_KEYS:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"dataset.demo.{key} must be an integer, got {value!r}")
        out[key] = value
    if out["seed"] < 0:
        raise ValueError(f"dataset.demo.seed must be >= 0, got {out['seed']}")
    for key in ("num_train", "num_val"):
        if out[key] < 1:
            raise ValueError(f"dataset.demo.{key} must be >= 1, got {out[key]}")
    if out["num_extra_train"] < 0:
        raise ValueError(f"dataset.demo.num_extra_train must be >= 0, got {out['num_extra_train']}")
    total = out["num_train"] + out["num_extra_train"] + out["num_val"]
    if total > MAX_IMAGES:
        raise ValueError(f"dataset.demo asks for {total} images; at most {MAX_IMAGES} are supported")
    if out["min_size"] < 32:
        raise ValueError(f"dataset.demo.min_size must be >= 32 pixels, got {out['min_size']}")
    if out["max_size"] < out["min_size"]:
        raise ValueError(f"dataset.demo.max_size ({out['max_size']}) is smaller than "
                         f"min_size ({out['min_size']})")
    if out["max_size"] > 2048:
        raise ValueError(f"dataset.demo.max_size must be <= 2048 pixels, got {out['max_size']}")
    style = params.get("style", DEFAULT_STYLE)
    if not isinstance(style, str) or style not in STYLES:
        raise ValueError(f"dataset.demo.style must be one of {list(STYLES)}, got {style!r}")
    out["style"] = style
    return out


# --------------------------------------------------------------------------- drawing
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB (all in 0..1), returns float H x W x 3."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    r = np.choose(i, choices_r)
    g = np.choose(i, choices_g)
    b = np.choose(i, choices_b)
    return np.stack([r, g, b], axis=-1)


def _local_coords(shape: tuple[int, int], cy: float, cx: float, angle: float):
    """Pixel-centre coordinates in the object's rotated frame (u along, v across)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = math.cos(angle), math.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def shape_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a shape of radius ``r`` in local coordinates."""
    if kind == "disc":
        return u * u + v * v <= r * r
    if kind == "square":
        half = 0.8 * r
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "ellipse":
        return (u / r) ** 2 + (v / (0.55 * r)) ** 2 <= 1.0
    if kind == "triangle":  # equilateral, circumradius r, inradius r / 2
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            phi = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(phi) + v * math.sin(phi) <= r / 2
        return inside
    if kind == "cross":
        arm = 0.33 * r
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(f"unknown demo shape {kind!r}")


def distractor_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float,
                    form: tuple[float, ...]) -> np.ndarray:
    """Boolean mask of a distractor of radius ``r``: a ring (``form`` = (thickness,) as a
    fraction of r) or a blob whose edge wobbles (``form`` = (a2, phase2, a3, phase3): the
    amplitudes and phases of its 2nd and 3rd angular harmonics)."""
    rho = np.sqrt(u * u + v * v)
    if kind == "ring":
        return (rho <= r) & (rho >= (1.0 - form[0]) * r)
    if kind == "blob":
        theta = np.arctan2(v, u)
        edge = r * (1.0 + form[0] * np.cos(2 * theta + form[1]) + form[2] * np.cos(3 * theta + form[3]))
        return rho <= edge
    raise ValueError(f"unknown demo distractor shape {kind!r}")


def _texture(kind: str, u: np.ndarray, v: np.ndarray, r: float, period: float) -> np.ndarray:
    """Per-class pattern in [-1, 1], drawn in the object's frame so it turns with the object."""
    if kind == "stripes":
        return np.sign(np.sin(2 * math.pi * v / period))
    if kind == "spots":
        return np.where((np.mod(u, period) - period / 2) ** 2 + (np.mod(v, period) - period / 2) ** 2
                        <= (period / 3.2) ** 2, 1.0, -0.4)
    if kind == "checker":
        return np.where((np.floor(u / period) + np.floor(v / period)) % 2 == 0, 1.0, -1.0)
    if kind == "diagonal":
        return np.sign(np.sin(2 * math.pi * (u + v) / (1.4 * period)))
    if kind == "shade":
        return 1.0 - 2.0 * np.clip(np.sqrt(u * u + v * v) / r, 0, 1)
    raise ValueError(f"unknown demo texture {kind!r}")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Muted, low-saturation textured background (noise, stripes or a gradient), float RGB 0..1."""
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.04, 0.22)
    val = rng.uniform(0.35, 0.7)
    kind = rng.choice(["noise", "stripes", "gradient"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "noise":
        cells = int(rng.integers(4, 10))
        coarse = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
        pattern = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC),
                             dtype=np.float64)
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(8, 24)
        pattern = np.sin(2 * math.pi * (math.cos(angle) * xx + math.sin(angle) * yy) / period)
    else:
        angle = rng.uniform(0, 2 * math.pi)
        t = (math.cos(angle) * xx + math.sin(angle) * yy)
        pattern = 2 * (t - t.min()) / max(t.max() - t.min(), 1e-6) - 1
    amplitude = rng.uniform(0.12, 0.3)
    v = np.clip(val * (1 + amplitude * pattern), 0, 1)
    hue_map = hue + 0.04 * pattern
    return _hsv_to_rgb(hue_map, np.full_like(v, sat), v)


@dataclass
class DemoImage:
    """One generated picture with its instance map and instance classes."""

    rgb: np.ndarray  # uint8 H x W x 3
    instances: np.ndarray  # int32 H x W, 0 = background, k = instance k
    instance_classes: list[int]  # class of instance k at position k - 1
    distractors: np.ndarray | None = None  # bool H x W: distractor pixels (shape style), background
    num_distractors: int = 0

    @property
    def label(self) -> np.ndarray:
        lut = np.asarray([0] + self.instance_classes, dtype=np.uint8)
        return lut[self.instances]


def render_image(rng: np.random.Generator, h: int, w: int, style: str = DEFAULT_STYLE) -> DemoImage:
    """Draw 1-3 objects (sometimes two of a class) with limited overlap on a background; the
    shape style adds distractors. The colour style's draws from ``rng`` are those of the
    code before styles existed, in the same order (its bytes depend on it)."""
    if style not in STYLES:
        raise ValueError(f"unknown demo style {style!r}; expected one of {list(STYLES)}")
    shared = style == "shape"
    radius_range, period_range = OBJECT_RADIUS[style], TEXTURE_PERIOD[style]
    amplitude_range = TEXTURE_AMPLITUDE[style]
    image = _background(rng, h, w)
    instances = np.zeros((h, w), dtype=np.int32)
    classes: list[int] = []
    count = int(rng.choice([1, 2, 3], p=[0.45, 0.37, 0.18]))
    side = min(h, w)
    for _ in range(count):
        if classes and rng.uniform() < 0.3:
            style_index = DEMO_CLASS_IDS.index(int(rng.choice(classes)))
        else:
            style_index = int(rng.integers(len(CLASS_STYLES)))
        look = CLASS_STYLES[style_index]
        for _attempt in range(25):
            r = rng.uniform(*radius_range) * side / 2
            cx = rng.uniform(0.6 * r, w - 0.6 * r)
            cy = rng.uniform(0.6 * r, h - 0.6 * r)
            angle = rng.uniform(0, 2 * math.pi)
            u, v = _local_coords((h, w), cy, cx, angle)
            mask = shape_mask(look.shape, u, v, r)
            area = int(mask.sum())
            if area < 30:
                continue
            # Accept only if the new object hides little of the others and is itself visible.
            if all((mask & (instances == k)).sum() <= 0.2 * min(area, (instances == k).sum())
                   for k in range(1, len(classes) + 1)):
                break
        else:
            continue
        base_hue = SHARED_HUES[int(rng.integers(len(SHARED_HUES)))] if shared else look.hue
        hue = base_hue + rng.uniform(-0.03, 0.03)
        sat = rng.uniform(0.6, 0.9)
        val = rng.uniform(0.62, 0.95)
        period = rng.uniform(*period_range) * r
        if shared:
            period = max(period, MIN_SHAPE_PERIOD)
        pattern = _texture(look.texture, u, v, r, period)
        v_map = np.clip(val * (1 + rng.uniform(*amplitude_range) * pattern), 0, 1)
        colour = _hsv_to_rgb(np.full_like(v_map, hue), np.full_like(v_map, sat), v_map)
        image[mask] = colour[mask]
        classes.append(look.cls)
        instances[mask] = len(classes)
    distractors, num_distractors = None, 0
    if shared:
        distractors, num_distractors = _draw_distractors(rng, image, instances)
    noise = rng.normal(0, rng.uniform(0.01, 0.035), size=image.shape)
    gain = rng.uniform(0.9, 1.1, size=3)  # mild colour jitter of the whole picture
    rgb = np.clip((image * gain + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Drop instances that ended up fully hidden and renumber.
    present = [k for k in range(1, len(classes) + 1) if (instances == k).any()]
    remap = np.zeros(len(classes) + 1, dtype=np.int32)
    for new, old in enumerate(present, start=1):
        remap[old] = new
    return DemoImage(rgb, remap[instances], [classes[k - 1] for k in present], distractors,
                     num_distractors)


def _draw_distractors(rng: np.random.Generator, image: np.ndarray,
                      instances: np.ndarray) -> tuple[np.ndarray, int]:
    """Paint 0-2 flat, object-coloured rings or blobs clear of every object (in place);
    returns their mask and how many were placed (a crowded picture may take fewer)."""
    h, w = instances.shape
    side = min(h, w)
    taken = ndimage.binary_dilation(instances > 0, iterations=DISTRACTOR_MARGIN)
    drawn = np.zeros((h, w), dtype=bool)
    placed = 0
    for _ in range(int(rng.choice(len(DISTRACTOR_COUNT_P), p=DISTRACTOR_COUNT_P))):
        kind = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
        for _attempt in range(25):
            r = rng.uniform(*DISTRACTOR_RADIUS) * side / 2
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)  # rings whole, blobs nearly
            u, v = _local_coords((h, w), cy, cx, rng.uniform(0, 2 * math.pi))
            if kind == "ring":  # wall 30-50% of the radius, so the hole is clearly open
                form = (rng.uniform(0.3, 0.5),)
            else:  # wobbles of 12-22% each: visibly irregular, never folding over
                form = (rng.uniform(0.12, 0.22), rng.uniform(0, 2 * math.pi),
                        rng.uniform(0.12, 0.22), rng.uniform(0, 2 * math.pi))
            mask = distractor_mask(kind, u, v, r, form)
            if mask.sum() >= 20 and not (mask & (taken | drawn)).any():
                break
        else:
            continue
        hue = SHARED_HUES[int(rng.integers(len(SHARED_HUES)))] + rng.uniform(-0.03, 0.03)
        colour = _hsv_to_rgb(np.full((h, w), hue), np.full((h, w), rng.uniform(0.6, 0.9)),
                             np.full((h, w), rng.uniform(0.62, 0.95)))
        image[mask] = colour[mask]
        drawn |= mask
        placed += 1
    return drawn, placed


def void_bands(instances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean 2-3 px bands along every instance outline (VOC marks object borders void)."""
    band = np.zeros(instances.shape, dtype=bool)
    inner = int(rng.integers(1, 3))
    for k in range(1, int(instances.max()) + 1):
        mask = instances == k
        band |= ndimage.binary_dilation(mask, iterations=1) & ~ndimage.binary_erosion(
            mask, iterations=inner, border_value=1)
    return band


# --------------------------------------------------------------------------- clicks
def person_clicks(rng: np.random.Generator, picture: DemoImage) -> list[dict]:
    """Clicks as a person gives them: per class the biggest instance first (rank 1), then the
    other instances (ranks 2, 3; one in seven forgotten), near each visible part's middle with
    small jitter; about 3% land off the object. Coordinates are ints or 1-decimal floats.

    Off-object slips never land on a shape-style distractor: those must stay clean
    background, the trap the style sets for a model that segments by colour.
    """
    h, w = picture.instances.shape
    as_float = rng.uniform() < 0.4
    clicks: list[dict] = []
    for cls in sorted(set(picture.instance_classes)):
        ks = [k for k, c in enumerate(picture.instance_classes, start=1) if c == cls]
        areas = {k: int((picture.instances == k).sum()) for k in ks}
        ks.sort(key=lambda k: -areas[k])
        rank = 0
        for order, k in enumerate(ks):
            if order > 0 and rng.uniform() < 1 / 7:
                continue
            mask = picture.instances == k
            rows, cols = np.nonzero(mask)
            cy, cx = rows.mean(), cols.mean()
            # Nearest visible pixel to the centroid, then a few jittered tries that stay inside.
            nearest = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
            y, x = float(rows[nearest]), float(cols[nearest])
            sigma = 0.08 * math.sqrt(areas[k])
            for _ in range(5):
                jy, jx = y + rng.normal(0, sigma), x + rng.normal(0, sigma)
                if 0 <= jy < h and 0 <= jx < w and mask[int(jy), int(jx)]:
                    y, x = jy, jx
                    break
            if rng.uniform() < 0.03:  # an annotator's slip: a pixel off this object
                off = ~mask if picture.distractors is None else ~mask & ~picture.distractors
                off_rows, off_cols = np.nonzero(off)
                if len(off_rows):
                    pick = int(rng.integers(len(off_rows)))
                    y, x = float(off_rows[pick]) + 0.5, float(off_cols[pick]) + 0.5
            rank += 1
            clicks.append({"cls": cls, "x": _coord(x, as_float), "y": _coord(y, as_float),
                           "rank": rank})
    return clicks


def _coord(value: float, as_float: bool):
    """A pixel coordinate as the annotation file may hold it (int, or float kept in-pixel)."""
    pixel = int(value)
    if not as_float:
        return pixel
    return round(min(max(value, pixel + 0.05), pixel + 0.95), 1)


def inject_quirks(rng: np.random.Generator, points: dict[str, list[dict]],
                  sizes: dict[str, tuple[int, int]], train_aug: list[str]) -> dict:
    """Add the real click file's quirks in small numbers; returns what was injected.

    The added bad points go to images that keep their good clicks, so only the empty and
    missing ids lose training images.
    """
    n = len(train_aug)
    per_kind = 2 if n >= 20 else (1 if n >= 8 else 0)
    injected = {"out_of_bounds": 0, "negative": 0, "unknown_class": 0, "empty_ids": [],
                "missing_ids": [], "not_in_dataset": [], "off_object_clicks": None}
    if per_kind == 0:
        return injected
    order = [train_aug[i] for i in rng.permutation(n)]
    empty, missing = order[:per_kind], order[per_kind:2 * per_kind]
    hosts = [i for i in order[2 * per_kind:] if points.get(i)]

    def add(image_id: str, cls: int, x, y) -> None:
        rank = 1 + sum(1 for c in points[image_id] if c["cls"] == cls)
        points[image_id].append({"cls": cls, "x": x, "y": y, "rank": rank})

    host = iter(hosts * 3)
    for kind, count in (("out_of_bounds", per_kind + 1), ("negative", per_kind),
                        ("unknown_class", per_kind)):
        for j in range(count):
            image_id = next(host, None)
            if image_id is None:
                break
            h, w = sizes[image_id]
            cls = points[image_id][0]["cls"]
            if kind == "out_of_bounds":  # x == W exactly (the off-by-one trap), then beyond
                x, y = [(w, h // 2), (w // 2, h + 1.5), (w + 3.2, h - 1)][j % 3]
            elif kind == "negative":
                x, y = [(-1, h // 2), (w // 2, -2.5)][j % 2]
            else:
                cls, x, y = [0, 21][j % 2], w // 2, h // 2
            add(image_id, cls, x, y)
            injected[kind] += 1
    for image_id in empty:
        points[image_id] = []
    for image_id in missing:
        del points[image_id]
    points[STRAY_ID] = [{"cls": DEMO_CLASS_IDS[0], "x": 10, "y": 10, "rank": 1}]
    injected["empty_ids"] = sorted(empty)
    injected["missing_ids"] = sorted(missing)
    injected["not_in_dataset"] = [STRAY_ID]
    return injected


# --------------------------------------------------------------------------- file formats
def mat_bytes(segmentation: np.ndarray) -> bytes:
    """An SBD ``cls/<id>.mat`` (struct GTcls) as bytes, with a fixed header.

    scipy stamps the current time into the 116-byte MAT header; a fixed text there keeps the
    demo byte-identical from run to run.
    """
    buffer = io.BytesIO()
    present = np.unique(segmentation[(segmentation > 0) & (segmentation < 255)])
    scipy.io.savemat(buffer, {"GTcls": {
        "Segmentation": segmentation.astype(np.uint8),
        "CategoriesPresent": present.astype(np.uint8).reshape(-1, 1),
    }}, do_compression=True, oned_as="column")
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, written by pcam make-demo"
    data[:116] = header.ljust(116, b" ")
    return bytes(data)


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def png_bytes(label: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    label_to_image(label).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_list(path: Path, ids: list[str]) -> None:
    path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


# --------------------------------------------------------------------------- the dataset
def plan_splits(params: dict) -> dict[str, list[str]]:
    """Ids of each part, interleaved by a seeded permutation and sorted like VOC's lists.

    Returns voc_train, voc_val, extra (SBD only), sbd_train and sbd_val. SBD's lists hold
    every extra image, about half of VOC train and a few VOC val ids (as the real SBD does).
    """
    n_train, n_extra, n_val = params["num_train"], params["num_extra_train"], params["num_val"]
    total = n_train + n_extra + n_val
    rng = np.random.default_rng([params["seed"], 7_000_001])
    numbers = rng.permutation(total)
    ids = [f"demo_{k:06d}" for k in numbers]
    voc_train = sorted(ids[:n_train])
    extra = sorted(ids[n_train:n_train + n_extra])
    voc_val = sorted(ids[n_train + n_extra:])
    in_sbd_train = rng.uniform(size=len(extra)) < 0.7
    sbd_train = [i for i, t in zip(extra, in_sbd_train) if t]
    sbd_val = [i for i, t in zip(extra, in_sbd_train) if not t]
    voc_in_sbd = [i for i in voc_train if rng.uniform() < 0.5]
    half = len(voc_in_sbd) // 2
    sbd_train += voc_in_sbd[:half]
    sbd_val += voc_in_sbd[half:]
    val_in_sbd = [voc_val[i] for i in rng.permutation(len(voc_val))[:min(4, len(voc_val))]]
    sbd_train += val_in_sbd[0::2]
    sbd_val += val_in_sbd[1::2]
    return {"voc_train": voc_train, "voc_val": voc_val, "extra": extra,
            "sbd_train": sorted(sbd_train), "sbd_val": sorted(sbd_val)}


def image_rng(seed: int, image_id: str, style: str = DEFAULT_STYLE) -> np.random.Generator:
    """Each picture has its own stream, so it depends only on (seed, id, style); the colour
    style's stream is (seed, id) alone, as before styles existed."""
    words = [seed, int(image_id.split("_")[1])]
    if STYLE_STREAM[style] is not None:
        words.append(STYLE_STREAM[style])
    return np.random.default_rng(words)


def generate_picture(params: dict, image_id: str) -> tuple[np.random.Generator, DemoImage]:
    """One image of the dataset (checked ``params``), and its stream positioned for the clicks
    and void bands that follow; tests call it to see what make_demo drew."""
    rng = image_rng(params["seed"], image_id, params["style"])
    h = int(rng.integers(params["min_size"], params["max_size"] + 1))
    w = int(rng.integers(params["min_size"], params["max_size"] + 1))
    return rng, render_image(rng, h, w, params["style"])


# Objects with fewer visible pixels than an 8 x 8 patch are marked difficult in the XML, in the
# spirit of VOC's "hard to recognise" flag (they stay in the image-level label all the same).
DIFFICULT_AREA = 64


def annotation_xml(image_id: str, picture: DemoImage, segmented: bool) -> bytes:
    """VOC's ``Annotations/<id>.xml`` for one picture: one ``<object>`` per instance with its
    1-based inclusive pixel box (VOC's convention); truncated when it touches the border."""
    h, w = picture.instances.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1" if segmented else "0"
    for k, cls in enumerate(picture.instance_classes, start=1):
        rows, cols = np.nonzero(picture.instances == k)
        box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
        truncated = box[0] == 0 or box[1] == 0 or box[2] == w - 1 or box[3] == h - 1
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = VOC_CLASSES[cls]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "1" if truncated else "0"
        ET.SubElement(obj, "difficult").text = "1" if rows.size < DIFFICULT_AREA else "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, tag).text = str(value + 1)
    ET.indent(root, space="\t")
    return (ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def make_demo(params: dict, out: str | Path) -> dict:
    """Generate the demo dataset under ``out`` (atomically); returns the demo_info dict."""
    params = check_params(params)
    seed, style = params["seed"], params["style"]
    parts = plan_splits(params)
    voc_ids = parts["voc_train"] + parts["voc_val"]
    sbd_ids = set(parts["sbd_train"]) | set(parts["sbd_val"])
    all_ids = sorted(voc_ids + parts["extra"])
    train_aug = sorted(set(parts["voc_train"]) | set(parts["extra"]))
    points: dict[str, list[dict]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with atomic_directory(out) as tmp:
        voc = tmp / "VOCdevkit" / "VOC2012"
        sbd = tmp / "benchmark_RELEASE" / "dataset"
        for folder in (voc / "JPEGImages", voc / "SegmentationClass", voc / "Annotations",
                       voc / "ImageSets" / "Segmentation", sbd / "img", sbd / "cls"):
            folder.mkdir(parents=True)
        voc_set = set(voc_ids)
        distractors = {"total": 0, "images_with_distractors": 0}
        for image_id in all_ids:
            rng, picture = generate_picture(params, image_id)
            sizes[image_id] = picture.instances.shape
            distractors["total"] += picture.num_distractors
            distractors["images_with_distractors"] += int(picture.num_distractors > 0)
            points[image_id] = person_clicks(rng, picture)
            jpeg = jpeg_bytes(picture.rgb)
            (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpeg)
            label = picture.label
            if image_id in voc_set:
                voc_label = label.copy()
                voc_label[void_bands(picture.instances, rng)] = IGNORE_INDEX
                (voc / "SegmentationClass" / f"{image_id}.png").write_bytes(png_bytes(voc_label))
            if image_id in sbd_ids:
                (sbd / "img" / f"{image_id}.jpg").write_bytes(jpeg)
                (sbd / "cls" / f"{image_id}.mat").write_bytes(mat_bytes(label))
            (voc / "Annotations" / f"{image_id}.xml").write_bytes(
                annotation_xml(image_id, picture, segmented=image_id in voc_set))
        quirk_rng = np.random.default_rng([seed, 7_000_002])
        injected = inject_quirks(quirk_rng, points, sizes, train_aug)
        lists = voc / "ImageSets" / "Segmentation"
        _write_list(lists / "train.txt", parts["voc_train"])
        _write_list(lists / "val.txt", parts["voc_val"])
        _write_list(lists / "trainval.txt", sorted(voc_ids))
        _write_list(sbd / "train.txt", parts["sbd_train"])
        _write_list(sbd / "val.txt", parts["sbd_val"])
        ordered = {i: points[i] for i in sorted(points)}
        (tmp / "points.json").write_text(json.dumps(ordered, separators=(",", ":")) + "\n",
                                         encoding="utf-8")
        if style == "colour":
            classes = {VOC_CLASSES[s.cls]: {"id": s.cls, "shape": s.shape, "hue": s.hue,
                                            "texture": s.texture} for s in CLASS_STYLES}
        else:  # no class owns a hue: record the shared palette instead
            classes = {VOC_CLASSES[s.cls]: {"id": s.cls, "shape": s.shape, "texture": s.texture}
                       for s in CLASS_STYLES}
        info = {
            "params": params,
            "style": style,
            "classes": classes,
            **({"shared_hues": list(SHARED_HUES),
                "distractor_shapes": list(DISTRACTOR_SHAPES)} if style == "shape" else {}),
            "distractors": distractors,
            "images": {"train": len(parts["voc_train"]), "val": len(parts["voc_val"]),
                       "extra_train": len(parts["extra"]), "train_aug": len(train_aug)},
            "sbd_lists_with_voc_val_ids": sorted(sbd_ids & set(parts["voc_val"])),
            "injected_quirks": injected,
        }
        (tmp / "demo_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


# --------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--params", type=json_object, required=True,
                        help="the config's dataset.demo section as JSON "
                             f"(keys: {', '.join(PARAM_KEYS)})")
    parser.add_argument("--out", required=True,
                        help="output folder (VOCdevkit/, benchmark_RELEASE/, points.json)")


def main(args) -> int:
    import time

    start = time.perf_counter()
    info = make_demo(args.params, args.out)
    images = info["images"]
    print(f"demo dataset ({info['style']} style) in {args.out}: {images['train']} train, {images['extra_train']} extra "
          f"train_aug, {images['val']} val images ({time.perf_counter() - start:.1f} s)")
    return 0
