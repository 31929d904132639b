"""A small example dataset in the "custom" layout, as a microscopy lab brings it.

``pcam make-example --out DIR`` writes, from one seed and byte for byte reproducibly::

    DIR/
      images/plate1/tile_000.tif ...     16-bit grayscale TIFFs in sub-folders; the image id
      images/plate2/tile_026.tif ...     is the path below images/ without the extension,
                                         e.g. "plate1/tile_000"
      masks/plate1/tile_003.png ...      ground truth for the val images only: class-index
                                         PNGs (0 = background, 1..3 = classes, 255 = ignore,
                                         a 1-2 px band along every outline); half palette
                                         ("P") and half grayscale ("L") PNGs
      val.txt                            the val image ids, one per line; train = the rest
      clicks/whats_the_point.json        the SAME clicks in six formats (pick any one):
      clicks/points.csv                    "What's the point" JSON, plain CSV
      clicks/annotations.xml               (image,x,y,class), CVAT for images 1.1,
      clicks/labelme/<id>.json             LabelMe (one JSON per image), napari points
      clicks/napari/<id>.csv               CSV (one per image) and QuPath GeoJSON (one per
      clicks/qupath/<id>.tif.geojson       image, named "<image file name>.geojson")
      example_info.json                  classes, ids, valid-click counts, injected quirks

Coordinates follow /work/notes/click_formats_spec.md: x = column, y = row, pixel (r, c)
covers [c, c+1) x [r, r+1); napari alone puts pixel centres at integers (axis-0 = y - 0.5,
axis-1 = x - 0.5). Every click has a whole number of hundredths of a pixel, so CVAT's
two-decimal ``points`` attribute carries exactly what the other formats carry.

The tiles look like fluorescence microscopy (a nuclear stain): a dim background with noise
and uneven illumination, three object classes with their own shape and texture, and a
per-tile exposure gain (some tiles ~4x brighter), so no fixed intensity window or threshold
works and only per-image windowing does. A small ResNet trained from scratch on a CPU for
about a minute learns the classes from shape, size and texture.

Every click format carries the same quirks that real annotation files have (counted in
example_info.json): a click with an unknown class, a click at x == width, a negative
coordinate, a click for an image that does not exist, train images without clicks (one with
no entry / file, one with an empty one), a malformed entry, and, where the tool has them,
a non-point shape that must be ignored.
"""

from __future__ import annotations

import csv
import io
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image
from scipy import ndimage

from pcam_core.common.atomic_output import atomic_directory
from pcam_core.common.class_list import IGNORE_INDEX
from pcam_core.common.label_png import label_to_image

CLASSES = ("nucleus", "mitotic_cell", "debris")  # class numbers 1, 2, 3
UNKNOWN_CLASS = "artefact"  # a label the lab used in the tool but not in the class list
LABEL_NAMES = CLASSES + (UNKNOWN_CLASS,)  # label number k is LABEL_NAMES[k - 1]; 4 = unknown
LABEL_COLOURS = ((60, 120, 255), (255, 60, 200), (255, 200, 0), (128, 128, 128))
STRAY_ID = "plate9/tile_999"  # an image the click files name but images/ does not hold
STRAY_SIZE = (80, 80)  # (height, width) the tools claim for it
IMAGE_EXT = ".tif"
PARAM_KEYS = ("seed", "num_train", "num_val", "min_size", "max_size")
DEFAULT_PARAMS = {"seed": 0, "num_train": 40, "num_val": 12, "min_size": 64, "max_size": 96}
MAX_IMAGES = 10_000
TIMESTAMP = "2024-05-02 09:30:00.000000+00:00"  # fixed, so the CVAT file is reproducible


