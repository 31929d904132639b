"""read_rgb / image_size / ImageReading: images as scientists have them (16-bit, float,
transparent, EXIF-rotated) become the right uint8 RGB, and 8-bit RGB stays byte-identical."""

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pcam_core.common.image_io import ImageReading, image_size, read_rgb

SMALL = np.array([[100, 1000, 2000], [3000, 4000, 5100]], np.uint16)


def _hand_window(values, lo, hi):
    """The documented formula, written out per value: round half up of 255 (v - lo) / (hi - lo)."""
    out = [min(255, max(0, int(np.floor(255.0 * (float(v) - lo) / (hi - lo) + 0.5)))) for v in values.ravel()]
    return np.asarray(out, np.uint8).reshape(values.shape)


def _gray3(gray):
    return np.repeat(np.asarray(gray, np.uint8)[:, :, None], 3, axis=2)


def _save(array, path, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


def _png16(path, values):
    """A 16-bit-per-sample PNG (PIL cannot write one with 2+ channels); rows use filters None,
    Sub and Up so a decoder with the wrong bytes-per-pixel would show."""
    h, w, c = values.shape
    raw = values.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(np.int16)
    rows = []
    for y in range(h):
        kind, line = y % 3, raw[y]
        if kind == 1:
            line = line - np.concatenate([np.zeros(2 * c, np.int16), raw[y, :-2 * c]])
        elif kind == 2 and y > 0:
            line = line - raw[y - 1]
        else:
            kind = 0
        rows.append(bytes([kind]) + (line % 256).astype(np.uint8).tobytes())

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", w, h, 16, {2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    return path


def _tiff(path, values, big_endian=False, deflate=False, photometric=None, orientation=None):
    """A one-strip chunky TIFF of any sample count (PIL cannot write 16-bit RGB or 2+ channel
    16-bit TIFFs)."""
    values = values[:, :, None] if values.ndim == 2 else values
    h, w, c = values.shape
    e = ">" if big_endian else "<"
    data = values.astype(values.dtype.newbyteorder(e)).tobytes()
    data = zlib.compress(data) if deflate else data
    photometric = (2 if c in (3, 4) else 1) if photometric is None else photometric
    tags = {256: [w], 257: [h], 258: [values.dtype.itemsize * 8] * c, 259: [8 if deflate else 1],
            262: [photometric], 273: [0], 277: [c], 278: [h], 279: [len(data)], 284: [1],
            339: [{"u": 1, "i": 2, "f": 3}[values.dtype.kind]] * c}
    if photometric == 2 and c == 4:
        tags[338] = [2]  # unassociated alpha
    if orientation:
        tags[274] = [orientation]
    extra_at = 8 + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag in sorted(tags):
        typ, fmt = (4, "I") if tag in (256, 257, 273, 278, 279) else (3, "H")
        vb = struct.pack(e + fmt * len(tags[tag]), *tags[tag])
        if tag == 273:
            vb = struct.pack(e + "I", 0xDEADBEEF)
        if len(vb) <= 4:
            entries += struct.pack(e + "HHI", tag, typ, len(tags[tag])) + vb.ljust(4, b"\0")
        else:
            entries += struct.pack(e + "HHII", tag, typ, len(tags[tag]), extra_at + len(extra))
            extra += vb
    head = (b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "IH", 8, len(tags))
    out = head + entries + struct.pack(e + "I", 0) + extra
    out = out.replace(struct.pack(e + "I", 0xDEADBEEF), struct.pack(e + "I", len(out)))
    path.write_bytes(out + data)
    return path


# --- more than 8 bits -----------------------------------------------------------------------

def test_16bit_tiff_keeps_its_contrast_where_convert_saturates(tmp_path):
    values = np.linspace(0, 60000, 2000).round().astype(np.uint16).reshape(40, 50)
    path = _save(values, tmp_path / "micro.tif")
    with Image.open(path) as image:
        assert image.mode == "I;16"
        old = np.asarray(image.convert("RGB"))
    assert (old == 255).mean() > 0.99  # the old reader: everything above 255 became 255

    rgb = read_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 50, 3)
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all()
    gray = rgb[:, :, 0]
    assert gray.min() == 0 and gray.max() == 255
    assert len(np.unique(gray)) == 256
    order = np.argsort(values, axis=None, kind="stable")
    assert (np.diff(gray.ravel()[order].astype(int)) >= 0).all()  # ranks preserved
    lo, hi = np.percentile(values, [1.0, 99.8])
    np.testing.assert_array_equal(gray, _hand_window(values, lo, hi))


