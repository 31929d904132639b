"""Image decoding and the ImageNet normalisation every network here expects.

:func:`read_rgb` is the one image reader of every stage (index building, CAM training and
export, IRNet, DeepLab, ``pcam predict``): whatever the file holds, it returns the upright
uint8 H x W x 3 RGB array the networks take, and :func:`image_size` gives the (height, width)
of that same array from the file header alone. How images with more than 8 bits per sample
and transparent images become 8-bit RGB is set by an :class:`ImageReading`, which is stored in
the dataset index and in model checkpoints so that every stage reads an image identically.

The rules, in order:

1. Only the first page (PIL's default frame) of a multi-page TIFF or an animated image is read.
2. The EXIF orientation (PIL's ``getexif()``, which includes an XMP ``tiff:Orientation``) is
   applied first, to every mode (:func:`upright`).
3. 8-bit images keep their values exactly: "RGB" as is; "L" and "1" replicated to three
   channels; "P" without transparency through its palette; "CMYK", "YCbCr", "LAB", "HSV" and
   other 8-bit modes through PIL's RGB conversion. So an 8-bit RGB JPEG or PNG gives exactly
   ``np.asarray(image.convert("RGB"))``. A colour-key transparency of an "L" or "RGB" image
   (PNG tRNS) is ignored, as PIL's conversion ignores it.
4. Transparent images ("RGBA", "LA", "PA", "RGBa", "P" with a transparent index) are composited
   over ``ImageReading.alpha_background``: with ``A`` the 8-bit alpha and ``a = A / 255``,
   ``out = round(a * c + (1 - a) * bg)``, computed exactly in integers (no ties can occur).
5. Images with more than 8 bits per sample -- PIL modes "I;16", "I;16B", "I;16L", "I;16N"
   (16-bit and 12-bit gray), "I" (32-bit or signed 16-bit int) and "F" (32-bit float) -- are
   never passed through PIL's conversion (which saturates everything above 255). Their values
   ``v`` map to ``round(255 * (v - lo) / (hi - lo))`` (rounded half up, computed in float64),
   clipped to 0..255, with ``lo``/``hi`` from ``ImageReading.intensity``:

   * "percentile": ``np.percentile`` (linear interpolation) at ``low`` and ``high`` over all
     finite pixel values of the image (NaN and +-inf are ignored);
   * "minmax": the smallest and largest finite pixel value;
   * "fixed": ``low`` and ``high`` themselves;
   * "full": the type's whole range: 0..65535 for "I;16*" and 16-bit RGB, 0..1 for float,
     for "I" the TIFF's own integer type (e.g. -32768..32767 for signed 16-bit), else the
     int32 range.

   If ``hi <= lo`` (a constant image, or no finite value at all) the result is all 0. NaN
   maps to 0, +inf to 255, -inf to 0. Gray is then replicated to three channels.
6. 16-bit RGB and RGBA (PNG, TIFF), which PIL itself would cut to their top byte, are decoded
   to their full 16 bits (two decodes of the same data, one per byte) and windowed as in 5,
   with one window over all three colour channels so that colours keep their balance; a 16-bit
   alpha composites as in 4 with ``a = A / 65535``. The rarer 16-bit "LA", premultiplied RGBA
   and CMYK files are reduced by PIL to their top byte (the "full" window) and then read as 8-bit.
   Images with 2 or more channels of more than 8 bits that PIL cannot open at all (e.g. a
   multichannel microscopy TIFF) raise a ValueError naming the file and suggesting a conversion.

Errors name the file: a missing file raises ``FileNotFoundError("{path}: image file not
found")``, anything undecodable ``ValueError("{path}: cannot decode image (...)")``.
"""

from __future__ import annotations

import math
import numbers
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

INTENSITY_MODES = ("percentile", "minmax", "fixed", "full")

_ORIENTATION_TAG = 0x0112
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
_NATIVE = "L" if sys.byteorder == "little" else "B"
# 16-bit-per-sample raw modes PIL cuts to their top byte, and the raw mode that reads the
# other byte of the same samples instead.
_LOW_BYTE_RAWMODES = {
    f"{mode};16{order}": f"{mode};16{other}"
    for mode in ("RGB", "RGBX", "RGBA")
    for order, other in (("B", "L"), ("L", "B"), ("N", "B" if _NATIVE == "L" else "L"))
}
_CHUNK = 1 << 22  # pixel values mapped at a time (bounds the float64 temporaries)