# --------------------------------------------------------------------------- parameters
def check_params(params: dict | None) -> dict:
    """Fill in the defaults and validate; a clear error names the bad key."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ValueError(f"example params: unknown key(s) {unknown}; expected {list(PARAM_KEYS)}")
    out = {**DEFAULT_PARAMS, **params}
    for key in PARAM_KEYS:
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"example params: {key} must be an integer, got {value!r}")
    if out["seed"] < 0:
        raise ValueError(f"example params: seed must be >= 0, got {out['seed']}")
    # Four train images: two stay without clicks, the others host the injected bad clicks.
    if out["num_train"] < 4:
        raise ValueError(f"example params: num_train must be >= 4, got {out['num_train']}")
    if out["num_val"] < 2:  # one palette and one grayscale mask at least
        raise ValueError(f"example params: num_val must be >= 2, got {out['num_val']}")
    if out["num_train"] + out["num_val"] > MAX_IMAGES:
        raise ValueError(f"example params: at most {MAX_IMAGES} images are supported")
    if out["min_size"] < 48:  # the largest nucleus must fit a tile
        raise ValueError(f"example params: min_size must be >= 48 pixels, got {out['min_size']}")
    if out["max_size"] < out["min_size"]:
        raise ValueError(f"example params: max_size ({out['max_size']}) is smaller than "
                         f"min_size ({out['min_size']})")
    if out["max_size"] > 2048:
        raise ValueError(f"example params: max_size must be <= 2048 pixels, got {out['max_size']}")
    return out


# --------------------------------------------------------------------------- drawing
@dataclass
class Tile:
    """One rendered tile: 16-bit counts, the instance map and each instance's class."""

    counts: np.ndarray  # uint16 H x W
    instances: np.ndarray  # int32 H x W, 0 = background, k = object k
    classes: list[int]  # class number of object k at position k - 1

    @property
    def label(self) -> np.ndarray:
        lut = np.asarray([0] + self.classes, dtype=np.uint8)
        return lut[self.instances]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation (grain, clumps)."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return field / max(float(field.std()), 1e-9)


# Each class drawer takes the pixel centres in the object's rotated frame (u along, v across,
# origin at its centre) and returns (mask, relative brightness profile, amplitude in counts).
# Amplitude ranges overlap on purpose: shape, size and texture tell the classes apart.
def _nucleus(rng, u, v):
    """Large round-to-oval dome, fine granular chromatin, one or two darker nucleoli."""
    a = rng.uniform(7.0, 11.0)
    b = a * rng.uniform(0.75, 0.95)
    rho2 = (u / a) ** 2 + (v / b) ** 2
    mask = rho2 <= 1.0
    profile = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    profile *= 1.0 + 0.1 * _smooth_noise(rng, u.shape, 0.8)
    for _ in range(int(rng.integers(1, 3))):
        nu, nv = rng.uniform(-0.45, 0.45) * a, rng.uniform(-0.45, 0.45) * b
        profile[(u - nu) ** 2 + (v - nv) ** 2 <= rng.uniform(1.5, 2.5) ** 2] *= 0.55
    return mask, profile, rng.uniform(900.0, 2200.0)


def _mitotic_cell(rng, u, v):
    """Condensed chromatin: a metaphase bar or an anaphase pair of lobes, bright and clumpy."""
    if rng.uniform() < 0.5:  # metaphase plate: a thin capsule
        half, width = rng.uniform(5.5, 7.5), rng.uniform(1.4, 2.0)
        mask = (np.maximum(np.abs(u) - half, 0.0) ** 2 + v ** 2) <= width ** 2
    else:  # anaphase: two lobes that just touch
        radius = rng.uniform(3.2, 4.5)
        offset = radius * rng.uniform(0.85, 1.0)
        mask = (((u - offset) ** 2 + v ** 2) <= radius ** 2) | (((u + offset) ** 2 + v ** 2)
                                                                 <= radius ** 2)
    profile = 1.0 + 0.3 * np.tanh(1.5 * _smooth_noise(rng, u.shape, 0.6))
    return mask, profile, rng.uniform(1400.0, 2800.0)


