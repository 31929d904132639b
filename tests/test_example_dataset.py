"""The example microscopy dataset: its layout, 16-bit tiles, val-only masks, six click formats
that hold the same clicks and the same quirks, and reproducible bytes.

The click files are read here with json / csv / ElementTree directly, independently of
pcam's own parsers, so a bug in a writer cannot hide behind the same bug in a reader.
"""

import argparse
import csv
import json
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcam_core.data.example_dataset import (CLASSES, DEFAULT_PARAMS, STRAY_ID, add_arguments,
                                       check_params, main, make_example)

FORMATS = ("wtp", "csv", "cvat", "labelme", "napari", "qupath")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("example") / "dataset"
    info = make_example({}, root)
    return root, info


@pytest.fixture(scope="module")
def sizes(example):
    """(height, width) of every image, read from the TIFFs."""
    root, _ = example
    out = {}
    for path in sorted((root / "images").rglob("*.tif")):
        with Image.open(path) as image:
            out[path.relative_to(root / "images").with_suffix("").as_posix()] = image.size[::-1]
    return out


# --------------------------------------------------------------------------- plain readers
@dataclass
class Read:
    """What a click file holds: (image ref, x, y, class name or "?") per click, with
    image refs normalised to ids (no ".tif"), and the entries that are not clicks."""

    clicks: Counter = field(default_factory=Counter)
    malformed: int = 0
    non_point: int = 0
    entries: set = field(default_factory=set)  # refs that have an entry / a file

    def add(self, ref, x, y, label):
        ref = ref[:-4] if ref.endswith(".tif") else ref
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            self.malformed += 1
            return
        text = str(label)
        if text.isdigit():
            name = CLASSES[int(text) - 1] if 1 <= int(text) <= len(CLASSES) else "?"
        else:
            name = text if text in CLASSES else "?"
        self.clicks[(ref, round(x, 2), round(y, 2), name)] += 1


def per_image_files(folder: Path, suffix: str):
    for path in sorted(folder.rglob(f"*{suffix}")):
        yield path.relative_to(folder).as_posix()[:-len(suffix)], path


def read_wtp(path):
    read = Read()
    for ref, entries in json.loads(path.read_text()).items():
        read.entries.add(ref)
        for e in entries:
            read.add(ref, e["x"], e["y"], e["cls"])
    return read


def read_csv(path):
    read = Read()
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            read.entries.add(row["image"])
            read.add(row["image"], row["x"], row["y"], row["class"])
    return read


def read_cvat(path):
    read = Read()
    for image in ET.parse(path).getroot().iter("image"):
        ref = image.get("name")[:-4]
        read.entries.add(ref)
        for shape in image:
            if shape.tag != "points":
                read.non_point += 1
                continue
            try:
                pairs = [[float(v) for v in p.split(",")] for p in shape.get("points").split(";")]
            except ValueError:
                read.malformed += 1
                continue
            for x, y in pairs:
                read.add(ref, x, y, shape.get("label"))
    return read


def read_labelme(folder):
    read = Read()
    for ref, path in per_image_files(folder, ".json"):
        document = json.loads(path.read_text())
        assert {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight",
                "imageWidth"} <= set(document) and document["imageData"] is None
        read.entries.add(ref)
        for shape in document["shapes"]:
            if shape["shape_type"] != "point":
                read.non_point += 1
            elif len(shape["points"]) != 1:
                read.malformed += 1
            else:
                read.add(ref, *shape["points"][0], shape["label"])
    return read


def read_napari(folder):
    read = Read()
    for ref, path in per_image_files(folder, ".csv"):
        read.entries.add(ref)
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["index", "axis-0", "axis-1", "label"]
            for row in reader:
                try:  # napari puts pixel centres at integers
                    x, y = float(row["axis-1"]) + 0.5, float(row["axis-0"]) + 0.5
                except ValueError:
                    x = y = None
                read.add(ref, x, y, row["label"])
    return read


def read_qupath(folder):
    read = Read()
    for ref, path in per_image_files(folder, ".tif.geojson"):
        document = json.loads(path.read_text())
        assert document["type"] == "FeatureCollection"
        read.entries.add(ref)
        for feature in document["features"]:
            geometry, properties = feature["geometry"], feature["properties"]
            assert properties["objectType"] == "annotation"
            name = properties["classification"]["name"]
            if geometry["type"] == "Point":
                if len(geometry["coordinates"]) != 2:
                    read.malformed += 1
                else:
                    read.add(ref, *geometry["coordinates"], name)
            elif geometry["type"] == "MultiPoint":
                for x, y in geometry["coordinates"]:
                    read.add(ref, x, y, name)
            else:
                read.non_point += 1
    return read


