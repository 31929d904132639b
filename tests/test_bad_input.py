"""Bad input, one test per row of README "Bad input": each is skipped and counted under
strict: false and an error under strict: true, or always fails fast; every message names the
file or config key and the fix."""

from __future__ import annotations

import builtins
import copy
import errno
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from snakemake.utils import validate

from pcam_core.common.atomic_output import DiskFullError, atomic_path, write_text
from pcam_core.common.label_png import write_label_png
from pcam_core.common.shard_store import ShardStoreWriter
from pcam_core.data.bad_input import BadInputError
from pcam_core.data.click_formats import ClickFileError
from pcam_core.data.custom_dataset import build_custom_index
from pcam_core.data.data_report import report_markdown
from pcam_core.data.download import ChecksumError, download
from pcam_core.data.index_builder import add_arguments, build_index, main as build_index_main
from test_index_builder import _layout as voc_layout
from test_workflow import REPO, TINY_CONFIG, snakemake, write_config

SIZE = (12, 16)  # (height, width) of every tiny image


def custom_layout(root: Path, rows: str = "", val: str = "c\n") -> dict:
    """Images a, b (train_aug) and c (val), 16x12, one valid click each; ``rows`` adds CSV rows."""
    for name in "abc":
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*SIZE, 3), 90, np.uint8)).save(root / "images" / f"{name}.png")
    (root / "clicks.csv").write_text("image,x,y,class\na,1.5,2,cell\nb,3,4,dust\nc,5,6,cell\n" + rows)
    (root / "val.txt").write_text(val)
    return {"images": str(root / "images"), "classes": ["cell", "dust"],
            "clicks": str(root / "clicks.csv"), "val": str(root / "val.txt")}


def skipped(index) -> dict[str, int]:
    """The non-zero counts of the data report's "Skipped input"."""
    return {kind: n for kind, n in index.report["skipped"]["counts"].items() if n}


# ------------------------------------------------------------ corrupt or truncated image
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_corrupt_or_truncated_image_is_skipped_or_strict_error(tmp_path, damage):
    params = custom_layout(tmp_path)
    bad = tmp_path / "images" / "b.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*SIZE, 3), np.uint8)).save(bad)
    _truncate(bad) if damage == "truncated" else bad.write_bytes(b"not an image")
    index = build_custom_index(params)
    assert "b" not in index.records and "b" not in index.splits["train_aug"]  # never met later
    assert skipped(index) == {"image_cannot_be_decoded": 1}
    assert index.report["skipped"]["examples"]["image_cannot_be_decoded"][0].startswith(f"{bad}: cannot decode image")
    assert index.report["clicks"]["clicks_on_skipped_images"] == 1  # b's click, not "image not found"
    assert "## Skipped input" in report_markdown(index.report, index.classes)
    with pytest.raises(BadInputError, match="cannot be decoded") as error:
        build_custom_index(params, strict=True)
    assert f"{bad}: cannot decode image" in str(error.value) and "replace it with a good copy" in str(error.value)


def test_truncated_jpeg_of_the_voc_layout_is_found_at_index_time(tmp_path):
    voc, sbd, points = voc_layout(tmp_path)
    _truncate(voc / "JPEGImages" / "t2.jpg")  # its header alone still reads fine
    index = build_index("voc2012", voc, sbd, points)
    assert "t2" not in index.records and skipped(index)["image_cannot_be_decoded"] == 1
    with pytest.raises(BadInputError, match=r"JPEGImages/t2\.jpg: cannot decode image \(Truncated File Read\)"):
        build_index("voc2012", voc, sbd, points, strict=True)


def test_the_stage_log_counts_what_was_skipped(tmp_path, capsys):
    """`pcam build-index` ends its log (stderr) with the skipped counts."""
    import argparse

    params = custom_layout(tmp_path)
    _truncate(tmp_path / "images" / "b.png")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--name", "custom", "--params", json.dumps(params), "--out", str(out / "index.json"),
                              "--report-json", str(out / "r.json"), "--report-md", str(out / "r.md")])
    assert build_index_main(args) == 0
    log = capsys.readouterr().err
    assert "bad input skipped and counted (strict: false): 1 x image file that cannot be decoded" in log
    assert json.loads((out / "r.json").read_text())["skipped"]["counts"]["image_cannot_be_decoded"] == 1
    assert "| image file that cannot be decoded (corrupt or truncated) | 1 |" in (out / "r.md").read_text()