def test_12bit_values_in_a_16bit_png(tmp_path):
    values = np.linspace(100, 4000, 24 * 30).round().astype(np.uint16).reshape(24, 30)
    path = _save(values, tmp_path / "camera.png")
    with Image.open(path) as image:
        assert image.mode == "I;16"
    np.testing.assert_array_equal(read_rgb(path, ImageReading("minmax")),
                                  _gray3(_hand_window(values, 100, 4000)))
    gray = read_rgb(path)[:, :, 0]
    assert gray.min() == 0 and gray.max() == 255


@pytest.mark.parametrize("reading, expected", [
    (ImageReading("percentile", 10, 90), [[0, 29, 92], [156, 220, 255]]),  # lo 550, hi 4550
    (ImageReading("minmax"), [[0, 46, 97], [148, 199, 255]]),               # lo 100, hi 5100
    (ImageReading("fixed", 1000, 3000), [[0, 0, 128], [255, 255, 255]]),    # 127.5 rounds up
    (ImageReading("full"), [[0, 4, 8], [12, 16, 20]]),                      # v / 257
])
def test_each_intensity_mode_by_hand(tmp_path, reading, expected):
    path = _save(SMALL, tmp_path / "small.tif")
    np.testing.assert_array_equal(read_rgb(path, reading), _gray3(expected))


def test_constant_image_is_all_zero_unless_the_window_is_fixed(tmp_path):
    path = _save(np.full((4, 5), 1234, np.uint16), tmp_path / "flat.tif")
    assert not read_rgb(path).any()
    assert not read_rgb(path, ImageReading("minmax")).any()
    np.testing.assert_array_equal(read_rgb(path, ImageReading("fixed", 1000, 2000)),
                                  np.full((4, 5, 3), 60, np.uint8))  # 255 * 234 / 1000 = 59.67


def test_float_tiff(tmp_path):
    values = np.array([[-0.5, 0.25, 0.5], [0.75, 2.0, np.nan]], np.float32)
    path = _save(values, tmp_path / "float.tif")
    with Image.open(path) as image:
        assert image.mode == "F"
    np.testing.assert_array_equal(read_rgb(path, ImageReading("full")),  # 0..1, NaN -> 0
                                  _gray3([[0, 64, 128], [191, 255, 0]]))
    np.testing.assert_array_equal(read_rgb(path, ImageReading("minmax")),  # -0.5..2, NaN ignored
                                  _gray3([[0, 77, 102], [128, 255, 0]]))
    np.testing.assert_array_equal(read_rgb(path, ImageReading("percentile", 0, 100)),
                                  _gray3([[0, 77, 102], [128, 255, 0]]))
    everywhere = _save(np.array([[np.inf, -np.inf, 0.5]], np.float32), tmp_path / "inf.tif")
    np.testing.assert_array_equal(read_rgb(everywhere, ImageReading("full")), _gray3([[255, 0, 128]]))


def test_int32_and_signed_16bit_tiffs(tmp_path):
    path = _save(np.array([[-5, 0, 5, 15]], np.int32), tmp_path / "int32.tif")
    np.testing.assert_array_equal(read_rgb(path, ImageReading("minmax")), _gray3([[0, 64, 128, 255]]))
    signed = _tiff(tmp_path / "s16.tif", np.array([[-32768, 0, 32767]], np.int16))
    with Image.open(signed) as image:
        assert image.mode == "I"
    np.testing.assert_array_equal(read_rgb(signed, ImageReading("full")), _gray3([[0, 128, 255]]))


