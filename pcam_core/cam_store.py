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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote, unquote

import h5py
import numpy as np

from pcam_core.atomic_output import atomic_path

STORE_FORMAT = "pcam-cam-store/1"


@dataclass
class CamRecord:
    keys: np.ndarray  # int64 (K,) segmentation ids
    cam: np.ndarray  # float32 (K, h4, w4)
    high_res: np.ndarray  # float32 (K, H, W)

    def label_ids(self) -> np.ndarray:
        """Segmentation id of each channel of [background; maps]."""
        return np.concatenate([[0], self.keys]).astype(np.int64)


class CamStoreWriter:
    """Write one shard store; the file appears under its name only when closed successfully."""

    def __init__(self, path: str | Path, compression_level: int = 4):
        self.path = Path(path)
        self.level = compression_level
        self._atomic = atomic_path(self.path)
        self._file: h5py.File | None = None

    def __enter__(self) -> "CamStoreWriter":
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w", libver="latest")
        self._file.attrs["format"] = STORE_FORMAT
        return self

    def add(self, image_id: str, keys: Iterable[int], cam: np.ndarray, high_res: np.ndarray) -> None:
        keys = np.asarray(list(keys), dtype=np.int64)
        if cam.shape[0] != len(keys) or high_res.shape[0] != len(keys):
            raise ValueError(f"{image_id}: {len(keys)} keys but maps of {cam.shape[0]} / {high_res.shape[0]} channels")
        group = self._file.create_group(quote(image_id, safe=""))
        group.create_dataset("keys", data=keys)
        for name, maps in (("cam", cam), ("high_res", high_res)):
            maps = np.asarray(maps, dtype=np.float16)
            chunks = (1, *maps.shape[1:]) if maps.shape[0] else None
            group.create_dataset(name, data=maps, chunks=chunks, compression="gzip",
                                 compression_opts=self.level, shuffle=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)


class CamStore:
    """Read-only view over one or more shard stores: ``store[id]``, ``ids()``, iteration."""

    def __init__(self, paths: str | Path | Iterable[str | Path]):
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self._files: list[h5py.File] = []
        self._where: dict[str, h5py.File] = {}
        for path in paths:
            f = h5py.File(path, "r")
            if f.attrs.get("format") != STORE_FORMAT:
                f.close()
                raise ValueError(f"{path}: not a pcam CAM store")
            self._files.append(f)
            for name in f.keys():
                self._where[unquote(name)] = f

    def ids(self) -> list[str]:
        return list(self._where)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, image_id: str) -> CamRecord:
        try:
            group = self._where[image_id][quote(image_id, safe="")]
        except KeyError:
            raise KeyError(f"image {image_id!r} is in none of the CAM stores") from None
        return CamRecord(keys=group["keys"][()],
                         cam=group["cam"][()].astype(np.float32),
                         high_res=group["high_res"][()].astype(np.float32))

    def __iter__(self) -> Iterator[tuple[str, CamRecord]]:
        for image_id in self._where:
            yield image_id, self[image_id]

    def close(self) -> None:
        for f in self._files:
            f.close()

    def __enter__(self) -> "CamStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