# ------------------------------------------------------------ image listed but missing
def test_image_listed_in_a_split_but_missing(tmp_path):
    params = custom_layout(tmp_path, val="c\nghost\n")
    index = build_custom_index(params)
    assert index.splits["val"] == ["c"] and skipped(index) == {"image_listed_but_missing": 1}
    with pytest.raises(BadInputError, match=r"add the image, or remove its id from the split list:\n"
                                            r"    .*val.txt:2: 'ghost'"):
        build_custom_index(params, strict=True)

    voc, sbd, points = voc_layout(tmp_path / "voc")
    (voc / "JPEGImages" / "t1.jpg").unlink()
    index = build_index("voc2012", voc, sbd, points)
    assert "t1" not in index.splits["train"] and skipped(index)["image_listed_but_missing"] == 1
    with pytest.raises(BadInputError, match=r"t1 \(in train, train_aug\): neither .*t1\.jpg"):
        build_index("voc2012", voc, sbd, points, strict=True)


# ------------------------------------------------------------ masks (never skipped)
@pytest.mark.parametrize("strict", [False, True])
def test_mask_whose_size_differs_from_its_image_fails_fast(tmp_path, strict):
    params = custom_layout(tmp_path)
    write_label_png(tmp_path / "masks" / "a.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(BadInputError, match=r"masks/a.png: mask is 5x5 but image .*a.png is 16x12 "
                                            r"\(upright\).*export it at the image's size"):
        build_custom_index({**params, "masks": str(tmp_path / "masks")}, strict=strict)

    voc, sbd, points = voc_layout(tmp_path / "voc")
    write_label_png(voc / "SegmentationClass" / "t1.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(BadInputError, match=r"SegmentationClass/t1.png: mask is 5x5 but image .*t1.jpg is 12x8"):
        build_index("voc2012", voc, sbd, points, strict=strict)


@pytest.mark.parametrize("strict", [False, True])
def test_mask_values_outside_the_classes_and_255_fail_fast(tmp_path, strict):
    params = custom_layout(tmp_path)
    mask = np.zeros(SIZE, np.uint8)
    mask[0, :3] = [1, 255, 7]  # 1 and 255 are fine, 7 is not (two object classes)
    write_label_png(tmp_path / "masks" / "a.png", mask)
    with pytest.raises(BadInputError, match=r"masks/a.png: mask values \[7\] are not class ids 0..2 "
                                            r"or 255 \(ignore\): relabel"):
        build_custom_index({**params, "masks": str(tmp_path / "masks")}, strict=strict)

    voc, sbd, points = voc_layout(tmp_path / "voc")
    mask = np.zeros((8, 12), np.uint8)
    mask[0, 0] = 21  # VOC has 20 object classes
    write_label_png(voc / "SegmentationClass" / "t1.png", mask)
    with pytest.raises(BadInputError, match=r"t1.png: mask values \[21\] are not class ids 0..20"):
        build_index("voc2012", voc, sbd, points, strict=strict)


def test_mask_without_an_image(tmp_path):
    params = {**custom_layout(tmp_path), "masks": str(tmp_path / "masks")}
    write_label_png(tmp_path / "masks" / "a_mask.png", np.zeros(SIZE, np.uint8))  # named unlike a
    index = build_custom_index(params)
    assert index["a"].gt_png is None and skipped(index) == {"mask_without_image": 1}
    assert index.report["masks_without_image_examples"] == ["a_mask"]
    with pytest.raises(BadInputError, match=r"name it <image id>.png .*:\n    .*masks/a_mask.png"):
        build_custom_index(params, strict=True)


# ------------------------------------------------------------ click files that do not parse
UNPARSEABLE = {  # format -> (file or folder to write, content, where the message points)
    "wtp": ("clicks.json", '{"a": [{"cls": 1, "x": 1', r"clicks.json: line 1, column \d+: invalid JSON"),
    "csv": ("clicks.csv", "image,x,y\na,1,2\n", r"clicks.csv: line 1: CSV header lacks column\(s\) class"),
    "cvat": ("clicks.xml", '<annotations><image name="a"><points', r"clicks.xml: line 1, column \d+: invalid XML"),
    "labelme": ("labelme/a.json", '{"shapes": [{"label": ', r"labelme/a.json: line 1, column \d+: invalid JSON"),
    "napari": ("napari/a.csv", "index,axis-1,label\n0,3,cell\n", r"napari/a.csv: line 1: napari CSV needs columns axis-0 and axis-1"),
    "qupath": ("qupath/a.png.geojson", '{"type": "FeatureCollection", "features": [{',
               r"a.png.geojson: line 1, column \d+: invalid JSON"),
}


@pytest.mark.parametrize("fmt", sorted(UNPARSEABLE))
def test_click_file_that_does_not_parse_fails_fast(tmp_path, fmt):
    params = custom_layout(tmp_path)
    name, content, where = UNPARSEABLE[fmt]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    clicks = path if "/" not in name else path.parent
    with pytest.raises(ClickFileError, match=where + r".*dataset.clicks: correct or re-export it"):
        build_custom_index({**params, "clicks": str(clicks), "clicks_format": fmt})  # even not strict


def test_voc_click_json_that_does_not_parse_fails_fast(tmp_path):
    voc, sbd, points = voc_layout(tmp_path)
    points.write_text('{"t1": [{"cls": 5, "x": 4')
    with pytest.raises(ValueError, match=r"points.json: not valid JSON \(.*line 1 column \d+.*\); "
                                         r"dataset.points: correct the file"):
        build_index("voc2012", voc, sbd, points)


# ------------------------------------------------------------ unusable clicks
def test_click_with_an_unknown_class(tmp_path):
    params = custom_layout(tmp_path, rows="a,2,2,artefact\n")
    index = build_custom_index(params)
    assert index.report["clicks"]["unknown_class_names"] == {"artefact": 1}
    assert skipped(index) == {"click_unknown_class": 1} and len(index["a"].clicks) == 1
    with pytest.raises(BadInputError, match=r"click whose class is not in the class list; fix: add the class "
                                            r"to dataset.classes, or correct the label:\n    clicks.csv:5 \('artefact'\)"):
        build_custom_index(params, strict=True)


@pytest.mark.parametrize("row, kind", [
    ("a,-1,2,cell", "click_negative"),
    ("a,2,-0.5,cell", "click_negative"),
    ("a,16,2,cell", "click_out_of_bounds"),  # x == width: outside (pixel columns 0..15)
    ("a,2,12,cell", "click_out_of_bounds"),
    ("a,two,2,cell", "click_malformed"),
    ("a,nan,2,cell", "click_malformed"),
    ("a,2,inf,cell", "click_malformed"),
    ("a,15.99,11.5,cell", None),  # non-integer coordinates are kept as they are
])
def test_negative_out_of_bounds_and_non_integer_coordinates(tmp_path, row, kind):
    params = custom_layout(tmp_path, rows=row + "\n")
    index = build_custom_index(params)
    if kind is None:
        click = index["a"].clicks[-1]
        assert (click.x, click.y, click.pixel) == (15.99, 11.5, (11, 15)) and skipped(index) == {}
        build_custom_index(params, strict=True)  # nothing to refuse
        return
    assert skipped(index) == {kind: 1} and len(index["a"].clicks) == 1
    with pytest.raises(BadInputError, match=r"clicks.csv:5"):
        build_custom_index(params, strict=True)


def test_strict_lists_every_problem_not_just_the_first(tmp_path):
    params = custom_layout(tmp_path, rows="a,-1,2,cell\nb,99,2,cell\nb,1,1,artefact\nnope,1,1,cell\n")
    _truncate(tmp_path / "images" / "a.png")
    index = build_custom_index(params)
    assert skipped(index) == {"image_cannot_be_decoded": 1, "click_unknown_class": 1,
                              "click_out_of_bounds": 1, "click_image_not_found": 1}
    assert index.report["clicks"]["clicks_on_skipped_images"] == 2
    with pytest.raises(BadInputError) as error:
        build_custom_index(params, strict=True)
    message = str(error.value)
    assert message.startswith("strict is true and the input has 4 problem(s)")
    for where in ("a.png: cannot decode image", "clicks.csv:6 (x 99.0, y 2.0; image 16x12)",
                  "clicks.csv:7 ('artefact')", "clicks.csv:8 (nope)"):
        assert where in message, where
    # a's clicks went with its image; b keeps its valid one
    assert "clicks.csv:5" not in message


# ------------------------------------------------------------ images without clicks
def test_an_image_with_no_clicks(tmp_path):
    params = custom_layout(tmp_path)
    (tmp_path / "clicks.csv").write_text("image,x,y,class\na,1.5,2,cell\n")  # b and val image c: none
    index = build_custom_index(params)
    assert [r.id for r in index.training_records()] == ["a"]
    assert skipped(index) == {"training_image_without_click": 1}  # c is in val: needs no click
    assert index.report["train_aug_without_valid_click"]["examples"] == ["b"]
    with pytest.raises(BadInputError, match=r"train_aug image with no usable click(.|\n)*images/b.png"):
        build_custom_index(params, strict=True)


# ------------------------------------------------------------ empty splits (never skipped)
def test_a_split_that_is_empty_after_filtering_fails_fast(tmp_path):
    params = custom_layout(tmp_path)
    _truncate(tmp_path / "images" / "c.png")  # the only val image
    with pytest.raises(BadInputError, match=r"split val is empty: all 1 of its images were skipped "
                                            r"\(.*1 x image file that cannot be decoded"):
        build_custom_index(params)

    params = custom_layout(tmp_path / "no_clicks")
    (tmp_path / "no_clicks" / "clicks.csv").write_text("image,x,y,class\na,99,2,cell\nb,1,1,artefact\n")
    with pytest.raises(BadInputError, match=r"no image to train on: none of the 2 train_aug images has a "
                                            r"usable click .*1 x click outside its image"):
        build_custom_index(params)

    voc, sbd, points = voc_layout(tmp_path / "voc")
    (voc / "JPEGImages" / "v1.jpg").unlink()
    with pytest.raises(BadInputError, match="split val is empty: all 1 of its images were skipped"):
        build_index("voc2012", voc, sbd, points)


# ------------------------------------------------------------ config values
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.mark.parametrize("edit, named", [
    ({"shards": "two"}, r"'two' is not of type 'integer'(.|\n)*On instance\['shards'\]"),
    ({"cam": {"epochs": -1}}, r"-1 is less than the minimum of 1(.|\n)*On instance\['cam'\]\['epochs'\]"),
    ({"strict": "yes"}, r"'yes' is not of type 'boolean'(.|\n)*On instance\['strict'\]"),
    ({"dataset": {"val_fraction": 1.5}}, r"On instance\['dataset'\]\['val_fraction'\]"),
], ids=["shards", "cam.epochs", "strict", "dataset.val_fraction"])
def test_config_value_of_the_wrong_type_or_out_of_range(edit, named):
    with pytest.raises(Exception, match=named):
        validate(copy.deepcopy(edit), str(SCHEMA))


def test_config_error_stops_a_dry_run_naming_the_key(tmp_path):
    write_config(tmp_path, {**copy.deepcopy(TINY_CONFIG), "shards": "two"})
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "On instance['shards']" in result.stdout + result.stderr


def test_strict_defaults_to_false_and_reaches_only_the_index(tmp_path):
    config = {}
    validate(config, str(SCHEMA))
    assert config["strict"] is False
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert rules.count('config["strict"]') == 1 and "--strict" in (REPO / "workflow/rules/data.smk").read_text()


# ------------------------------------------------------------ download checksum
def test_download_whose_checksum_differs(tmp_path):
    source = tmp_path / "server" / "archive.tar"
    source.parent.mkdir()
    source.write_bytes(b"x" * 5000)
    out = tmp_path / "downloads" / "archive.tar"
    with pytest.raises(ChecksumError) as error:
        download(source.as_uri(), out, md5="0" * 32, retries=1)
    message = str(error.value)
    assert message.startswith(f"{out}.bad: MD5 mismatch: got ") and "expected " + "0" * 32 in message
    assert "next run downloads it again" in message and "check the URL" in message
    assert not out.exists() and not Path(f"{out}.part").exists()

    download(source.as_uri(), out)  # a good copy, then a changed expectation
    with pytest.raises(ChecksumError, match=rf"{out}: MD5 mismatch.*delete it to download it again"):
        download(source.as_uri(), out, md5="1" * 32)

    record = tmp_path / "downloads" / "clicks.md5"  # no published checksum: the first one counts
    download(source.as_uri(), tmp_path / "downloads" / "first.tar", record_md5=record)
    source.write_bytes(b"y" * 5000)
    with pytest.raises(ChecksumError, match=rf"MD5 mismatch.*delete {record} to accept a new file"):
        download(source.as_uri(), tmp_path / "downloads" / "second.tar", record_md5=record)


# ------------------------------------------------------------ full disk
class FillingDisk:
    """Files opened for writing under ``root`` hold ``room`` bytes in all; the next write
    raises ENOSPC after writing what fits, as a full disk does."""

    def __init__(self, monkeypatch, root: Path, room: int):
        self.room = room
        real_open = builtins.open

        def open_on_this_disk(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, Path)) and str(file).startswith(str(root)) and set(mode) & set("wax+"):
                return _FillingFile(handle, self)
            return handle

        monkeypatch.setattr(builtins, "open", open_on_this_disk)
        monkeypatch.setattr(io, "open", open_on_this_disk)  # pathlib's write_text


