"""HDF5 stores of random-walk outputs (one file per shard of images).

The walk (IRNet boundary inference + 2^exp_times propagation steps) is the expensive part
of the pseudo labels; the background threshold applied afterwards is not. Keeping the walk's
continuous maps lets a new threshold (a calibration, a sweep) relabel a shard in seconds
without touching the IRNet or the CAMs (``pcam pseudo-labels``).

Per image, one group named by the image id (percent-encoded exactly as in the CAM store:
ids such as ``plate1/tile_003`` hold '/', HDF5's path separator) holding:

* ``keys``       int64 (K,)  segmentation ids (1..N) of the maps, as in the CAM store
* ``propagated`` float32 (K, h, w)  the walk output on the stride-4 grid, before upsampling
  and normalisation: exactly the array ``random_walk.labels_from_propagated`` receives
* ``boundary``   float16 (h, w)  the IRNet boundary map the walk used (inspection, figures)
* attrs ``height``, ``width``: the full image size the labels are cropped to

``propagated`` is float32 on purpose: float16 would move near-ties between classes and the
background plane, so labels read back would differ from those computed straight from the
walk. It is float32 in memory too, so ``WalkRecord.labels`` gives today's labels bit for bit.
The boundary is only looked at, so float16 suffices. gzip+shuffle, chunked per map plane,
compact object headers (``libver="latest"``), as in ``cam_store``.

A walk store holds the images of its shard's CAM store (``cam.store.exported_ids``); readers
check each file on open (``shard_store``) and, given the shard's ids, its images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from pcam_core.common.shard_store import ShardStore, ShardStoreWriter

# /2: the writer records its image count, which readers check.
STORE_FORMAT = "pcam-walk-store/2"


@dataclass
class WalkRecord:
    keys: np.ndarray  # int64 (K,) segmentation ids
    propagated: np.ndarray  # float32 (K, h, w) walk output on the stride-4 grid
    boundary: np.ndarray  # float32 (h, w), the stored float16 values
    height: int
    width: int

    def labels(self, bg_threshold: float) -> np.ndarray:
        """uint8 (height, width) pseudo label: the walk's maps against a background threshold."""
        import torch

        from pcam_core.irn import random_walk

        return random_walk.labels_from_propagated(torch.from_numpy(self.propagated), self.keys,
                                                  self.height, self.width, float(bg_threshold))


class WalkStoreWriter(ShardStoreWriter):
    """Write one shard store; the file appears under its name only when closed successfully.

    ``params`` (the walk's beta, exp_times, radius) are kept as a JSON file attribute, so a
    store says which walk made it.
    """

    FORMAT = STORE_FORMAT
    WHAT = "walk store"

    def __init__(self, path: str | Path, params: dict | None = None, compression_level: int = 4):
        super().__init__(path, compression_level)
        self.params = params

    def __enter__(self) -> "WalkStoreWriter":
        super().__enter__()
        if self.params is not None:
            self._file.attrs["walk_params"] = json.dumps(self.params, sort_keys=True)
        return self

    def add(self, image_id: str, keys: Iterable[int], propagated: np.ndarray, boundary: np.ndarray,
            height: int, width: int) -> None:
        keys = np.asarray(keys if isinstance(keys, np.ndarray) else list(keys), dtype=np.int64).reshape(-1)
        propagated = np.asarray(propagated)
        boundary = np.asarray(boundary)
        where = f"{self.path}: image {image_id!r}"
        if propagated.ndim != 3 or propagated.shape[0] != len(keys):
            raise ValueError(f"{where}: {len(keys)} keys but propagated maps of shape {propagated.shape}")
        if boundary.shape != propagated.shape[1:]:
            raise ValueError(f"{where}: boundary {boundary.shape} does not match the maps' grid "
                             f"{propagated.shape[1:]}")
        h, w = boundary.shape
        if not (0 < height <= 4 * h and 0 < width <= 4 * w):  # the grid has stride 4
            raise ValueError(f"{where}: a {h}x{w} stride-4 grid cannot cover a {height}x{width} image")
        group = self.new_group(image_id)
        group.attrs["height"] = int(height)
        group.attrs["width"] = int(width)
        group.create_dataset("keys", data=keys)
        for dataset, data, dtype in (("propagated", propagated, np.float32), ("boundary", boundary, np.float16)):
            data = np.asarray(data, dtype=dtype)
            packed = {}
            if data.size:  # HDF5 refuses empty chunks; a no-class image stores no planes
                packed = {"chunks": (1, *data.shape[1:]) if data.ndim == 3 else data.shape,
                          "compression": "gzip", "compression_opts": self.level, "shuffle": True}
            group.create_dataset(dataset, data=data, **packed)


class WalkStore(ShardStore[WalkRecord]):
    """Read-only view over one or more shard stores: ``store[id]``, ``ids()``, ``in``, ``len``."""

    FORMAT = STORE_FORMAT
    WHAT = "walk store"
    RULE = "random_walk"

    DATASETS = {"keys": (1, "iu"), "propagated": (3, "f"), "boundary": (2, "f")}
    ATTRS = ("height", "width")

    def _shape_problem(self, shapes, attrs) -> str | None:
        (k,), (kp, h, w), grid = shapes["keys"], shapes["propagated"], shapes["boundary"]
        if k != kp or grid != (h, w):
            return (f"shapes keys ({k},), propagated ({kp}, {h}, {w}), boundary {grid} do not match "
                    f"(K maps each, one grid)")
        if not (0 < attrs["height"] <= 4 * h and 0 < attrs["width"] <= 4 * w):
            return f"a {h}x{w} stride-4 grid cannot cover its {attrs['height']}x{attrs['width']} image"
        return None

    def _record(self, group) -> WalkRecord:
        return WalkRecord(keys=group["keys"][()],
                          propagated=np.asarray(group["propagated"][()], dtype=np.float32),
                          boundary=group["boundary"][()].astype(np.float32),
                          height=int(group.attrs["height"]), width=int(group.attrs["width"]))
