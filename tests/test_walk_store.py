"""Walk store: exact round trip, labels equal to the in-memory ones, clear errors."""

import h5py
import numpy as np
import pytest
import torch

from pcam_core.irn import random_walk
from pcam_core.cam.store import CamStore, CamStoreWriter
from pcam_core.irn.walk_store import STORE_FORMAT, WalkStore, WalkStoreWriter


def _walk(rng, k, h, w):
    # maps spanning many magnitudes (walk tails reach 1e-30), so a lossy dtype would show
    propagated = (rng.random((k, h, w)) * 10.0 ** rng.integers(-30, 2, (k, h, w))).astype(np.float32)
    boundary = rng.random((h, w)).astype(np.float32)
    return propagated, boundary


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    images = {"2007_000032": ([3, 12], 9, 13, 35, 50),
              "plate1/tile_003": ([8], 4, 4, 16, 13),  # '/' is HDF5's path separator
              "odd%name 2": ([1, 2, 20], 3, 5, 9, 20),
              "empty": ([], 6, 7, 24, 25)}  # a no-class image: no planes
    written = {}
    with WalkStoreWriter(tmp_path / "walk.h5", {"beta": 12.0, "exp_times": 8, "radius": 5}) as writer:
        for image_id, (keys, h, w, height, width) in images.items():
            propagated, boundary = _walk(rng, len(keys), h, w)
            writer.add(image_id, keys, propagated, boundary, height, width)
            written[image_id] = (propagated, boundary)
    with h5py.File(tmp_path / "walk.h5", "r") as f:
        assert f.attrs["format"] == STORE_FORMAT and "beta" in f.attrs["walk_params"]
        group = f["plate1%2Ftile_003"]
        assert group["propagated"].dtype == np.float32 and group["boundary"].dtype == np.float16
        assert group["propagated"].chunks == (1, 4, 4) and group["propagated"].compression == "gzip"
    with WalkStore([tmp_path / "walk.h5"]) as store:
        assert len(store) == 4 and sorted(store.ids()) == sorted(images)
        assert "plate1/tile_003" in store and "plate1" not in store
        for image_id, (keys, h, w, height, width) in images.items():
            record = store[image_id]
            propagated, boundary = written[image_id]
            assert record.keys.dtype == np.int64 and record.keys.tolist() == keys
            assert record.propagated.dtype == np.float32
            assert record.propagated.tobytes() == propagated.tobytes()  # bit for bit
            np.testing.assert_array_equal(record.boundary, boundary.astype(np.float16).astype(np.float32))
            assert (record.height, record.width) == (height, width)
        assert not store["empty"].labels(0.3).any() and store["empty"].labels(0.3).shape == (24, 25)
        with pytest.raises(KeyError, match="nowhere"):
            store["nowhere"]


def test_labels_equal_labels_from_propagated(tmp_path):
    rng = np.random.default_rng(1)
    _, boundary = _walk(rng, 2, 10, 12)
    propagated = rng.random((2, 10, 12)).astype(np.float32)  # comparable maps: both classes win somewhere
    with WalkStoreWriter(tmp_path / "walk.h5") as writer:
        writer.add("a", [5, 9], propagated, boundary, 38, 47)
    with WalkStore(tmp_path / "walk.h5") as store:
        record = store["a"]
    for threshold in (0.0, 0.3, 0.7, 1.0):
        expected = random_walk.labels_from_propagated(torch.from_numpy(propagated), [5, 9], 38, 47, threshold)
        label = record.labels(threshold)
        assert label.dtype == np.uint8 and label.shape == (38, 47)
        np.testing.assert_array_equal(label, expected)
    assert set(np.unique(record.labels(0.3)).tolist()) == {0, 5, 9}


