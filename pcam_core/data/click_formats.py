"""Readers for point-annotation ("click") files exported by annotation tools.

Every reader turns its tool's layout into one flat list of ``RawClick`` (image reference,
x, y, label as written, source location). Nothing here knows the images or the class list:
bounds checks and class-name resolution happen later (``custom_dataset``), so that every
rejected click can be reported with the reason and the place it came from.

Coordinate convention (pcam): x = column, y = row, continuous pixel coordinates of the upright
image where pixel (row r, col c) covers [c, c+1) x [r, r+1). Coordinates are kept as floats and
passed on unchanged (x == width included: the validator, which knows the size, rejects it).
napari is the one exception: it puts pixel CENTRES at integer coordinates, so its values are
shifted by +0.5 here.

Formats (``FORMATS``):

* ``wtp`` -- one JSON file: an object mapping image id -> list of
  ``{"cls": int, "x": num, "y": num, "rank": int}`` (the "What's the point" layout). The label
  is the class NUMBER ``cls`` (int); ``rank`` defaults to 1.
* ``csv`` -- one CSV file with a header naming (in any order, case-insensitive, extra columns
  ignored) ``image, x, y, class``. ``image`` is an id, a relative path or a file name; ``class``
  is a name or a number, kept as text. Locations are 1-based file lines (header = line 1).
* ``labelme`` -- one LabelMe JSON per image: ``{"shapes": [{"label", "points": [[x, y]],
  "shape_type": "point", ...}], "imagePath", "imageHeight", "imageWidth", ...}``. Only
  ``point`` shapes are clicks; ``imagePath`` without its extension is a second reference.
* ``cvat`` -- one "CVAT for images 1.1" XML: ``<annotations><image name=...><points
  label=... points="x1,y1;x2,y2"/>...</image></annotations>``. One ``<points>`` element may
  hold several points; the image reference is the ``name`` attribute.
* ``napari`` -- one Points-layer CSV per image: ``index,axis-0,axis-1,<features...>`` with
  axis-0 = row, axis-1 = column (pixel centres at integers: x = axis-1 + 0.5,
  y = axis-0 + 0.5). The class is a feature column (default ``label``).
* ``qupath`` -- one GeoJSON export per image (usually ``<image file name>.geojson``): a
  FeatureCollection, a bare list of Features (older QuPath) or one Feature. ``Point`` and
  ``MultiPoint`` geometries are clicks; the class is ``properties.classification.name``.

Per-image files found in a folder are named by their path relative to that folder without the
click-file extension ("plate1/tile_000", "plate1/tile_000.tif" for QuPath); a single file by
its name without the extension. A file that cannot be read at all raises ``ClickFileError``;
one bad entry inside a readable file is only counted (``ParsedClicks.malformed``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("wtp", "csv", "labelme", "cvat", "napari", "qupath")
SINGLE_FILE_FORMATS = ("wtp", "csv", "cvat")
PER_IMAGE_FORMATS = ("labelme", "napari", "qupath")

# Which files a folder scan looks at, per format (auto: every click-file extension).
_FOLDER_EXTENSIONS = {
    "auto": (".json", ".geojson", ".csv", ".xml"),
    "labelme": (".json",),
    "napari": (".csv",),
    "qupath": (".geojson", ".json"),
}
_CSV_REQUIRED = ("image", "x", "y", "class")
_AXIS_COLUMN = re.compile(r"^axis-(\d+)$")


class ClickFileError(ValueError):
    """A click file that cannot be parsed: the message names the file, the line or element, and the problem."""


@dataclass(frozen=True)
class RawClick:
    image: str              # image reference as the file gives it (id, relative path, file name)
    x: float                # column, pcam convention (napari already shifted by +0.5)
    y: float                # row
    label: str | int | None  # as written: int for wtp's cls, str elsewhere, None = no class given
    source: str             # where it came from, for reports ("points.csv:14", ...)
    rank: int | None = None  # wtp's rank; None elsewhere
    image_alt: str | None = None  # a second reference to try (labelme: imagePath without extension)


@dataclass
class ParsedClicks:
    format: str
    files: int                       # click files read
    clicks: list[RawClick] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)   # entries that are not a readable click
    non_point: list[str] = field(default_factory=list)   # shapes that are not points
    empty_files: list[str] = field(default_factory=list)  # image refs with no click entry at all
    image_refs: list[str] = field(default_factory=list)  # every per-image file's image ref


class _BadEntry(Exception):
    """One entry of a readable file is not a click: counted as malformed, never raised out."""


# ---------------------------------------------------------------------------- value helpers

def _json_number(value) -> float:
    """A finite JSON number as float; strings, booleans, NaN and inf are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadEntry
    try:
        number = float(value)
    except OverflowError:
        raise _BadEntry from None
    if not math.isfinite(number):
        raise _BadEntry
    return number