def read_all(root, info):
    files = {fmt: root / rel for fmt, rel in info["click_files"].items()}
    readers = {"wtp": read_wtp, "csv": read_csv, "cvat": read_cvat, "labelme": read_labelme,
               "napari": read_napari, "qupath": read_qupath}
    return {fmt: readers[fmt](files[fmt]) for fmt in FORMATS}


# --------------------------------------------------------------------------- tests
def test_layout_nested_ids_and_val_list(example, sizes):
    root, info = example
    for rel in ("images", "masks", "val.txt", "clicks/annotations.xml", "clicks/points.csv",
                "clicks/whats_the_point.json", "clicks/labelme", "clicks/napari",
                "clicks/qupath", "example_info.json"):
        assert (root / rel).exists(), rel
    assert json.loads((root / "example_info.json").read_text()) == info
    val = (root / "val.txt").read_text().split()
    assert val == info["ids"]["val"] and len(val) == DEFAULT_PARAMS["num_val"]
    assert sorted(info["ids"]["train"] + val) == sorted(sizes)
    assert len(info["ids"]["train"]) == DEFAULT_PARAMS["num_train"]
    assert {i.split("/")[0] for i in sizes} == {"plate1", "plate2"}
    assert all(64 <= min(s) and max(s) <= 96 for s in sizes.values())
    assert info["classes"] == list(CLASSES) and len(set(CLASSES)) == 3


def test_tiles_are_16_bit_and_need_per_image_windowing(example, sizes):
    root, _ = example
    maxima, medians, p99 = [], [], []
    for image_id in sizes:
        with Image.open(root / "images" / f"{image_id}.tif") as image:
            assert image.mode == "I;16"
            counts = np.asarray(image)
        maxima.append(int(counts.max()))
        medians.append(float(np.median(counts)))
        p99.append(float(np.percentile(counts, 99)))
    assert min(maxima) > 255  # an 8-bit cast saturates every tile
    assert max(maxima) > 8000 and min(maxima) < 5000  # gain differs from tile to tile
    # One tile's background is brighter than 99 % of another tile: no fixed window fits.
    assert max(medians) > min(p99)


def test_masks_only_for_val_with_both_png_modes(example, sizes):
    root, info = example
    masks = sorted(p.relative_to(root / "masks").with_suffix("").as_posix()
                   for p in (root / "masks").rglob("*.png"))
    assert masks == info["ids"]["val"]
    modes, ignored = Counter(), 0
    for image_id in masks:
        with Image.open(root / "masks" / f"{image_id}.png") as mask:
            modes[mask.mode] += 1
            label = np.asarray(mask)
        assert label.shape == tuple(sizes[image_id])
        assert set(np.unique(label)) <= {0, 1, 2, 3, 255} and (label == 0).any()
        ignored += int((label == 255).any())
    assert set(modes) == {"P", "L"} and dict(modes) == info["mask_modes"]
    assert ignored == len(masks)  # every object outline is a 255 band


def test_six_formats_hold_the_same_clicks(example):
    root, info = example
    reads = read_all(root, info)
    for fmt in FORMATS:
        assert reads[fmt].clicks == reads["wtp"].clicks, fmt
        assert reads[fmt].malformed == info["quirks"]["malformed"], fmt
        assert reads[fmt].non_point == info["non_point_shapes"][fmt], fmt
    # CVAT keeps two decimals: every coordinate is exactly a 2-decimal number everywhere.
    for _, x, y, _ in reads["wtp"].clicks:
        assert round(x * 100) == pytest.approx(x * 100, abs=1e-6)
        assert round(y * 100) == pytest.approx(y * 100, abs=1e-6)