def _debris(rng, u, v):
    """Small irregular fragment with a sharp, flat, speckled look; any brightness."""
    radius = rng.uniform(2.6, 4.2)
    phi = np.arctan2(v, u)
    edge = np.ones_like(phi)
    for k in (2, 3, 5):
        edge += rng.uniform(0.08, 0.22) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
    mask = np.hypot(u, v) <= radius * edge
    profile = 1.0 + 0.25 * rng.uniform(-1.0, 1.0, size=u.shape)
    return mask, profile, rng.uniform(500.0, 2800.0)


DRAW = {1: _nucleus, 2: _mitotic_cell, 3: _debris}
CLASS_LOOKS = {
    "nucleus": "large round/oval dome (radius 7-11 px), fine granular texture, darker nucleoli",
    "mitotic_cell": "thin bright bar or two touching lobes (condensed chromatin), clumpy",
    "debris": "small irregular fragment (radius 3-4 px), sharp edges, speckled, any brightness",
}


def render_tile(rng: np.random.Generator, h: int, w: int) -> Tile:
    """Draw 1-4 non-overlapping objects on an unevenly lit, noisy background."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    instances = np.zeros((h, w), dtype=np.int32)
    signal = np.zeros((h, w), dtype=np.float64)
    classes: list[int] = []
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, 4))
        for _attempt in range(30):
            cy, cx = rng.uniform(12, h - 12), rng.uniform(12, w - 12)
            angle = rng.uniform(0, math.pi)
            c, s = math.cos(angle), math.sin(angle)
            u, v = c * (xx - cx) + s * (yy - cy), -s * (xx - cx) + c * (yy - cy)
            mask, profile, amplitude = DRAW[cls](rng, u, v)
            # Keep a 3 px gap: objects never touch, so every outline band is its own. The
            # core (eroded by 1 px) is never ignored in the mask, clicks go there.
            if ndimage.binary_erosion(mask).any() and not (
                    ndimage.binary_dilation(mask, iterations=3) & (instances > 0)).any():
                break
        else:
            continue
        classes.append(cls)
        instances[mask] = len(classes)
        signal[mask] = amplitude * profile[mask]
    signal = ndimage.gaussian_filter(signal, 0.7)  # the microscope's blur

    # Uneven illumination (a tilt and vignetting) dims objects and background alike.
    angle = rng.uniform(0, 2 * math.pi)
    tilt = (math.cos(angle) * xx + math.sin(angle) * yy) / max(h, w)
    tilt -= tilt.mean()
    radial = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    illumination = 1.0 + rng.uniform(0.2, 0.6) * tilt - rng.uniform(0.05, 0.25) * radial
    haze = rng.uniform(0, 120) * np.clip(_smooth_noise(rng, (h, w), 6.0), 0, None)
    background = rng.uniform(180.0, 420.0) + haze  # out-of-focus glow
    photons = (background + signal) * illumination
    shot = rng.normal(size=(h, w)) * np.sqrt(2.0 * photons)
    # Exposure differs from tile to tile: most near 1x, some 2x, some about 4x brighter.
    gain = float(rng.choice([rng.uniform(0.8, 1.25), rng.uniform(1.7, 2.3),
                             rng.uniform(3.4, 4.0)], p=[0.55, 0.2, 0.25]))
    counts = gain * (photons + shot) + rng.normal(0, 6.0, size=(h, w))
    counts = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    return Tile(counts, instances, classes)


def ignore_bands(instances: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean 1-2 px bands along every outline (the border is ambiguous, as in VOC)."""
    inner = int(rng.integers(0, 2))
    band = np.zeros(instances.shape, dtype=bool)
    for k in range(1, int(instances.max()) + 1):
        mask = instances == k
        eroded = ndimage.binary_erosion(mask, iterations=inner) if inner else mask
        band |= ndimage.binary_dilation(mask, iterations=1) & ~eroded
    return band