@pytest.mark.parametrize("kind", ["png", "tiff", "tiff-be", "tiff-deflate", "tiff-be-deflate"])
def test_16bit_rgb_uses_all_16_bits(tmp_path, kind):
    rng = np.random.default_rng(3)
    values = rng.integers(100, 4001, (6, 7, 3)).astype(np.uint16)  # 12-bit data: PIL alone keeps 0..15
    if kind == "png":
        path = _png16(tmp_path / "rgb16.png", values)
    else:
        path = _tiff(tmp_path / "rgb16.tif", values, "be" in kind, "deflate" in kind)
    with Image.open(path) as image:
        assert image.mode == "RGB" and np.asarray(image).max() <= 15
    lo, hi = float(values.min()), float(values.max())
    np.testing.assert_array_equal(read_rgb(path, ImageReading("minmax")), _hand_window(values, lo, hi))
    np.testing.assert_array_equal(read_rgb(path, ImageReading("full")), _hand_window(values, 0, 65535))


def test_16bit_rgba_composites_with_its_16bit_alpha(tmp_path):
    values = np.array([[[0, 30000, 65535, 65535], [65535, 65535, 65535, 0],
                        [0, 0, 0, 13107]]], np.uint16)  # 13107 / 65535 = 0.2
    path = _png16(tmp_path / "rgba16.png", values)
    expected = [[[0, 117, 255], [10, 20, 30], [8, 16, 24]]]  # 255 * 30000 / 65535 = 116.73
    np.testing.assert_array_equal(read_rgb(path, ImageReading("full", alpha_background=(10, 20, 30))),
                                  np.asarray(expected, np.uint8))


def test_16bit_multichannel_tiff_pil_cannot_open_is_a_clear_error(tmp_path):
    path = _tiff(tmp_path / "two_channels.tif", np.zeros((4, 4, 2), np.uint16))
    with pytest.raises(ValueError, match="cannot decode image") as error:
        read_rgb(path)
    assert str(path) in str(error.value) and "2 channels of 16 bits" in str(error.value)
    assert "convert" in str(error.value)
    with pytest.raises(ValueError, match="2 channels of 16 bits"):
        image_size(path)


def test_multipage_tiff_reads_the_first_page(tmp_path):
    first = np.full((3, 4), 7, np.uint8)
    path = tmp_path / "stack.tif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(first * 20)])
    with Image.open(path) as image:
        assert image.n_frames == 2
    np.testing.assert_array_equal(read_rgb(path), _gray3(first))


# --- 8 bits and transparency ----------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp"])
def test_8bit_rgb_is_byte_identical_to_convert(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    path = _save(rgb, tmp_path / f"photo{suffix}")
    with Image.open(path) as image:
        old = np.asarray(image.convert("RGB"))
    new = read_rgb(path, ImageReading("fixed", 0, 1, alpha_background=(1, 2, 3)))
    assert new.dtype == np.uint8 and new.tobytes() == old.tobytes() and new.shape == old.shape


def test_gray_l_and_1bit_are_replicated(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (9, 11), dtype=np.uint8)
    np.testing.assert_array_equal(read_rgb(_save(gray, tmp_path / "gray.png")), _gray3(gray))
    bits = Image.fromarray(gray > 128).convert("1")
    bits.save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "bits.png"), _gray3(np.where(gray > 128, 255, 0)))