class _FillingFile:
    def __init__(self, handle, disk: FillingDisk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        fits = data[: self._disk.room]
        self._handle.write(fits)
        self._disk.room -= len(fits)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _write_bytes(path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"x" * 4096)


def _write_index_json(path: Path) -> None:
    write_text(path, json.dumps({"images": ["x" * 100] * 50}))


def _write_label_png(path: Path) -> None:
    write_label_png(path, np.random.default_rng(0).integers(0, 3, (64, 64), np.uint8))


def _write_hdf5_store(path: Path, monkeypatch) -> None:
    import h5py

    def write_fails(*args, **kwargs):  # h5py's error for a failed write carries no errno
        raise OSError("Can't write data (file write failed: time = Mon Jan  1 00:00:00 2024, "
                      f"filename = '{path}', file descriptor = 5, errno = 28, error message = "
                      "'No space left on device', buf = 0x1, total write size = 4096)")

    monkeypatch.setattr(h5py.Group, "create_dataset", write_fails)
    with ShardStoreWriter(path) as store:
        store.new_group("plate1/a").create_dataset("maps", data=np.zeros((4, 8, 8), np.float16))


@pytest.mark.parametrize("writer", ["atomic_path", "json", "label_png", "hdf5_store"])
def test_full_disk_while_writing_leaves_no_partial_file(tmp_path, monkeypatch, writer):
    folder = tmp_path / "results" / "run"
    path = folder / {"atomic_path": "out.bin", "json": "index.json", "label_png": "a.png",
                     "hdf5_store": "0-of-2.h5"}[writer]
    if writer == "hdf5_store":
        write = lambda: _write_hdf5_store(path, monkeypatch)  # noqa: E731
    else:
        FillingDisk(monkeypatch, tmp_path, room=100)
        write = {"atomic_path": _write_bytes, "json": _write_index_json, "label_png": _write_label_png}[writer]
        write = (lambda w: lambda: w(path))(write)
    with pytest.raises(DiskFullError) as error:
        write()
    assert error.value.errno == errno.ENOSPC
    assert str(error.value).startswith(f"[Errno 28] disk full while writing {path} (nothing was written under that name)")
    assert f"free space on the file system of {folder}" in str(error.value)
    assert list(folder.iterdir()) == []  # no partial file under the final name, no temp file


def test_full_disk_during_a_download_keeps_the_partial_and_does_not_retry(tmp_path, monkeypatch):
    source = tmp_path / "server" / "archive.tar"
    source.parent.mkdir()
    source.write_bytes(b"x" * 5000)
    out = tmp_path / "downloads" / "archive.tar"
    FillingDisk(monkeypatch, tmp_path / "downloads", room=1000)
    with pytest.raises(DiskFullError, match=rf"disk full while writing {out}.part \(the partial download "
                                            r"is kept and the next run resumes it\)"):
        download(source.as_uri(), out, retries=5, backoff=60)  # a retry would sleep a minute
    assert Path(f"{out}.part").stat().st_size == 1000 and not out.exists()