@dataclass(frozen=True)
class ImageReading:
    """How any image becomes the uint8 RGB every network here takes.

    Stored in the dataset index and in model checkpoints so that every stage and
    ``pcam predict`` read images identically. Only images with more than 8 bits per sample use
    ``intensity``/``low``/``high``; only transparent images use ``alpha_background``.
    """

    # How images with more than 8 bits per sample (16-bit int, 32-bit int, float) map to
    # 0..255: "percentile" (per-image low/high percentiles), "minmax" (per-image min..max),
    # "fixed" (the given low..high values), "full" (the type's whole range: 0..65535 for
    # 16-bit; for float, 0..1).
    intensity: str = "percentile"
    low: float = 1.0    # percentile mode: low percentile; fixed mode: the value that maps to 0
    high: float = 99.8  # percentile mode: high percentile; fixed mode: the value that maps to 255
    alpha_background: tuple[int, int, int] = (255, 255, 255)  # transparent pixels composite over this

    def __post_init__(self) -> None:
        if not isinstance(self.intensity, str) or self.intensity not in INTENSITY_MODES:
            raise ValueError(f"image reading: intensity must be one of {', '.join(INTENSITY_MODES)}, "
                             f"not {self.intensity!r}")
        for key in ("low", "high"):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(float(value))):
                raise ValueError(f"image reading: {key} must be a finite number, not {value!r}")
            object.__setattr__(self, key, float(value))
        if self.intensity == "percentile" and not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"image reading: percentile low/high must satisfy 0 <= low < high <= 100, "
                             f"not low={self.low:g}, high={self.high:g}")
        if self.intensity == "fixed" and not self.low < self.high:
            raise ValueError(f"image reading: fixed low must be below high, "
                             f"not low={self.low:g}, high={self.high:g}")
        background = self.alpha_background
        if (isinstance(background, (str, bytes)) or not hasattr(background, "__len__")
                or len(background) != 3
                or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c <= 255
                       for c in background)):
            raise ValueError(f"image reading: alpha_background must be three integers 0..255, "
                             f"not {background!r}")
        object.__setattr__(self, "alpha_background", tuple(int(c) for c in background))

    def to_json(self) -> dict:
        """All fields (so a later change of a default cannot change how a stored run reads)."""
        return {"intensity": self.intensity, "low": self.low, "high": self.high,
                "alpha_background": list(self.alpha_background)}

    @classmethod
    def from_json(cls, data: dict | None) -> "ImageReading":
        """None or {} -> the defaults; missing keys take their defaults; an unknown key or a
        bad value raises ValueError naming it."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"image reading: expected a JSON object, not {type(data).__name__}")
        unknown = sorted(set(data) - {"intensity", "low", "high", "alpha_background"})
        if unknown:
            raise ValueError(f"image reading: unknown key(s) {', '.join(map(repr, unknown))} "
                             f"(known: intensity, low, high, alpha_background)")
        return cls(**data)


def upright(image: Image.Image) -> Image.Image:
    """The image with its EXIF orientation applied (``ImageOps.exif_transpose``); without an
    orientation, an unchanged copy."""
    return ImageOps.exif_transpose(image)


def read_rgb(path: str | Path, reading: ImageReading | None = None) -> np.ndarray:
    """Decode an image file to upright uint8 H x W x 3 RGB (rules in the module docstring);
    a clear error names a bad file."""
    path = Path(path)
    if reading is None:
        reading = ImageReading()
    elif not isinstance(reading, ImageReading):
        raise TypeError(f"reading must be an ImageReading, not {type(reading).__name__}")
    try:
        with _open(path) as image:
            return _decode(path, image, reading)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(_cannot(path, "cannot decode image", error)) from error


def image_size(path: str | Path, decode: bool = False) -> tuple[int, int]:
    """(height, width) of the upright image :func:`read_rgb` returns, from the file header
    without decoding the pixels (an orientation 5..8 swaps them). The one exception is a PNG
    with metadata chunks after its pixel data: PIL only reads those by decoding it.

    ``decode=True`` also decodes the pixels once (about 2 ms for a VOC JPEG): a truncated or
    corrupt file, whose header alone reads fine, then fails here (the index build) with its
    name rather than in a later stage.
    """
    path = Path(path)
    try:
        with _open(path) as image:
            width, height = image.size
            orientation = _orientation(path, image)
            if isinstance(image, TiffImagePlugin.TiffImageFile) and _tiff_stored_size(image) != image.size:
                orientation = 1  # PIL's TIFF reader applies the orientation itself (size included)
            if decode:
                image.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        what = "cannot decode image" if decode else "cannot read image header"
        raise ValueError(_cannot(path, what, error)) from error
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float32 HWC, RGB/255 then ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0
    return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    # torch is imported here, not at the top: the data, evaluation, calibration and summary
    # stages read images through this module, and a top-level import cost each of their jobs
    # 1.8 s of start-up (of ~2 s in all).
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize (PIL), as IRN resizes images."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize for class-index maps."""
    if label.shape[:2] == (height, width):
        return label
    return np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))


