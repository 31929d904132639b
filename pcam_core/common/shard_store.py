"""Per-shard HDF5 stores of per-image arrays: the mechanics the CAM and walk stores share.

One file per shard of images and one group per image, named by the percent-encoded id
(custom ids such as ``plate1/tile_003`` hold '/', HDF5's path separator; VOC ids are
unchanged). A ``format`` attribute says which store a file is and is checked on open, so a
foreign or mixed-up file is an error naming it. A writer's file appears under its name only
when it closed successfully (``atomic_output``). Subclasses say what one record holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Generic, Iterable, Iterator, TypeVar
from urllib.parse import quote, unquote

import h5py

from pcam_core.common.atomic_output import atomic_path

Record = TypeVar("Record")


def group_name(image_id: str) -> str:
    """The HDF5 group of an image id ('/' and '%' percent-encoded)."""
    return quote(image_id, safe="")


class ShardStoreWriter:
    """Write one shard store under a temporary name; rename it when closed successfully."""

    FORMAT = ""  # set by each store
    WHAT = "store"

    def __init__(self, path: str | Path, compression_level: int = 4):
        self.path = Path(path)
        self.level = compression_level
        self._atomic = atomic_path(self.path)
        self._file: h5py.File | None = None

    def __enter__(self):
        tmp = self._atomic.__enter__()
        try:
            # compact object headers (HDF5 >= 1.10): the default ones cost ~8 KiB per image
            self._file = h5py.File(tmp, "w", libver="latest")
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._file.attrs["format"] = self.FORMAT
        return self

    def new_group(self, image_id: str) -> h5py.Group:
        """The group of a new image; adding an image twice is an error naming the store."""
        name = group_name(image_id)
        if name in self._file:
            raise ValueError(f"{self.path}: image {image_id!r} added twice")
        return self._file.create_group(name)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)


class ShardStore(ABC, Generic[Record]):
    """Read-only view over one or more shard stores: ``store[id]``, ``ids()``, ``in``, ``len``."""

    FORMAT = ""
    WHAT = "store"

    def __init__(self, paths: str | Path | Iterable[str | Path]):
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self._files: list[h5py.File] = []
        self._where: dict[str, h5py.File] = {}
        try:
            for path in paths:
                self._open(Path(path))
        except BaseException:
            self.close()
            raise

    def _open(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {self.WHAT} not found")
        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(f"{path}: not a pcam {self.WHAT} (not an HDF5 file: {error})") from None
        found = f.attrs.get("format")
        if found != self.FORMAT:
            f.close()
            raise ValueError(f"{path}: not a pcam {self.WHAT} (format {found!r}, expected {self.FORMAT!r})")
        self._files.append(f)
        for name in f.keys():
            image_id = unquote(name)
            if image_id in self._where:
                raise ValueError(f"image {image_id!r} is in two {self.WHAT}s: "
                                 f"{self._where[image_id].filename} and {path}")
            self._where[image_id] = f

    @abstractmethod
    def _record(self, group: h5py.Group) -> Record:
        """The record of one image's group (each store reads its own datasets)."""

    def ids(self) -> list[str]:
        return list(self._where)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, image_id: str) -> Record:
        try:
            group = self._where[image_id][group_name(image_id)]
        except KeyError:
            raise KeyError(f"image {image_id!r} is in none of the {self.WHAT}s") from None
        return self._record(group)

    def __iter__(self) -> Iterator[tuple[str, Record]]:
        for image_id in self._where:
            yield image_id, self[image_id]

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