def test_napari_is_the_csv_shifted_by_half_a_pixel(example):
    root, _ = example
    with open(root / "clicks/points.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["x"] != "n/a"]
    wtp = json.loads((root / "clicks/whats_the_point.json").read_text())
    for image_id in ("plate1/tile_000", sorted(wtp)[-2]):
        with open(root / "clicks/napari" / f"{image_id}.csv", newline="") as handle:
            napari = [(round(float(r["axis-1"]) + 0.5, 2), round(float(r["axis-0"]) + 0.5, 2))
                      for r in csv.DictReader(handle)]
        plain = [(float(r["x"]), float(r["y"])) for r in rows if r["image"] == image_id]
        from_wtp = [(e["x"], e["y"]) for e in wtp[image_id]]
        assert napari == plain == from_wtp and napari


def test_quirk_counts_match_the_files(example, sizes):
    root, info = example
    quirks, details = info["quirks"], info["quirk_details"]
    assert quirks == {"unknown_class": 1, "out_of_bounds": 1, "negative": 1,
                      "image_not_found": 1, "malformed": 1, "no_click_images": 2}
    for fmt, read in read_all(root, info).items():
        found = Counter()
        for (ref, x, y, name), n in read.clicks.items():
            if ref not in sizes:
                found["image_not_found"] += n
            elif name == "?":
                found["unknown_class"] += n
            elif x < 0 or y < 0:
                found["negative"] += n
            elif x >= sizes[ref][1] or y >= sizes[ref][0]:
                found["out_of_bounds"] += n
                assert x == sizes[ref][1], "the out-of-bounds click sits exactly at x == W"
            else:
                found["valid"] += n
        clicked = {ref for ref, *_ in read.clicks}
        found["no_click_images"] = sum(1 for i in info["ids"]["train"] if i not in clicked)
        found["malformed"] = read.malformed
        assert found == {**quirks, "valid": info["valid_clicks"]["total"]}, fmt
        assert STRAY_ID in read.entries, fmt
        no_entry, empty = (details["no_click_images"][k] for k in ("no_entry", "empty_entry"))
        assert no_entry not in read.entries, fmt
        assert (empty in read.entries) == (fmt != "csv"), fmt  # a CSV cannot hold an empty entry
    assert sum(1 for _ in (root / "clicks/labelme").rglob("*.json")) == len(sizes)  # -1 +1 stray
    with open(root / "clicks/points.csv", newline="") as handle:
        by_number = sum(1 for row in csv.DictReader(handle) if row["class"].isdigit())
    multipoints = sum(1 for path in (root / "clicks/qupath").rglob("*.geojson")
                      for f in json.loads(path.read_text())["features"]
                      if f["geometry"]["type"] == "MultiPoint")
    assert by_number == info["csv_class_by_number"] >= 1
    assert multipoints == info["qupath_multipoints"] >= 1
    assert info["valid_clicks"]["total"] >= sum(info["objects"].values())
    assert info["valid_clicks"]["train"] + info["valid_clicks"]["val"] == \
        info["valid_clicks"]["total"]


def test_valid_clicks_hit_their_object_in_the_val_masks(example):
    root, info = example
    read = read_wtp(root / "clicks/whats_the_point.json")
    val, checked = set(info["ids"]["val"]), 0
    for ref, x, y, name in read.clicks:
        if ref in val:
            label = np.asarray(Image.open(root / "masks" / f"{ref}.png"))
            assert label[int(y), int(x)] == CLASSES.index(name) + 1
            checked += 1
    assert checked == info["valid_clicks"]["val"]


def test_same_params_same_bytes_other_seed_other_data(example, tmp_path):
    root, _ = example
    again = tmp_path / "again"
    make_example(dict(DEFAULT_PARAMS), again)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    make_example({"seed": 1, "num_train": 6, "num_val": 2}, other)
    assert (other / "clicks/points.csv").read_bytes() != (root / "clicks/points.csv").read_bytes()


def test_params_defaults_and_errors():
    assert check_params(None) == DEFAULT_PARAMS
    assert check_params({"num_val": 3})["num_val"] == 3
    for bad, words in (({"colour": 1}, "unknown key"), ({"seed": 1.5}, "seed"),
                       ({"num_train": 3}, "num_train"), ({"num_val": 1}, "num_val"),
                       ({"min_size": 100, "max_size": 90}, "max_size"),
                       ({"min_size": 16}, "min_size")):
        with pytest.raises(ValueError, match=words):
            check_params(bad)


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(["--out", str(out), "--params",
                              '{"num_train": 5, "num_val": 2, "max_size": 70}'])
    assert main(args) == 0
    info = json.loads((out / "example_info.json").read_text())
    assert info["images"] == {"train": 5, "val": 2} and info["params"]["min_size"] == 64
    assert "example dataset" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", str(out), "--params", "[1]"])


def test_pcam_click_parser_reads_the_same_clicks_from_all_six(example):
    click_formats = pytest.importorskip("pcam_core.data.click_formats")
    root, info = example

    def name(label):
        text = str(label)
        if text.isdigit():
            return CLASSES[int(text) - 1] if 1 <= int(text) <= len(CLASSES) else "?"
        return text if text in CLASSES else "?"

    def normalised(ref):
        return ref[:-4] if ref.endswith(".tif") else ref

    expected = set(read_wtp(root / "clicks/whats_the_point.json").clicks)
    for fmt in FORMATS:
        for asked in (fmt, "auto"):
            parsed = click_formats.parse_clicks(root / info["click_files"][fmt], fmt=asked)
            got = {(normalised(c.image), round(c.x, 2), round(c.y, 2), name(c.label))
                   for c in parsed.clicks}
            assert got == expected, (fmt, asked)
            assert len(parsed.malformed) == info["quirks"]["malformed"], (fmt, asked)
            assert len(parsed.non_point) == info["non_point_shapes"][fmt], (fmt, asked)