def test_rgba_composited_on_white_and_on_a_configured_background(tmp_path):
    rgba = np.array([[[200, 100, 0, 0], [200, 100, 0, 128], [200, 100, 0, 255], [10, 250, 90, 77]]],
                    np.uint8)
    path = _save(rgba, tmp_path / "rgba.png")
    # out = round(a c + (1 - a) bg), a = A / 255; e.g. (128 * 200 + 127 * 255) / 255 = 227.39
    on_white = [[[255, 255, 255], [227, 177, 127], [200, 100, 0], [181, 253, 205]]]
    np.testing.assert_array_equal(read_rgb(path), np.asarray(on_white, np.uint8))
    on_color = [[[40, 80, 160], [120, 90, 80], [200, 100, 0], [31, 131, 139]]]
    np.testing.assert_array_equal(read_rgb(path, ImageReading(alpha_background=(40, 80, 160))),
                                  np.asarray(on_color, np.uint8))
    a = rgba[..., 3:].astype(float) / 255
    formula = np.round(a * rgba[..., :3] + (1 - a) * np.array([40, 80, 160]))
    np.testing.assert_array_equal(np.asarray(on_color), formula)


def test_palette_with_a_transparent_index(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    image = Image.frombytes("P", (3, 2), indices.tobytes())
    image.putpalette([10, 20, 30, 99, 99, 99, 200, 150, 100] + [0] * (253 * 3))
    image.save(tmp_path / "palette.png", transparency=1)
    with Image.open(tmp_path / "palette.png") as reopened:
        assert reopened.mode == "P" and reopened.info["transparency"] == 1
    expected = [[[10, 20, 30], [1, 2, 3], [200, 150, 100]], [[200, 150, 100], [1, 2, 3], [10, 20, 30]]]
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette.png", ImageReading(alpha_background=(1, 2, 3))),
                                  np.asarray(expected, np.uint8))
    image.save(tmp_path / "opaque.png")  # no transparency: the palette colours, index 1 included
    assert read_rgb(tmp_path / "opaque.png")[0, 1].tolist() == [99, 99, 99]