# --------------------------------------------------------------------------- clicks
@dataclass(frozen=True)
class Click:
    """One logical click, written identically into every format.

    Coordinates are integers in hundredths of a pixel, so every format (CVAT keeps two
    decimals) carries the same value. ``quirk`` is None for a valid click, else its kind.
    """

    image: str
    label: int  # 1..3 = CLASSES, 4 = UNKNOWN_CLASS
    x: int
    y: int
    rank: int
    quirk: str | None = None

    @property
    def name(self) -> str:
        return LABEL_NAMES[self.label - 1]


def _centi(rng: np.random.Generator, pixel: int) -> int:
    """A coordinate inside pixel ``pixel``, in hundredths, never on the pixel's edge."""
    return pixel * 100 + int(rng.integers(5, 96))


def object_clicks(rng: np.random.Generator, image_id: str, tile: Tile) -> list[Click]:
    """One click per object (a second on one in five), near its middle.

    The pixel is drawn from the half of the object's core (the object eroded by 1 px)
    closest to its centroid: annotators click near the middle, and the core is never in
    the ignore band of the mask, so every val click hits its class there.
    """
    clicks: list[Click] = []
    ranks = {cls: 0 for cls in range(1, len(CLASSES) + 1)}
    for k, cls in enumerate(tile.classes, start=1):
        mask = tile.instances == k
        rows, cols = np.nonzero(ndimage.binary_erosion(mask, iterations=1))
        dist = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
        near = np.flatnonzero(dist <= np.median(dist))
        for _ in range(2 if rng.uniform() < 0.2 else 1):
            pick = int(near[rng.integers(len(near))])
            ranks[cls] += 1
            clicks.append(Click(image_id, cls, _centi(rng, int(cols[pick])),
                                _centi(rng, int(rows[pick])), ranks[cls]))
    return clicks


@dataclass
class ClickPlan:
    """Everything the six writers need: the logical clicks and the injected quirks."""

    clicks: list[Click]  # valid and bad ones, in image order
    sizes: dict[str, tuple[int, int]]  # (height, width) of every image the files name
    no_entry: str  # train image with no entry / no click file at all
    empty_entry: str  # train image with an entry / file that holds no click
    malformed: Click  # a click whose x the files hold in a broken form
    shape_host: str  # image that gets one non-point shape (LabelMe, CVAT, QuPath)
    shape_box: tuple[int, int, int, int]  # its x0, y0, x1, y1 in hundredths

    @property
    def images(self) -> list[str]:
        """Images the click files name (with an entry or file): all but ``no_entry``."""
        return sorted(i for i in self.sizes if i != self.no_entry)

    def clicks_of(self, image_id: str) -> list[Click]:
        return [c for c in self.clicks if c.image == image_id]


