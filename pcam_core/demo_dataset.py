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
* ``demo_info.json``: the classes drawn and the quirks injected (what the report should find).

The pictures are designed so that small ResNets trained from scratch on a CPU in about a
minute learn them: five VOC classes, each with its own colour family, shape and texture, on
muted textured backgrounds. The same reader code serves the demo and PASCAL VOC.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from scipy import ndimage

from pcam_core.atomic_output import atomic_directory
from pcam_core.class_list import IGNORE_INDEX
from pcam_core.label_png import label_to_image
from pcam_core.voc_reader import VOC_CLASSES

JPEG_QUALITY = 90
MAX_IMAGES = 100_000
STRAY_ID = "demo_999999"  # an id in points.json that is not part of the dataset
PARAM_KEYS = ("seed", "num_train", "num_extra_train", "num_val", "min_size", "max_size")


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


# --------------------------------------------------------------------------- parameters
def check_params(params: dict) -> dict:
    """Validate ``dataset.demo``; a clear error names the bad key (the schema may be bypassed)."""
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ValueError(f"dataset.demo: unknown key(s) {unknown}; expected {list(PARAM_KEYS)}")
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"dataset.demo: missing key(s) {missing}")
    out = {}
    for key in PARAM_KEYS:
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

    @property
    def label(self) -> np.ndarray:
        lut = np.asarray([0] + self.instance_classes, dtype=np.uint8)
        return lut[self.instances]


def render_image(rng: np.random.Generator, h: int, w: int) -> DemoImage:
    """Draw 1-3 objects (sometimes two of a class) with limited overlap on a background."""
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
        style = CLASS_STYLES[style_index]
        for _attempt in range(25):
            r = rng.uniform(0.2, 0.55) * side / 2
            cx = rng.uniform(0.6 * r, w - 0.6 * r)
            cy = rng.uniform(0.6 * r, h - 0.6 * r)
            angle = rng.uniform(0, 2 * math.pi)
            u, v = _local_coords((h, w), cy, cx, angle)
            mask = shape_mask(style.shape, u, v, r)
            area = int(mask.sum())
            if area < 30:
                continue
            # Accept only if the new object hides little of the others and is itself visible.
            if all((mask & (instances == k)).sum() <= 0.2 * min(area, (instances == k).sum())
                   for k in range(1, len(classes) + 1)):
                break
        else:
            continue
        hue = style.hue + rng.uniform(-0.03, 0.03)
        sat = rng.uniform(0.6, 0.9)
        val = rng.uniform(0.62, 0.95)
        period = rng.uniform(0.25, 0.45) * r
        pattern = _texture(style.texture, u, v, r, period)
        v_map = np.clip(val * (1 + rng.uniform(0.15, 0.25) * pattern), 0, 1)
        colour = _hsv_to_rgb(np.full_like(v_map, hue), np.full_like(v_map, sat), v_map)
        image[mask] = colour[mask]
        classes.append(style.cls)
        instances[mask] = len(classes)
    noise = rng.normal(0, rng.uniform(0.01, 0.035), size=image.shape)
    gain = rng.uniform(0.9, 1.1, size=3)  # mild colour jitter of the whole picture
    rgb = np.clip((image * gain + noise) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Drop instances that ended up fully hidden and renumber.
    present = [k for k in range(1, len(classes) + 1) if (instances == k).any()]
    remap = np.zeros(len(classes) + 1, dtype=np.int32)
    for new, old in enumerate(present, start=1):
        remap[old] = new
    return DemoImage(rgb, remap[instances], [classes[k - 1] for k in present])


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
    small jitter; about 3% land off the object. Coordinates are ints or 1-decimal floats."""
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
                off_rows, off_cols = np.nonzero(~mask)
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


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """Each picture has its own stream, so it depends only on (seed, id)."""
    return np.random.default_rng([seed, int(image_id.split("_")[1])])


def make_demo(params: dict, out: str | Path) -> dict:
    """Generate the demo dataset under ``out`` (atomically); returns the demo_info dict."""
    params = check_params(params)
    seed = params["seed"]
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
        for folder in (voc / "JPEGImages", voc / "SegmentationClass",
                       voc / "ImageSets" / "Segmentation", sbd / "img", sbd / "cls"):
            folder.mkdir(parents=True)
        voc_set = set(voc_ids)
        for image_id in all_ids:
            rng = image_rng(seed, image_id)
            h = int(rng.integers(params["min_size"], params["max_size"] + 1))
            w = int(rng.integers(params["min_size"], params["max_size"] + 1))
            picture = render_image(rng, h, w)
            sizes[image_id] = (h, w)
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
        info = {
            "params": params,
            "classes": {VOC_CLASSES[s.cls]: {"id": s.cls, "shape": s.shape, "hue": s.hue,
                                             "texture": s.texture} for s in CLASS_STYLES},
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
    print(f"demo dataset in {args.out}: {images['train']} train, {images['extra_train']} extra "
          f"train_aug, {images['val']} val images ({time.perf_counter() - start:.1f} s)")
    return 0