def _json_integer(value) -> int:
    """An integral JSON number (3 or 3.0) as int; 2.5 is not a class number or rank."""
    number = _json_number(value)
    if not number.is_integer():
        raise _BadEntry
    return int(value) if isinstance(value, int) else int(number)


def _text_number(text: str) -> float:
    """A finite number written as text (CSV cell, XML attribute)."""
    try:
        number = float(text.strip())
    except (ValueError, AttributeError):
        raise _BadEntry from None
    if not math.isfinite(number):
        raise _BadEntry
    return number


def _label_text(value) -> str | None:
    """A class label as stripped text; missing or blank means "no class given" (None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _BadEntry
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise _BadEntry
    return value.strip() or None


def _point_pair(value) -> tuple[float, float]:
    """A JSON ``[x, y]`` pair of finite numbers."""
    if not isinstance(value, list) or len(value) != 2:
        raise _BadEntry
    return _json_number(value[0]), _json_number(value[1])


# ---------------------------------------------------------------------------- file loading

def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ClickFileError(f"{path}: cannot read click file ({error.strerror or error})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ClickFileError(f"{path}: line {line}: not UTF-8 text ({error.reason})") from None


def _load_json(path: Path):
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ClickFileError(
            f"{path}: line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})") from None
    except (ValueError, RecursionError) as error:
        raise ClickFileError(f"{path}: invalid JSON ({error})") from None


def _load_xml(path: Path) -> ET.Element:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ClickFileError(f"{path}: cannot read click file ({error.strerror or error})") from None
    try:
        return ET.fromstring(raw)
    except ET.ParseError as error:
        line, column = error.position
        raise ClickFileError(f"{path}: line {line}, column {column}: invalid XML ({error})") from None


def _csv_rows(text: str, path: Path):
    """(first line, row) of every non-blank CSV row; csv errors become ClickFileError."""
    reader = csv.reader(io.StringIO(text, newline=""))
    previous = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ClickFileError(f"{path}: line {reader.line_num}: invalid CSV ({error})") from None
        start, previous = previous + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield start, row


def _csv_header(text: str, path: Path) -> tuple[int, list[str], object]:
    """Header line number, lower-cased stripped column names and the remaining-rows iterator."""
    rows = _csv_rows(text, path)
    for line, row in rows:
        return line, [name.strip().lower() for name in row], rows
    raise ClickFileError(f"{path}: empty CSV file (a header line is required)")


def _column_index(names: list[str], wanted: str, path: Path, line: int) -> int | None:
    found = [i for i, name in enumerate(names) if name == wanted]
    if len(found) > 1:
        raise ClickFileError(f"{path}: line {line}: column {wanted!r} appears {len(found)} times")
    return found[0] if found else None


def _row_cells(row: list[str], width: int, indices: list[int]) -> list[str]:
    """Cells at ``indices``; a short row, or surplus non-blank cells past the header, is malformed."""
    if len(row) <= max(indices) or any(cell.strip() for cell in row[width:]):
        raise _BadEntry
    return [row[i] for i in indices]


# ---------------------------------------------------------------------------- detection

def _detect_json(data, path: Path) -> str:
    if isinstance(data, dict):
        if "shapes" in data:
            return "labelme"
        if data.get("type") in ("FeatureCollection", "Feature"):
            return "qupath"
        if not data or any(isinstance(value, list) for value in data.values()):
            return "wtp"
    elif isinstance(data, list):
        if not data or any(isinstance(item, dict) and item.get("type") == "Feature" for item in data):
            return "qupath"
    raise ClickFileError(
        f"{path}: unknown JSON click layout: expected LabelMe (object with 'shapes'), QuPath GeoJSON "
        "(FeatureCollection, Feature or list of Features) or wtp (object mapping image id -> list)")


def _detect_file(path: Path) -> tuple[str, object]:
    """Format of one file and its loaded content (so it is read once)."""
    suffix = path.suffix.lower()
    if suffix == ".xml":
        root = _load_xml(path)
        if root.tag != "annotations":
            raise ClickFileError(
                f"{path}: root element is <{root.tag}>, expected <annotations> (CVAT for images 1.1)")
        return "cvat", root
    if suffix == ".csv":
        text = _read_text(path)
        line, names, _ = _csv_header(text, path)
        if "axis-0" in names:
            return "napari", text
        if all(name in names for name in _CSV_REQUIRED):
            return "csv", text
        raise ClickFileError(
            f"{path}: line {line}: CSV header {','.join(names)!r} is neither a click table "
            "(image,x,y,class) nor a napari Points layer (index,axis-0,axis-1,...)")
    if suffix == ".geojson":
        return "qupath", _load_json(path)
    if suffix == ".json":
        data = _load_json(path)
        return _detect_json(data, path), data
    raise ClickFileError(
        f"{path}: cannot tell the click format from the extension {path.suffix!r}; "
        f"give clicks_format (one of {', '.join(FORMATS)})")


def _folder_files(folder: Path, fmt: str) -> list[Path]:
    """Click files under ``folder`` (recursive, hidden entries skipped), sorted by relative path."""
    extensions = _FOLDER_EXTENSIONS[fmt]
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in extensions and path.is_file():
            found.append((relative.as_posix(), path))
    return [path for _, path in sorted(found)]


def _scan_folder(folder: Path, fmt: str) -> tuple[str, list[tuple[Path, object]]]:
    """The folder's format and its files (with content when auto-detection loaded it)."""
    if fmt in SINGLE_FILE_FORMATS:
        raise ClickFileError(f"{folder}: {fmt} clicks are one file; give the file, not a folder")
    files = _folder_files(folder, fmt)
    if not files:
        wanted = " / ".join(f"*{ext}" for ext in _FOLDER_EXTENSIONS[fmt])
        raise ClickFileError(f"{folder}: folder holds no click files ({wanted})")
    if fmt != "auto":
        return fmt, [(path, None) for path in files]
    detected = [(path, *_detect_file(path)) for path in files]
    by_format: dict[str, list[str]] = {}
    for path, found, _ in detected:
        by_format.setdefault(found, []).append(path.relative_to(folder).as_posix())
    if len(by_format) > 1:
        listing = "; ".join(f"{name}: {', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}"
                            for name, paths in sorted(by_format.items()))
        raise ClickFileError(f"{folder}: folder mixes click formats ({listing})")
    (found,) = by_format
    if found in SINGLE_FILE_FORMATS:
        raise ClickFileError(
            f"{folder}: folder holds {found} files, a one-file format; give the file, not a folder")
    return found, [(path, content) for path, _, content in detected]