def test_la_gray_with_alpha(tmp_path):
    la = np.array([[[100, 0], [100, 255], [100, 51]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    np.testing.assert_array_equal(read_rgb(path), _gray3([[255, 100, 224]]))  # 0.2*100 + 0.8*255
    np.testing.assert_array_equal(read_rgb(path, ImageReading(alpha_background=(0, 0, 0))),
                                  _gray3([[0, 100, 20]]))


# --- orientation ----------------------------------------------------------------------------

def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation, k", [(6, -1), (8, 1)])
def test_jpeg_exif_rotation(tmp_path, orientation, k):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:8, :8] = (250, 10, 10)  # a red corner, top left as stored
    path = _save(rgb, tmp_path / "phone.jpg", exif=_exif(orientation))
    with Image.open(path) as image:
        stored = np.asarray(image.convert("RGB"))
    assert stored.shape == (16, 24, 3)
    out = read_rgb(path)
    np.testing.assert_array_equal(out, np.rot90(stored, k))  # 6: 90 degrees clockwise
    assert out.shape == (24, 16, 3) and image_size(path) == (24, 16)
    corner = (0, 15) if orientation == 6 else (23, 0)
    assert out[corner].tolist()[0] > 200


def test_png_exif_rotation_180(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    path = _save(rgb, tmp_path / "turned.png", exif=_exif(3))
    np.testing.assert_array_equal(read_rgb(path), rgb[::-1, ::-1])
    assert image_size(path) == (5, 9)


def test_png_exif_after_the_pixel_data_still_counts(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    data = _save(rgb, tmp_path / "early.png", exif=_exif(6)).read_bytes()
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append(data[at:at + 12 + length])
        at += 12 + length
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    late = tmp_path / "late.png"
    late.write_bytes(data[:8] + b"".join(rest[:-1] + exif + rest[-1:]))  # eXIf just before IEND
    with Image.open(late) as image:
        assert "exif" not in image.info
    assert image_size(late) == (9, 5)
    np.testing.assert_array_equal(read_rgb(late), np.rot90(rgb, -1))


@pytest.mark.parametrize("compression", [None, "tiff_deflate"])
@pytest.mark.parametrize("orientation, k", [(3, 2), (6, -1), (8, 1)])
@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_orientation_applies_once(tmp_path, compression, orientation, k, depth):
    if depth == 16:
        array, reading, expected = SMALL, ImageReading("full"), _gray3([[0, 4, 8], [12, 16, 20]])
    else:
        array = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10
        reading, expected = None, array
    path = _save(array, tmp_path / "turned.tif", tiffinfo={0x0112: orientation}, compression=compression)
    expected = np.rot90(expected, k)
    assert image_size(path) == expected.shape[:2]
    np.testing.assert_array_equal(read_rgb(path, reading), expected)


@pytest.mark.parametrize("deflate", [False, True])
def test_orientation_applies_once_to_16bit_rgb_tiffs(tmp_path, deflate):
    values = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000
    path = _tiff(tmp_path / "rgb16.tif", values, deflate=deflate, orientation=6)
    assert image_size(path) == (3, 2)
    np.testing.assert_array_equal(read_rgb(path, ImageReading("full")),
                                  np.rot90(_hand_window(values, 0, 65535), -1))


def test_image_size_matches_read_rgb_without_orientation(tmp_path):
    paths = [_save(np.zeros((7, 3), np.uint16), tmp_path / "a.tif"),
             _save(np.zeros((7, 3, 3), np.uint8), tmp_path / "b.jpg"),
             _png16(tmp_path / "c.png", np.zeros((7, 3, 3), np.uint16))]
    for path in paths:
        assert image_size(path) == (7, 3) == read_rgb(path).shape[:2]


# --- ImageReading ---------------------------------------------------------------------------

def test_image_reading_json_round_trip():
    reading = ImageReading("fixed", 100, 4000, (0, 10, 20))
    data = json.loads(json.dumps(reading.to_json()))
    assert data == {"intensity": "fixed", "low": 100.0, "high": 4000.0, "alpha_background": [0, 10, 20]}
    assert ImageReading.from_json(data) == reading
    assert ImageReading.from_json(ImageReading().to_json()) == ImageReading()
    assert ImageReading.from_json(None) == ImageReading.from_json({}) == ImageReading()
    assert ImageReading.from_json({"intensity": "minmax"}) == ImageReading(intensity="minmax")
    assert hash(reading) == hash(ImageReading.from_json(data))


@pytest.mark.parametrize("data, named", [
    ({"contrast": 2}, "contrast"),
    ({"intensity": "auto"}, "intensity"),
    ({"low": "1"}, "low"),
    ({"high": float("nan")}, "high"),
    ({"low": 50, "high": 40}, "percentile"),
    ({"high": 120}, "percentile"),
    ({"intensity": "fixed", "low": 10, "high": 10}, "fixed"),
    ({"alpha_background": [255, 255]}, "alpha_background"),
    ({"alpha_background": [0, 0, 256]}, "alpha_background"),
    ({"alpha_background": "white"}, "alpha_background"),
])
def test_image_reading_rejects_bad_json(data, named):
    with pytest.raises(ValueError, match=named):
        ImageReading.from_json(data)


# --- errors ---------------------------------------------------------------------------------

def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nowhere.png"
    for read in (read_rgb, image_size):
        with pytest.raises(FileNotFoundError, match="image file not found") as error:
            read(missing)
        assert str(missing) in str(error.value)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="cannot decode image") as error:
        read_rgb(corrupt)
    assert str(error.value).startswith(f"{corrupt}: cannot decode image (")
    with pytest.raises(ValueError) as error:
        image_size(corrupt)
    assert str(corrupt) in str(error.value)
    truncated = tmp_path / "truncated.png"
    full = _save(np.zeros((50, 50, 3), np.uint8), tmp_path / "whole.png").read_bytes()
    truncated.write_bytes(full[:len(full) // 2])
    with pytest.raises(ValueError, match="cannot decode image") as error:
        read_rgb(truncated)
    assert str(truncated) in str(error.value)