def test_several_shards_and_duplicates(tmp_path):
    rng = np.random.default_rng(2)
    for shard, ids in (("s0.h5", ["a", "b"]), ("s1.h5", ["c"]), ("dup.h5", ["b"])):
        with WalkStoreWriter(tmp_path / shard) as writer:
            for image_id in ids:
                writer.add(image_id, [1], *_walk(rng, 1, 3, 3), 12, 12)
    with WalkStore([tmp_path / "s0.h5", tmp_path / "s1.h5"]) as store:
        assert sorted(store.ids()) == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"'b' is in two walk stores: .*s0.h5 and .*dup.h5"):
        WalkStore([tmp_path / "s0.h5", tmp_path / "dup.h5"])


def _write_cam_store(path):
    with CamStoreWriter(path) as writer:
        writer.add("a", [3], np.zeros((1, 2, 2), np.float32), np.zeros((1, 8, 8), np.float32))


def _write_walk_store(path):
    with WalkStoreWriter(path) as writer:
        writer.add("a", [1], *_walk(np.random.default_rng(3), 1, 3, 3), 12, 12)


@pytest.mark.parametrize("reader, kind, write_other, other_format", [
    (WalkStore, "walk store", _write_cam_store, "pcam-cam-store/2"),
    (CamStore, "CAM store", _write_walk_store, "pcam-walk-store/2"),
])
def test_foreign_files_are_refused_by_name(tmp_path, reader, kind, write_other, other_format):
    """Both stores share shard_store's checks: the other store kind, a text file or a missing
    file is an error naming the file, not a KeyError later."""
    write_other(tmp_path / "other.h5")
    with pytest.raises(ValueError, match=rf"other.h5: not a pcam {kind} \(format '{other_format}'"):
        reader(tmp_path / "other.h5")
    (tmp_path / "notes.h5").write_text("not HDF5")
    with pytest.raises(ValueError, match=rf"notes.h5: not a pcam {kind}"):
        reader(tmp_path / "notes.h5")
    with pytest.raises(FileNotFoundError, match=f"missing.h5: {kind} not found"):
        reader(tmp_path / "missing.h5")


def test_writer_checks_and_atomicity(tmp_path):
    path = tmp_path / "walk.h5"
    with pytest.raises(ValueError, match=r"walk.h5: image 'a': 2 keys but propagated maps of shape \(1, 3, 3\)"):
        with WalkStoreWriter(path) as writer:
            writer.add("a", [1, 2], np.zeros((1, 3, 3)), np.zeros((3, 3)), 12, 12)
    assert list(tmp_path.iterdir()) == []  # nothing that looks finished, no temp file
    with pytest.raises(ValueError, match="cannot cover a 13x12 image"):
        with WalkStoreWriter(path) as writer:
            writer.add("a", [1], np.zeros((1, 3, 3)), np.zeros((3, 3)), 13, 12)
    with pytest.raises(ValueError, match="boundary \\(3, 4\\) does not match"):
        with WalkStoreWriter(path) as writer:
            writer.add("a", [1], np.zeros((1, 3, 3)), np.zeros((3, 4)), 12, 12)
    with pytest.raises(ValueError, match="image 'a' added twice"):
        with WalkStoreWriter(path) as writer:
            writer.add("a", [1], np.zeros((1, 3, 3)), np.zeros((3, 3)), 12, 12)
            writer.add("a", [1], np.zeros((1, 3, 3)), np.zeros((3, 3)), 12, 12)
    assert list(tmp_path.iterdir()) == []


def test_the_cam_store_refuses_duplicates_the_same_way(tmp_path):
    """An image in two CAM shards, or added twice, is an error naming it (shard_store)."""
    for name in ("s0.h5", "s1.h5"):
        with CamStoreWriter(tmp_path / name) as writer:
            writer.add("x", [3], np.zeros((1, 2, 2), np.float32), np.zeros((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"'x' is in two CAM stores"):
        CamStore([tmp_path / "s0.h5", tmp_path / "s1.h5"])
    with pytest.raises(ValueError, match="added twice"):
        with CamStoreWriter(tmp_path / "twice.h5") as writer:
            for _ in range(2):
                writer.add("x", [3], np.zeros((1, 2, 2), np.float32), np.zeros((1, 8, 8), np.float32))
    assert not (tmp_path / "twice.h5").exists()