def detect_format(path: str | Path) -> str:
    """The click format of a file or folder, from its extension and content (see module doc)."""
    path = Path(path)
    if path.is_dir():
        return _scan_folder(path, "auto")[0]
    if not path.exists():
        raise ClickFileError(f"{path}: no such click file or folder")
    return _detect_file(path)[0]


# ---------------------------------------------------------------------------- readers

class _Out:
    """Accumulates one parse; per-image readers report whether a file held any click entry."""

    def __init__(self, fmt: str):
        self.result = ParsedClicks(format=fmt, files=0)

    def entries(self) -> int:
        return len(self.result.clicks) + len(self.result.malformed)


def _parse_wtp(data, path: Path, display: str, out: _Out) -> None:
    if not isinstance(data, dict):
        raise ClickFileError(f"{path}: wtp clicks must be a JSON object mapping image id -> list "
                             f"of clicks, got a JSON {type(data).__name__}")
    result = out.result
    for image, entries in data.items():
        where = f"{display}:{image}"
        if not isinstance(entries, list):
            result.malformed.append(where)
            continue
        if not entries:
            result.empty_files.append(image)
            continue
        for k, entry in enumerate(entries):
            try:
                if not isinstance(entry, dict):
                    raise _BadEntry
                cls = _json_integer(entry.get("cls"))
                x, y = _json_number(entry.get("x")), _json_number(entry.get("y"))
                rank = 1 if entry.get("rank") is None else _json_integer(entry["rank"])
            except _BadEntry:
                result.malformed.append(f"{where}[{k}]")
                continue
            result.clicks.append(RawClick(image, x, y, cls, f"{where}[{k}]", rank=rank))


