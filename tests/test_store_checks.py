"""Store checks on open: a truncated, foreign, incomplete or mixed-up HDF5 store is one
StoreError naming the file and the rule that writes it again, never a KeyError or wrong
numbers later."""

import h5py
import numpy as np
import pytest

from irn_fixtures import make_data
from pcam_core.cam.store import CamStore, CamStoreWriter
from pcam_core.common.shard_store import StoreError
from pcam_core.irn import ir_labels
from pcam_core.irn.pseudo_label_pngs import write_pseudo_labels
from pcam_core.irn.walk_store import WalkStore, WalkStoreWriter

MINING = {"fg_threshold": 0.30, "bg_threshold": 0.05, "crf": False}


def _cam_store(path, ids=("a", "b")):
    with CamStoreWriter(path) as writer:
        for image_id in ids:
            writer.add(image_id, [3], np.ones((1, 3, 4), np.float32), np.ones((1, 10, 13), np.float32))
    return path


def _walk_store(path, ids=("a",)):
    with WalkStoreWriter(path) as writer:
        for image_id in ids:
            writer.add(image_id, [1], np.ones((1, 3, 3), np.float32), np.zeros((3, 3), np.float32), 12, 12)
    return path


def _refused(reader, path, message, **kwargs):
    with pytest.raises(StoreError, match=message) as error:
        reader(path, **kwargs)
    assert str(path) in str(error.value) and "delete it and rerun" in str(error.value)
    return str(error.value)


def test_storeerror_is_a_valueerror():
    assert issubclass(StoreError, ValueError)


def test_a_good_store_records_its_format_and_image_count(tmp_path):
    path = _cam_store(tmp_path / "s.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "pcam-cam-store/2" and f.attrs["images"] == 2
    with CamStore(path, shard_ids=["a", "b", "c"], required_ids=["a", "b"]) as store:
        assert sorted(store.ids()) == ["a", "b"] and store["a"].cam.shape == (1, 3, 4)


@pytest.mark.parametrize("keep", [0.9, 0.3, 0.0])
def test_truncated_store(tmp_path, keep):
    path = _cam_store(tmp_path / "s.h5", ids=[f"i{n}" for n in range(20)])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    message = _refused(CamStore, path, r"s.h5: (damaged CAM store, probably truncated|not a pcam CAM store)")
    assert "rule export_cams writes it again" in message


def test_not_hdf5_and_no_marker(tmp_path):
    (tmp_path / "notes.h5").write_text("not HDF5 at all")
    _refused(WalkStore, tmp_path / "notes.h5", r"notes.h5: not a pcam walk store \(not an HDF5 file\)")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    message = _refused(WalkStore, tmp_path / "plain.h5", "an HDF5 file without pcam's format marker")
    assert "rule random_walk writes it again" in message


def test_other_kind_and_other_version(tmp_path):
    _refused(CamStore, _walk_store(tmp_path / "walk.h5"),
             r"walk.h5: not a pcam CAM store \(format 'pcam-walk-store/2', expected 'pcam-cam-store/2'\)")
    old = _cam_store(tmp_path / "old.h5")
    with h5py.File(old, "a") as f:
        f.attrs["format"] = "pcam-cam-store/1"
    _refused(CamStore, old, r"old.h5: a CAM store of another pcam version \(format 'pcam-cam-store/1'")


def test_group_missing_a_dataset_or_with_wrong_shapes(tmp_path):
    path = _cam_store(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        del f["b"]["high_res"]
    _refused(CamStore, path, r"s.h5: damaged CAM store: image 'b': no 'high_res' dataset")

    path = _cam_store(tmp_path / "grid.h5")
    with h5py.File(path, "a") as f:
        del f["a"]["cam"]
        f["a"].create_dataset("cam", data=np.ones((1, 2, 4), np.float16))  # not high_res's stride-4 grid
    _refused(CamStore, path, r"image 'a': shapes keys \(1,\), cam \(1, 2, 4\), high_res \(1, 10, 13\) do not match")

    path = _walk_store(tmp_path / "walk.h5")
    with h5py.File(path, "a") as f:
        del f["a"].attrs["height"]
    _refused(WalkStore, path, r"walk.h5: damaged walk store: image 'a': no 'height' attribute")


def test_image_count_differs_from_the_recorded_one(tmp_path):
    path = _cam_store(tmp_path / "s.h5", ids=["a", "b", "c"])
    with h5py.File(path, "a") as f:
        del f["c"]
    _refused(CamStore, path, r"s.h5: incomplete CAM store: 2 of the 3 images its writer recorded")


def test_images_of_another_shard_or_missing_ones(tmp_path):
    path = _cam_store(tmp_path / "s.h5", ids=["a", "b"])
    _refused(CamStore, path, r"CAM store of other images \(1 of its 2 outside its shard, e.g. \['b'\]\)",
             shard_ids=["a", "c"], required_ids=["a"])
    _refused(CamStore, path, r"incomplete CAM store: missing 1 of its shard's images \(e.g. \['c'\]\)",
             shard_ids=["a", "b", "c"], required_ids=["a", "b", "c"])


def test_damaged_data_is_an_error_naming_the_image(tmp_path):
    """The checks on open read metadata only; a damaged chunk shows when the image is read."""
    path = _cam_store(tmp_path / "s.h5")
    with h5py.File(path, "r") as f:
        offset = f["b"]["high_res"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset)
        raw.write(b"\xff" * 16)
    with CamStore(path) as store:
        store["a"]
        with pytest.raises(StoreError, match=r"s.h5: damaged CAM store: image 'b' cannot be read"):
            store["b"]


def test_stages_refuse_a_mixed_up_or_truncated_store(tmp_path):
    """Through the commands: a CAM store missing an image of its shard (mine-ir-labels), one
    of another shard, and a truncated walk store (pseudo-labels) stop before any output."""
    data = make_data(tmp_path, not_stored=(3,))  # img_3 has a class: export-cams writes it
    out = tmp_path / "ir"
    with pytest.raises(StoreError, match=r"cams.h5: incomplete CAM store: missing 1 of its shard's images "
                                         r"\(e.g. \['img_3'\]\)"):
        ir_labels.mine_shard(data["index"], data["shard"], data["cams"], MINING, out)
    other_shard = tmp_path / "other_shard.txt"
    other_shard.write_text("img_0\nimg_3\n")
    with pytest.raises(StoreError, match=r"cams.h5: CAM store of other images \(2 of its 3 outside its shard"):
        ir_labels.mine_shard(data["index"], other_shard, data["cams"], MINING, out)
    assert not out.exists()

    walk = tmp_path / "walk.h5"
    with CamStore(data["cams"]) as cams, WalkStoreWriter(walk) as writer:
        for image_id, record in cams:
            h, w = record.cam.shape[1:]
            writer.add(image_id, record.keys, record.cam, np.zeros((h, w)), *record.high_res.shape[1:])
    walk.write_bytes(walk.read_bytes()[:-100])
    with pytest.raises(StoreError, match=r"walk.h5: damaged walk store, probably truncated .*rule random_walk"):
        write_pseudo_labels(data["index"], data["shard"], walk, 0.3, tmp_path / "pseudo")
    assert not (tmp_path / "pseudo").exists()