# --- decoding -------------------------------------------------------------------------------

@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """PIL's image of a file opened by us: PIL then never memory-maps it, which in Pillow 13
    scrambles an uncompressed TIFF with an orientation 5..8 (it maps the upright size onto
    the stored pixels)."""
    with open(path, "rb") as fp, Image.open(fp) as image:
        yield image


def _decode(path: Path, image: Image.Image, reading: ImageReading) -> np.ndarray:
    rawmodes = [_tile_rawmode(tile) for tile in image.tile]
    if rawmodes and all(raw in _LOW_BYTE_RAWMODES for raw in rawmodes):
        return _decode_wide_color(path, image, reading)
    full_range = _full_range(image)
    image = upright(image)
    mode = image.mode
    if mode in _WIDE_MODES:
        gray = _window(np.asarray(image), reading, full_range)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return _composite(rgba[:, :, :3], rgba[:, :, 3], 255, reading.alpha_background)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _tile_rawmode(tile) -> str | None:
    args = tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile, rawmode: str):
    args = tile[3]
    args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    if hasattr(tile, "_replace"):
        return tile._replace(args=args)
    return (*tile[:3], args, *tile[4:])


def _decode_wide_color(path: Path, image: Image.Image, reading: ImageReading) -> np.ndarray:
    """16-bit RGB(A): PIL's own decode gives the top bytes; a second decode of the same file
    with the opposite byte order gives the bottom bytes."""
    with _open(path) as other:
        if [_tile_rawmode(t) for t in other.tile] != [_tile_rawmode(t) for t in image.tile]:
            raise ValueError("the file changed while it was read")
        other.tile = [_with_rawmode(t, _LOW_BYTE_RAWMODES[_tile_rawmode(t)]) for t in other.tile]
        low = np.asarray(upright(other), dtype=np.uint8)
    high = np.asarray(upright(image), dtype=np.uint8)
    if high.shape != low.shape:
        raise ValueError("inconsistent 16-bit decodes")
    values = (high.astype(np.uint16) << 8) | low
    rgb = _window(values[:, :, :3], reading, (0.0, 65535.0))
    if values.shape[2] == 4:
        return _composite(rgb, values[:, :, 3], 65535, reading.alpha_background)
    return rgb


def _composite(rgb: np.ndarray, alpha: np.ndarray, opaque: int,
               background: tuple[int, int, int]) -> np.ndarray:
    """round(a * c + (1 - a) * bg) with a = alpha / opaque, exactly (opaque is odd: no ties)."""
    a = alpha.astype(np.int64)[:, :, None]
    bg = np.asarray(background, np.int64)
    mixed = (a * rgb.astype(np.int64) + (opaque - a) * bg + opaque // 2) // opaque
    return mixed.astype(np.uint8)


def _full_range(image: Image.Image) -> tuple[float, float]:
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    if image.mode == "F":
        return 0.0, 1.0
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        try:
            bits = tags.get(258, (32,))
            bits = int(bits[0] if isinstance(bits, tuple) else bits)
            fmt = tags.get(339, (1,))
            fmt = int(fmt[0] if isinstance(fmt, tuple) else fmt)
            if 1 <= bits <= 32:
                if fmt == 2:
                    return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
                return 0.0, float(2 ** bits - 1)
        except (TypeError, ValueError):
            pass
    return float(np.iinfo(np.int32).min), float(np.iinfo(np.int32).max)


def _window(values: np.ndarray, reading: ImageReading, full_range: tuple[float, float]) -> np.ndarray:
    """round(255 * (v - lo) / (hi - lo)) clipped to 0..255 (all 0 when hi <= lo)."""
    values = np.ascontiguousarray(values)
    lo, hi = _window_limits(values, reading, full_range)
    out = np.zeros(values.shape, np.uint8)
    if not hi > lo:
        return out
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, _CHUNK):
        v = flat_in[start:start + _CHUNK].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = np.floor(255.0 * (v - lo) / (hi - lo) + 0.5)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        flat_out[start:start + _CHUNK] = np.clip(scaled, 0.0, 255.0).astype(np.uint8)
    return out