def _parse_csv(text: str, path: Path, display: str, out: _Out) -> None:
    line, names, rows = _csv_header(text, path)
    indices = [_column_index(names, name, path, line) for name in _CSV_REQUIRED]
    missing = [name for name, index in zip(_CSV_REQUIRED, indices) if index is None]
    if missing:
        raise ClickFileError(f"{path}: line {line}: CSV header lacks column(s) {', '.join(missing)} "
                             f"(needs image,x,y,class; has {','.join(names)})")
    result = out.result
    for line, row in rows:
        where = f"{display}:{line}"
        try:
            image, x, y, label = _row_cells(row, len(names), indices)
            image = image.strip()
            if not image:
                raise _BadEntry
            click = RawClick(image, _text_number(x), _text_number(y), _label_text(label), where)
        except _BadEntry:
            result.malformed.append(where)
            continue
        result.clicks.append(click)


def _parse_napari(text: str, path: Path, display: str, image: str, class_column: str,
                  out: _Out) -> None:
    line, names, rows = _csv_header(text, path)
    axes = sorted(int(m.group(1)) for m in map(_AXIS_COLUMN.match, names) if m)
    if len(axes) > 2:
        raise ClickFileError(f"{path}: line {line}: napari layer has {len(axes)} axis columns "
                             f"({', '.join(f'axis-{a}' for a in axes)}); only 2-D point layers "
                             "(axis-0 = row, axis-1 = column) are supported")
    row_index = _column_index(names, "axis-0", path, line)
    col_index = _column_index(names, "axis-1", path, line)
    if row_index is None or col_index is None:
        raise ClickFileError(f"{path}: line {line}: napari CSV needs columns axis-0 and axis-1 "
                             f"(has {','.join(names)})")
    label_index = _column_index(names, class_column.strip().lower(), path, line)
    indices = [row_index, col_index] + ([label_index] if label_index is not None else [])
    result = out.result
    for line, row in rows:
        where = f"{display}:{line}"
        try:
            cells = _row_cells(row, len(names), indices)
            y, x = _text_number(cells[0]) + 0.5, _text_number(cells[1]) + 0.5
            label = _label_text(cells[2]) if label_index is not None else None
        except _BadEntry:
            result.malformed.append(where)
            continue
        result.clicks.append(RawClick(image, x, y, label, where))


def _labelme_alt(data: dict, image: str) -> str | None:
    """``imagePath`` without extension ('/' separators): tried when the file name does not match."""
    image_path = data.get("imagePath")
    if not isinstance(image_path, str):
        return None
    reference = image_path.strip().replace("\\", "/")
    while reference.startswith("./"):
        reference = reference[2:]
    reference = posixpath.splitext(reference)[0]
    return reference if reference and reference != image else None


def _parse_labelme(data, path: Path, display: str, image: str, out: _Out) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise ClickFileError(f"{path}: not a LabelMe file: expected a JSON object with a 'shapes' list")
    alt = _labelme_alt(data, image)
    result = out.result
    for k, shape in enumerate(data["shapes"]):
        where = f"{display}:shapes[{k}]"
        try:
            if not isinstance(shape, dict):
                raise _BadEntry
            shape_type = shape.get("shape_type", "polygon")  # LabelMe's own default
            if not isinstance(shape_type, str):
                raise _BadEntry
            if shape_type.strip().lower() != "point":
                result.non_point.append(where)
                continue
            points = shape.get("points")
            if not isinstance(points, list) or len(points) != 1:
                raise _BadEntry
            x, y = _point_pair(points[0])
            label = _label_text(shape.get("label"))
        except _BadEntry:
            result.malformed.append(where)
            continue
        result.clicks.append(RawClick(image, x, y, label, where, image_alt=alt))


def _qupath_label(feature: dict) -> str | None:
    properties = feature.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        raise _BadEntry
    classification = properties.get("classification")
    if isinstance(classification, dict):
        return _label_text(classification.get("name"))
    return _label_text(classification)


def _parse_qupath(data, path: Path, display: str, image: str, out: _Out) -> None:
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise ClickFileError(f"{path}: FeatureCollection without a 'features' list")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        raise ClickFileError(f"{path}: not QuPath GeoJSON: expected a FeatureCollection, a Feature "
                             "or a list of Features")
    result = out.result
    for k, feature in enumerate(features):
        where = f"{display}:features[{k}]"
        try:
            if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
                raise _BadEntry
            geometry = feature["geometry"]
            kind = geometry.get("type")
            if not isinstance(kind, str):
                raise _BadEntry
            if kind == "Point":
                points = [_point_pair(geometry.get("coordinates"))]
            elif kind == "MultiPoint":
                coordinates = geometry.get("coordinates")
                if not isinstance(coordinates, list) or not coordinates:
                    raise _BadEntry
                points = [_point_pair(pair) for pair in coordinates]
            else:
                result.non_point.append(where)
                continue
            label = _qupath_label(feature)
        except _BadEntry:
            result.malformed.append(where)
            continue
        _add_points(result, image, points, label, where)