def inject_quirks(rng: np.random.Generator, clicks: list[Click], train: list[str],
                  sizes: dict[str, tuple[int, int]], instances: dict[str, np.ndarray]
                  ) -> ClickPlan:
    """Add one of each quirk users' click files really have.

    Two train images lose their clicks; the bad clicks go to other train images that keep
    their good ones, so no other image loses supervision.
    """
    order = [train[i] for i in rng.permutation(len(train))]
    no_entry, empty_entry, hosts = order[0], order[1], order[2:]
    clicks = [c for c in clicks if c.image not in (no_entry, empty_entry)]

    def host(j: int) -> tuple[str, Click]:
        """The j-th host image and its first click (the bad clicks borrow its class)."""
        image_id = hosts[j % len(hosts)]
        return image_id, next(c for c in clicks if c.image == image_id)

    def next_rank(image_id: str, label: int) -> int:
        return 1 + sum(1 for c in clicks if c.image == image_id and c.label == label)

    image_id, _ = host(0)  # an "artefact" click on a background pixel
    rows, cols = np.nonzero(instances[image_id] == 0)
    pick = int(rng.integers(len(rows)))
    unknown = Click(image_id, LABEL_NAMES.index(UNKNOWN_CLASS) + 1, _centi(rng, int(cols[pick])),
                    _centi(rng, int(rows[pick])), 1, "unknown_class")
    image_id, first = host(1)  # x == width exactly: the off-by-one trap
    beyond = Click(image_id, first.label, sizes[image_id][1] * 100, first.y,
                   next_rank(image_id, first.label), "out_of_bounds")
    image_id, first = host(2)
    negative = Click(image_id, first.label, -125, first.y, next_rank(image_id, first.label),
                     "negative")
    image_id, first = host(3)  # the files hold its x in a broken form
    malformed = Click(image_id, first.label, first.x, first.y, next_rank(image_id, first.label),
                      "malformed")
    stray = Click(STRAY_ID, 1, 1050, 2025, 1, "image_not_found")
    shape_host, _ = host(4)
    h, w = sizes[shape_host]
    x0, y0 = int(rng.integers(2, w // 2)), int(rng.integers(2, h // 2))
    box = (x0 * 100, y0 * 100, (x0 + 8) * 100 + 50, (y0 + 6) * 100 + 25)
    # Bad clicks after the good ones of their image (a stable sort keeps the click order).
    everything = sorted(clicks + [unknown, beyond, negative, malformed, stray],
                        key=lambda c: (c.image, c.quirk is not None))
    return ClickPlan(everything, {**sizes, STRAY_ID: STRAY_SIZE}, no_entry, empty_entry,
                     malformed, shape_host, box)


# --------------------------------------------------------------------------- click writers
def _num(centi: int) -> float:
    """A coordinate as the JSON formats hold it: a float with at most two decimals."""
    return centi / 100


def _json(value) -> str:
    return json.dumps(value, indent=2) + "\n"


def write_wtp(plan: ClickPlan, path: Path) -> None:
    """One JSON object {image id: [{cls, x, y, rank}]}; unknown class = number 4."""
    points = {}
    for image_id in plan.images:
        points[image_id] = [{"cls": c.label, "x": "n/a" if c is plan.malformed else _num(c.x),
                             "y": _num(c.y), "rank": c.rank} for c in plan.clicks_of(image_id)]
    path.write_text(json.dumps(points, separators=(",", ":")) + "\n", encoding="utf-8")


def write_csv(plan: ClickPlan, path: Path) -> int:
    """Plain ``image,x,y,class``; every twentieth valid row names its class by number, as
    hand-merged spreadsheets do. Returns how many rows do."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "x", "y", "class"])
    valid = by_number = 0
    for c in plan.clicks:
        label = c.name
        if c.quirk is None:
            valid += 1
            if valid % 20 == 0:
                label, by_number = str(c.label), by_number + 1
        x = "n/a" if c is plan.malformed else f"{c.x / 100:.2f}"
        writer.writerow([c.image, x, f"{c.y / 100:.2f}", label])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return by_number


def write_cvat(plan: ClickPlan, path: Path) -> None:
    """CVAT for images 1.1: one <points> element per class and image ("x1,y1;x2,y2")."""
    labels = "".join(
        f"        <label>\n          <name>{name}</name>\n"
        f"          <color>#{r:02x}{g:02x}{b:02x}</color>\n          <type>points</type>\n"
        f"          <attributes>\n          </attributes>\n        </label>\n"
        for name, (r, g, b) in zip(LABEL_NAMES, LABEL_COLOURS))
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>",
        "  <meta>", "    <task>", "      <id>1</id>", "      <name>example clicks</name>",
        f"      <size>{len(plan.images)}</size>", "      <mode>annotation</mode>",
        "      <overlap>0</overlap>", "      <bugtracker></bugtracker>",
        f"      <created>{TIMESTAMP}</created>", f"      <updated>{TIMESTAMP}</updated>",
        "      <subset>default</subset>", "      <start_frame>0</start_frame>",
        f"      <stop_frame>{len(plan.images) - 1}</stop_frame>",
        "      <frame_filter></frame_filter>", "      <labels>", labels.rstrip("\n"),
        "      </labels>", "    </task>", f"    <dumped>{TIMESTAMP}</dumped>", "  </meta>"]
    for frame, image_id in enumerate(plan.images):
        h, w = plan.sizes[image_id]
        lines.append(f'  <image id="{frame}" name={quoteattr(image_id + IMAGE_EXT)} '
                     f'width="{w}" height="{h}">')
        clicks = plan.clicks_of(image_id)
        for label in range(1, len(LABEL_NAMES) + 1):
            group = [c for c in clicks if c.label == label and c is not plan.malformed]
            if group:
                coords = ";".join(f"{c.x / 100:.2f},{c.y / 100:.2f}" for c in group)
                lines += [f'    <points label="{LABEL_NAMES[label - 1]}" source="manual" '
                          f'occluded="0" points="{coords}" z_order="0">', "    </points>"]
        if plan.malformed.image == image_id:
            lines += [f'    <points label="{plan.malformed.name}" source="manual" occluded="0" '
                      'points="n/a,3" z_order="0">', "    </points>"]
        if plan.shape_host == image_id:
            x0, y0, x1, y1 = plan.shape_box
            lines += [f'    <box label="debris" source="manual" occluded="0" '
                      f'xtl="{x0 / 100:.2f}" ytl="{y0 / 100:.2f}" xbr="{x1 / 100:.2f}" '
                      f'ybr="{y1 / 100:.2f}" z_order="0">', "    </box>"]
        lines.append("  </image>")
    lines.append("</annotations>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_labelme(plan: ClickPlan, folder: Path) -> None:
    """One LabelMe JSON per image; the malformed point has two points, plus one polygon."""
    for image_id in plan.images:
        h, w = plan.sizes[image_id]
        shapes = []
        for c in plan.clicks_of(image_id):
            points = [[_num(c.x), _num(c.y)]]
            if c is plan.malformed:
                points.append([_num(c.x + 100), _num(c.y)])
            shapes.append({"label": c.name, "points": points, "group_id": None,
                           "description": "", "shape_type": "point", "flags": {}, "mask": None})
        if plan.shape_host == image_id:
            x0, y0, x1, y1 = plan.shape_box
            shapes.append({"label": "debris", "points": [[_num(x0), _num(y0)], [_num(x1), _num(y0)],
                                                         [_num(x1), _num(y1)]],
                           "group_id": None, "description": "", "shape_type": "polygon",
                           "flags": {}, "mask": None})
        depth = image_id.count("/") + 2  # from clicks/labelme/<plate>/ up to the root
        document = {"version": "5.4.1", "flags": {}, "shapes": shapes,
                    "imagePath": "../" * depth + f"images/{image_id}{IMAGE_EXT}",
                    "imageData": None, "imageHeight": h, "imageWidth": w}
        target = folder / f"{image_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_json(document), encoding="utf-8")


def write_napari(plan: ClickPlan, folder: Path) -> None:
    """One napari Points-layer CSV per image: pixel centres at integers, rows first."""
    for image_id in plan.images:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["index", "axis-0", "axis-1", "label"])
        for index, c in enumerate(plan.clicks_of(image_id)):
            axis1 = "n/a" if c is plan.malformed else repr((c.x - 50) / 100)
            writer.writerow([index, repr((c.y - 50) / 100), axis1, c.name])
        target = folder / f"{image_id}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(buffer.getvalue(), encoding="utf-8")


def write_qupath(plan: ClickPlan, folder: Path, rng: np.random.Generator) -> int:
    """One QuPath GeoJSON FeatureCollection per image ("tile_000.tif.geojson").

    QuPath's point tool keeps all points of one class in one MultiPoint annotation; some
    users split them into single points. Groups of two or more valid clicks alternate
    between the two, starting with a MultiPoint. Returns how many MultiPoints were written.
    """
    groups = multipoints = 0

    def feature(geometry: dict, label: int) -> dict:
        return {"type": "Feature", "id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                "geometry": geometry,
                "properties": {"objectType": "annotation",
                               "classification": {"name": LABEL_NAMES[label - 1],
                                                  "color": list(LABEL_COLOURS[label - 1])}}}

    for image_id in plan.images:
        features = []
        clicks = plan.clicks_of(image_id)
        for label in range(1, len(LABEL_NAMES) + 1):
            group = [c for c in clicks if c.label == label and c.quirk is None]
            if len(group) >= 2:
                groups += 1
            if len(group) >= 2 and groups % 2 == 1:
                features.append(feature({"type": "MultiPoint", "coordinates": [
                    [_num(c.x), _num(c.y)] for c in group]}, label))
                multipoints += 1
            else:
                features += [feature({"type": "Point", "coordinates": [_num(c.x), _num(c.y)]},
                                     label) for c in group]
        for c in clicks:  # the bad clicks as single points, each on its own
            if c.quirk is not None:
                coordinates = [_num(c.x)] if c is plan.malformed else [_num(c.x), _num(c.y)]
                features.append(feature({"type": "Point", "coordinates": coordinates}, c.label))
        if plan.shape_host == image_id:
            x0, y0, x1, y1 = (_num(v) for v in plan.shape_box)
            features.append(feature({"type": "Polygon", "coordinates": [
                [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}, 3))
        target = folder / f"{image_id}{IMAGE_EXT}.geojson"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_json({"type": "FeatureCollection", "features": features}),
                          encoding="utf-8")
    return multipoints


# --------------------------------------------------------------------------- the dataset
def plan_ids(params: dict) -> tuple[list[str], list[str]]:
    """All image ids (numbered globally, first half in plate1, the rest in plate2) and the
    val ids, drawn by a seeded permutation; both sorted."""
    total = params["num_train"] + params["num_val"]
    ids = [f"plate{1 + (2 * k) // total}/tile_{k:03d}" for k in range(total)]
    rng = np.random.default_rng([params["seed"], 8_000_001])
    val = sorted(ids[i] for i in rng.permutation(total)[:params["num_val"]])
    return ids, val


def tiff_bytes(counts: np.ndarray) -> bytes:
    """A single-channel 16-bit TIFF (mode "I;16"), uncompressed as microscopes write it."""
    buffer = io.BytesIO()
    Image.fromarray(counts).save(buffer, format="TIFF")
    return buffer.getvalue()


def mask_bytes(label: np.ndarray, palette: bool) -> bytes:
    """A class-index PNG, either with the VOC palette ("P") or plain grayscale ("L")."""
    buffer = io.BytesIO()
    image = label_to_image(label) if palette else Image.fromarray(label, mode="L")
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_example(params: dict | None, out: str | Path) -> dict:
    """Generate the example dataset under ``out`` (atomically); returns example_info."""
    params = check_params(params)
    seed = params["seed"]
    ids, val = plan_ids(params)
    val_set = set(val)
    train = [i for i in ids if i not in val_set]
    clicks: list[Click] = []
    sizes: dict[str, tuple[int, int]] = {}
    instances: dict[str, np.ndarray] = {}
    objects = dict.fromkeys(CLASSES, 0)
    mask_modes = {"P": 0, "L": 0}
    with atomic_directory(out) as tmp:
        for number, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, number])  # each tile depends on (seed, number)
            h = int(rng.integers(params["min_size"], params["max_size"] + 1))
            w = int(rng.integers(params["min_size"], params["max_size"] + 1))
            tile = render_tile(rng, h, w)
            sizes[image_id], instances[image_id] = (h, w), tile.instances
            for cls in tile.classes:
                objects[CLASSES[cls - 1]] += 1
            clicks += object_clicks(rng, image_id, tile)
            target = tmp / "images" / f"{image_id}{IMAGE_EXT}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tiff_bytes(tile.counts))
            if image_id in val_set:
                label = tile.label
                label[ignore_bands(tile.instances, rng)] = IGNORE_INDEX
                palette = val.index(image_id) % 2 == 0
                mask_modes["P" if palette else "L"] += 1
                target = tmp / "masks" / f"{image_id}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(mask_bytes(label, palette))
        (tmp / "val.txt").write_text("".join(f"{i}\n" for i in val), encoding="utf-8")

        quirk_rng = np.random.default_rng([seed, 8_000_002])
        plan = inject_quirks(quirk_rng, clicks, train, sizes, instances)
        folder = tmp / "clicks"
        folder.mkdir()
        write_wtp(plan, folder / "whats_the_point.json")
        csv_by_number = write_csv(plan, folder / "points.csv")
        write_cvat(plan, folder / "annotations.xml")
        write_labelme(plan, folder / "labelme")
        write_napari(plan, folder / "napari")
        multipoints = write_qupath(plan, folder / "qupath", quirk_rng)

        valid = [c for c in plan.clicks if c.quirk is None]
        quirks = {kind: sum(1 for c in plan.clicks if c.quirk == kind)
                  for kind in ("unknown_class", "out_of_bounds", "negative", "image_not_found",
                               "malformed")}
        quirks["no_click_images"] = len({plan.no_entry, plan.empty_entry})
        info = {
            "params": params,
            "classes": list(CLASSES),
            "class_looks": CLASS_LOOKS,
            "image_extension": IMAGE_EXT,
            "ids": {"train": train, "val": val},
            "images": {"train": len(train), "val": len(val)},
            "mask_modes": mask_modes,
            "objects": objects,
            "valid_clicks": {
                "total": len(valid),
                "train": sum(1 for c in valid if c.image not in val_set),
                "val": sum(1 for c in valid if c.image in val_set),
                "per_class": {name: sum(1 for c in valid if c.name == name) for name in CLASSES},
            },
            "quirks": quirks,
            "quirk_details": {
                "unknown_class_name": UNKNOWN_CLASS,
                "unknown_class_number": LABEL_NAMES.index(UNKNOWN_CLASS) + 1,
                "image_not_found": STRAY_ID,
                "no_click_images": {"no_entry": plan.no_entry, "empty_entry": plan.empty_entry},
                "hosts": {c.quirk: c.image for c in plan.clicks
                          if c.quirk not in (None, "image_not_found")},
                "non_point_shape_host": plan.shape_host,
            },
            "non_point_shapes": {"wtp": 0, "csv": 0, "cvat": 1, "labelme": 1, "napari": 0,
                                 "qupath": 1},
            "csv_class_by_number": csv_by_number,
            "qupath_multipoints": multipoints,
            "click_files": {"wtp": "clicks/whats_the_point.json", "csv": "clicks/points.csv",
                            "cvat": "clicks/annotations.xml", "labelme": "clicks/labelme",
                            "napari": "clicks/napari", "qupath": "clicks/qupath"},
        }
        (tmp / "example_info.json").write_text(_json(info), encoding="utf-8")
    return info


# --------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from pcam_core.cli import json_object

    parser.add_argument("--out", required=True,
                        help="output folder (images/, masks/, val.txt, clicks/, example_info.json)")
    parser.add_argument("--params", type=json_object, default={},
                        help="generator parameters as a JSON object; missing keys take the "
                             f"defaults {json.dumps(DEFAULT_PARAMS)}")


def main(args) -> int:
    import time

    start = time.perf_counter()
    info = make_example(args.params, args.out)
    images, clicks = info["images"], info["valid_clicks"]
    print(f"example dataset in {args.out}: {images['train']} train and {images['val']} val "
          f"images, {clicks['total']} valid clicks in six formats under clicks/, "
          f"classes {', '.join(info['classes'])} ({time.perf_counter() - start:.1f} s)")
    return 0