def _window_limits(values: np.ndarray, reading: ImageReading,
                   full_range: tuple[float, float]) -> tuple[float, float]:
    if reading.intensity == "full":
        return full_range
    if reading.intensity == "fixed":
        return reading.low, reading.high
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    if reading.intensity == "minmax":
        return float(values.min()), float(values.max())
    lo, hi = np.percentile(values, [reading.low, reading.high])
    return float(lo), float(hi)


# --- orientation without decoding ------------------------------------------------------------

def _orientation(path: Path, image: Image.Image) -> int:
    """The EXIF orientation exif_transpose will apply, read without decoding the pixels."""
    if isinstance(image, PngImagePlugin.PngImageFile) and "exif" not in image.info:
        # PIL's PNG getexif() decodes the image to reach chunks after the pixel data; only do
        # that when there are such chunks, else read what the header gave.
        if _png_metadata_after_pixels(path):
            return image.getexif().get(_ORIENTATION_TAG, 1)
        return Image.Image.getexif(image).get(_ORIENTATION_TAG, 1)
    return image.getexif().get(_ORIENTATION_TAG, 1)


def _tiff_stored_size(image: TiffImagePlugin.TiffImageFile) -> tuple[int, int] | None:
    try:
        return int(image.tag_v2[256]), int(image.tag_v2[257])
    except (KeyError, TypeError, ValueError):
        return None


def _png_metadata_after_pixels(path: Path) -> bool:
    """Whether a PNG has EXIF or text (XMP, raw EXIF) chunks after its first IDAT."""
    with open(path, "rb") as fp:
        if fp.read(8) != b"\x89PNG\r\n\x1a\n":
            return False
        seen_pixels = False
        while True:
            head = fp.read(8)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IDAT":
                seen_pixels = True
            elif kind == b"IEND":
                return False
            elif seen_pixels and kind in (b"eXIf", b"tEXt", b"zTXt", b"iTXt"):
                return True
            fp.seek(length + 4, 1)


# --- errors ----------------------------------------------------------------------------------

def _cannot(path: Path, what: str, error: BaseException) -> str:
    if isinstance(error, UnidentifiedImageError):
        error = "not an image, or a format or layout PIL cannot read"
    wide = _wide_multichannel_tiff(path)
    if wide is None:
        return f"{path}: {what} ({error})"
    samples, bits = wide
    return (f"{path}: {what} ({error}); it is a TIFF with {samples} channels of {bits} bits, which "
            f"cannot be read here: convert it to an 8-bit RGB image (e.g. Fiji: Image > Color > "
            f"Stack to RGB) or to one single-channel 16-bit TIFF per channel")


def _wide_multichannel_tiff(path: Path) -> tuple[int, int] | None:
    """(samples per pixel, bits per sample) of a TIFF with 2+ channels of more than 8 bits."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(8)
            if head[:4] not in TiffImagePlugin.PREFIXES:
                return None
            if head[2] == 43:  # BigTIFF
                head += fp.read(8)
            ifd = TiffImagePlugin.ImageFileDirectory_v2(head)
            fp.seek(ifd.next)
            ifd.load(fp)
        bits = ifd.get(258, (1,))
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        samples = int(ifd.get(277, 1))
    except Exception:  # only used to word an error message: never mask the real error
        return None
    return (samples, bits) if samples >= 2 and bits > 8 else None