def _add_points(result: ParsedClicks, image: str, points, label, where: str) -> None:
    """Clicks of one element holding several points (CVAT <points>, GeoJSON MultiPoint): each
    gets its own location, ``where[k]``, so a report can point at the exact point."""
    for j, (x, y) in enumerate(points):
        source = f"{where}[{j}]" if len(points) > 1 else where
        result.clicks.append(RawClick(image, x, y, label, source))


def _cvat_points(text: str | None) -> list[tuple[float, float]]:
    """CVAT's ``points="x1,y1;x2,y2"`` attribute; any bad pair makes the element malformed."""
    if text is None or not text.strip():
        raise _BadEntry
    pairs = []
    for part in text.split(";"):
        numbers = part.split(",")
        if len(numbers) != 2:
            raise _BadEntry
        pairs.append((_text_number(numbers[0]), _text_number(numbers[1])))
    return pairs


def _parse_cvat(root: ET.Element, path: Path, display: str, out: _Out) -> None:
    if root.tag != "annotations":
        raise ClickFileError(
            f"{path}: root element is <{root.tag}>, expected <annotations> (CVAT for images 1.1)")
    images = [child for child in root if child.tag == "image"]
    if not images and any(child.tag == "track" for child in root):
        raise ClickFileError(f"{path}: CVAT for video (<track> elements) is not supported; "
                             "export the task as 'CVAT for images 1.1'")
    result = out.result
    for k, element in enumerate(images):
        image = (element.get("name") or "").strip()
        if not image:
            result.malformed.append(f"{display}:image[{k}]")
            continue
        before = out.entries()
        seen: dict[str, int] = {}
        for child in element:
            index = seen[child.tag] = seen.get(child.tag, -1) + 1
            where = f"{display}:image[name={image}]/{child.tag}[{index}]"
            if child.tag != "points":
                result.non_point.append(where)
                continue
            try:
                points = _cvat_points(child.get("points"))
                label = _label_text(child.get("label"))
            except _BadEntry:
                result.malformed.append(where)
                continue
            _add_points(result, image, points, label, where)
        if out.entries() == before:
            result.empty_files.append(image)


# ---------------------------------------------------------------------------- entry point

def _load_for(fmt: str, path: Path):
    if fmt == "cvat":
        return _load_xml(path)
    if fmt in ("csv", "napari"):
        return _read_text(path)
    return _load_json(path)


def _parse_file(fmt: str, content, path: Path, display: str, image: str, class_column: str,
                out: _Out) -> None:
    if content is None:
        content = _load_for(fmt, path)
    out.result.files += 1
    if fmt in SINGLE_FILE_FORMATS:
        {"wtp": _parse_wtp, "csv": _parse_csv, "cvat": _parse_cvat}[fmt](content, path, display, out)
        return
    before = out.entries()
    if fmt == "napari":
        _parse_napari(content, path, display, image, class_column, out)
    elif fmt == "labelme":
        _parse_labelme(content, path, display, image, out)
    else:
        _parse_qupath(content, path, display, image, out)
    out.result.image_refs.append(image)
    if out.entries() == before:
        out.result.empty_files.append(image)


def parse_clicks(path: str | Path, fmt: str = "auto", class_column: str = "label") -> ParsedClicks:
    """Read a click file or folder in ``fmt`` (or auto-detected) into one ``ParsedClicks``.

    ``class_column`` names napari's class feature column (other formats fix their class field).
    """
    path = Path(path)
    fmt = str(fmt).strip().lower()
    if fmt != "auto" and fmt not in FORMATS:
        raise ClickFileError(f"{path}: unknown click format {fmt!r} (expected auto or one of "
                             f"{', '.join(FORMATS)})")
    if path.is_dir():
        fmt, files = _scan_folder(path, fmt)
        out = _Out(fmt)
        top = path.resolve().name or str(path)
        for file, content in files:
            relative = file.relative_to(path).as_posix()
            image = relative[: -len(file.suffix)] if file.suffix else relative
            _parse_file(fmt, content, file, f"{top}/{relative}", image, class_column, out)
        return out.result
    if not path.exists():
        raise ClickFileError(f"{path}: no such click file or folder")
    content = None
    if fmt == "auto":
        fmt, content = _detect_file(path)
    out = _Out(fmt)
    image = path.name[: -len(path.suffix)] if path.suffix else path.name
    _parse_file(fmt, content, path, path.name, image, class_column, out)
    return out.result
