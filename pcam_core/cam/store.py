"""HDF5 stores of exported class activation maps (one file per shard of images).

Per image, one group named by the image id (percent-encoded: custom ids such as
``plate1/tile_003`` hold '/', HDF5's path separator; VOC ids are unchanged) holding:

* ``keys``     int64 (K,)   segmentation ids (1..N) of the channels, sorted. NOTE: IRN stores
  0-based class indices here; we store the segmentation ids so that ``[0] + keys`` maps an
  argmax over [background plane; maps] straight to a label, with no +1 to forget.
* ``cam``      float16 (K, ceil(H/4), ceil(W/4))  stride-4 maps (the random walk's seeds)
* ``high_res`` float16 (K, H, W)                   full-resolution maps (evaluation, IR labels)

Maps are non-negative and max-normalised per class. float16 plus gzip+shuffle, chunked per
class plane, and the compact HDF5 >= 1.10 object headers (``libver="latest"``: the default
headers cost ~8 KiB per image, a quarter of a small demo image's maps) keep an image at
0.29 of float32 .npy on the demo and 0.19 at VOC sizes (benchmarks/cam_store_size.py).

``export-cams`` stores exactly the shard's images that have a class (``exported_ids``).
Readers check each file on open (``shard_store``); given the shard's ids, also that none of
those images is missing and that no image from outside the shard is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pcam_core.common.shard_store import ShardStore, ShardStoreWriter

# /2: the writer records its image count, which readers check.
STORE_FORMAT = "pcam-cam-store/2"


def exported_ids(index, ids: Iterable[str]) -> list[str]:
    """The ids of ``ids`` that get maps (``export-cams`` skips images without any class)."""
    return [i for i in ids if index[i].export_classes()]


@dataclass
class CamRecord:
    keys: np.ndarray  # int64 (K,) segmentation ids
    cam: np.ndarray  # float32 (K, h4, w4)
    high_res: np.ndarray  # float32 (K, H, W)

    def label_ids(self) -> np.ndarray:
        """Segmentation id of each channel of [background; maps]."""
        return np.concatenate([[0], self.keys]).astype(np.int64)


class CamStoreWriter(ShardStoreWriter):
    """Write one shard store; the file appears under its name only when closed successfully."""

    FORMAT = STORE_FORMAT
    WHAT = "CAM store"

    def add(self, image_id: str, keys: Iterable[int], cam: np.ndarray, high_res: np.ndarray) -> None:
        keys = np.asarray(list(keys), dtype=np.int64)
        if cam.shape[0] != len(keys) or high_res.shape[0] != len(keys):
            raise ValueError(f"{image_id}: {len(keys)} keys but maps of {cam.shape[0]} / {high_res.shape[0]} channels")
        group = self.new_group(image_id)
        group.create_dataset("keys", data=keys)
        for name, maps in (("cam", cam), ("high_res", high_res)):
            maps = np.asarray(maps, dtype=np.float16)
            chunks = (1, *maps.shape[1:]) if maps.shape[0] else None
            group.create_dataset(name, data=maps, chunks=chunks, compression="gzip",
                                 compression_opts=self.level, shuffle=True)


class CamStore(ShardStore[CamRecord]):
    """Read-only view over one or more shard stores: ``store[id]``, ``ids()``, iteration."""

    FORMAT = STORE_FORMAT
    WHAT = "CAM store"
    RULE = "export_cams"

    DATASETS = {"keys": (1, "iu"), "cam": (3, "f"), "high_res": (3, "f")}

    def _shape_problem(self, shapes, attrs) -> str | None:
        (k,), (kc, h4, w4), (kh, h, w) = shapes["keys"], shapes["cam"], shapes["high_res"]
        if not k == kc == kh or (h4, w4) != (-(-h // 4), -(-w // 4)):
            return (f"shapes keys ({k},), cam ({kc}, {h4}, {w4}), high_res ({kh}, {h}, {w}) do not "
                    f"match (K maps each; cam on high_res's stride-4 grid)")
        return None

    def _record(self, group) -> CamRecord:
        return CamRecord(keys=group["keys"][()],
                         cam=group["cam"][()].astype(np.float32),
                         high_res=group["high_res"][()].astype(np.float32))
