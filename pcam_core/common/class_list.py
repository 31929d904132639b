"""The dataset's class list: names and colours, background first. It is data, not a constant.

Segmentation ids everywhere: 0 = background, 1..N = the object classes in the order the
dataset gives them, 255 = void (ignored by every loss and by the evaluation). N runs from 1
to 254 because label maps are uint8 and 255 is taken by void.

The class list is written into the dataset index by the data stage and into every model
checkpoint, so each stage takes the class count from the index or from the model it loads.
Only the VOC reader knows VOC's names (``voc_reader.VOC_CLASSES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

IGNORE_INDEX = 255
MAX_OBJECT_CLASSES = 254  # ids 1..254; 255 is void
BACKGROUND = "background"

Colour = tuple[int, int, int]


def colour_map(count: int = 256) -> list[Colour]:
    """The PASCAL VOC colour map (bit-interleaved index bits): distinct colours for any id.

    It is the default colour of every class a dataset does not colour itself, so a label PNG
    of any dataset opens in an image viewer with the colours VOC users know (id 255 is the
    light void colour (224, 224, 192)).
    """
    colours = []
    for index in range(count):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours.append((r, g, b))
    return colours


_DEFAULT_COLOURS = colour_map()


def default_palette() -> list[int]:
    """768 palette values (the colour map), for label PNGs written without a class list."""
    return [v for colour in _DEFAULT_COLOURS for v in colour]


def _check_colour(colour, where: str) -> Colour:
    if (not isinstance(colour, (list, tuple)) or len(colour) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
        raise ValueError(f"{where}: a colour is three integers 0..255 ([r, g, b]), got {colour!r}")
    return (int(colour[0]), int(colour[1]), int(colour[2]))


@dataclass(frozen=True)
class ClassList:
    """Class names (index = segmentation id, ``names[0]`` is the background) and their colours."""

    names: tuple[str, ...]
    colours: tuple[Colour, ...]

    def __post_init__(self):
        if len(self.names) < 2:
            raise ValueError("a class list needs the background and at least one object class")
        if len(self.names) - 1 > MAX_OBJECT_CLASSES:
            raise ValueError(f"{len(self.names) - 1} object classes; at most {MAX_OBJECT_CLASSES} fit "
                             "in a uint8 label map (255 is void)")
        if len(self.colours) != len(self.names):
            raise ValueError(f"{len(self.names)} class names but {len(self.colours)} colours")
        for name in self.names:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"class names must be non-empty strings, got {name!r}")
        seen: dict[str, int] = {}
        for i, name in enumerate(self.names):
            if name in seen:
                raise ValueError(f"class name {name!r} is given twice (ids {seen[name]} and {i})")
            seen[name] = i

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_object_classes(cls, object_classes: Sequence, background: str = BACKGROUND) -> "ClassList":
        """From the config's ``dataset.classes``: names, or ``{name: ..., colour: [r, g, b]}`` items.

        Classes without a colour take the default colour map's colour of their id.
        """
        if isinstance(object_classes, (str, bytes)) or not isinstance(object_classes, Sequence):
            raise ValueError("dataset.classes must be a list of class names (or {name, colour} items)")
        names, colours = [background], [_DEFAULT_COLOURS[0]]
        for i, item in enumerate(object_classes, start=1):
            if isinstance(item, dict):
                unknown = set(item) - {"name", "colour"}
                if unknown or "name" not in item:
                    raise ValueError(f"dataset.classes[{i - 1}]: expected keys name and optional colour, "
                                     f"got {sorted(item)}")
                name = item["name"]
                colour = (_check_colour(item["colour"], f"dataset.classes[{i - 1}] ({name})")
                          if item.get("colour") is not None else None)
            else:
                name, colour = item, None
            if name == background:
                raise ValueError(f"dataset.classes[{i - 1}]: {background!r} is id 0 already; list "
                                 "only the object classes")
            names.append(name)
            colours.append(colour or _DEFAULT_COLOURS[i % 256])
        return cls(tuple(names), tuple(colours))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "ClassList":
        """Names including the background, default colours (VOC: the VOC colour map)."""
        names = tuple(names)
        return cls(names, tuple(_DEFAULT_COLOURS[i] for i in range(len(names))))

    # ------------------------------------------------------------------ queries
    @property
    def num_classes(self) -> int:
        """Classes including the background: the segmentation network's output count."""
        return len(self.names)

    @property
    def num_object_classes(self) -> int:
        """N: the length of the image-level label vector (CAM network outputs)."""
        return len(self.names) - 1

    def palette(self) -> list[int]:
        """768 palette values: the class colours for ids 0..N, the default colour map after."""
        colours = list(self.colours) + _DEFAULT_COLOURS[len(self.colours):]
        return [v for colour in colours for v in colour]

    def id_of(self, name: str) -> int | None:
        """Segmentation id of an object class name; None when the name is not a class."""
        try:
            index = self.names.index(name)
        except ValueError:
            return None
        return index if index > 0 else None

    # ------------------------------------------------------------------ file format
    def to_json(self) -> dict:
        return {"names": list(self.names), "colours": [list(c) for c in self.colours]}

    @classmethod
    def from_json(cls, data: dict, where: str = "class list") -> "ClassList":
        if not isinstance(data, dict) or "names" not in data:
            raise ValueError(f"{where}: expected an object with 'names' (and 'colours')")
        names = tuple(data["names"])
        colours = data.get("colours")
        if colours is None:
            return cls.from_names(names)
        return cls(names, tuple(_check_colour(c, where) for c in colours))
