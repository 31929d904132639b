"""Per-shard HDF5 stores of per-image arrays: the mechanics the CAM and walk stores share.

One file per shard of images and one group per image, named by the percent-encoded id
(custom ids such as ``plate1/tile_003`` hold '/', HDF5's path separator; VOC ids are
unchanged). A writer's file appears under its name only when it closed successfully
(``atomic_output``), and records two file attributes: ``format`` (which store, which
version) and ``images`` (how many groups it wrote).

A reader trusts nothing else: on open it checks, from metadata alone (no array is read),
that each file is HDF5, that ``format`` is its own, that the group count is the recorded
one, and that every group holds the datasets of its kind with consistent shapes; given the
shard's ids, also that the store holds the images the shard should give it. Any failure is
a :class:`StoreError` naming the file and the rule that writes it again. Subclasses declare
their per-image datasets and attributes, how the shapes must agree, and what a record holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Collection, Generic, Iterable, Iterator, TypeVar
from urllib.parse import quote, unquote

import h5py
import numpy as np

from pcam_core.common.atomic_output import atomic_path

Record = TypeVar("Record")

# The first bytes of every HDF5 file (our writers put no user block before them).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class StoreError(ValueError):
    """A store file that cannot be trusted (damaged, foreign, incomplete or of other images)."""


def group_name(image_id: str) -> str:
    """The HDF5 group of an image id ('/' and '%' percent-encoded)."""
    return quote(image_id, safe="")


def group_metadata(f: h5py.File, name: bytes, datasets: dict[str, tuple[int, str]],
                   attrs: tuple[str, ...]) -> tuple[dict[str, tuple[int, ...]], dict[str, int]] | str:
    """(shape of each dataset, value of each integer attribute) of one image's group, read
    from metadata alone; or what is wrong (a missing dataset, a wrong rank or dtype kind).

    ``datasets`` maps each name to (rank, accepted numpy dtype kinds: 'i', 'u', 'f'). h5py's
    low-level calls: a quarter of the time of its Group/Dataset objects, which matters at
    thousands of images per store.
    """
    group = h5py.h5o.open(f.id, name)
    if not isinstance(group, h5py.h5g.GroupID):
        return "not a group"
    shapes = {}
    for dataset, (ndim, kinds) in datasets.items():
        key = dataset.encode()
        if not group.links.exists(key):
            return f"no {dataset!r} dataset"
        item = h5py.h5o.open(group, key)
        if not isinstance(item, h5py.h5d.DatasetID):
            return f"{dataset!r} is not a dataset"
        if len(item.shape) != ndim or item.dtype.kind not in kinds:
            return (f"{dataset!r} is {item.dtype} of shape {item.shape}, expected {ndim} dimensions "
                    f"of kind {kinds!r}")
        shapes[dataset] = item.shape
    values = {}
    for attr in attrs:
        if not h5py.h5a.exists(group, attr.encode()):
            return f"no {attr!r} attribute"
        aid = h5py.h5a.open(group, attr.encode())
        if aid.shape not in ((), (1,)) or aid.dtype.kind not in "iu":
            return f"attribute {attr!r} is not an integer"
        value = np.zeros(aid.shape, aid.dtype)
        aid.read(value)
        values[attr] = int(value.reshape(-1)[0])
    return shapes, values


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
        try:
            if exc_type is None:  # a reader compares its groups with this count
                self._file.attrs["images"] = len(self._file)
            self._file.close()
        except BaseException as error:  # not published: the temp file goes
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)


class ShardStore(ABC, Generic[Record]):
    """Read-only view over one or more shard stores: ``store[id]``, ``ids()``, ``in``, ``len``.

    ``shard_ids`` (the images of the shard the one file was written for) and ``required_ids``
    (those it must hold) add the image check: every required image is there and none from
    outside the shard.
    """

    FORMAT = ""
    WHAT = "store"
    RULE = ""  # the workflow rule that writes the store, named in errors
    DATASETS: dict[str, tuple[int, str]] = {}  # per image: name -> (rank, numpy dtype kinds)
    ATTRS: tuple[str, ...] = ()  # per image: integer attributes

    def __init__(self, paths: str | Path | Iterable[str | Path], *,
                 shard_ids: Collection[str] | None = None, required_ids: Iterable[str] = ()):
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self._files: list[h5py.File] = []
        self._where: dict[str, h5py.File] = {}
        try:
            for path in paths:
                self._open(Path(path))
            if shard_ids is not None:
                self._check_images(shard_ids, required_ids)
        except BaseException:
            self.close()
            raise

    def _error(self, path: str | Path, problem: str) -> StoreError:
        """The error for an untrustworthy file: what is wrong and how to get a good one."""
        rerun = f"rule {self.RULE} writes it again" if self.RULE else "write it again"
        return StoreError(f"{path}: {problem}; delete it and rerun ({rerun})")

    def _open(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {self.WHAT} not found")
        with open(path, "rb") as raw:
            if raw.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise self._error(path, f"not a pcam {self.WHAT} (not an HDF5 file)")
        try:
            f = h5py.File(path, "r")
        except OSError as error:  # h5py: "truncated file: eof = ..., stored_eof = ..."
            raise self._error(path, f"damaged {self.WHAT}, probably truncated ({error})") from None
        self._files.append(f)
        try:
            self._check_file(path, f)
        except (OSError, RuntimeError, KeyError) as error:  # damage inside the file
            raise self._error(path, f"damaged {self.WHAT} ({error})") from None
        for name in f.keys():
            image_id = unquote(name)
            if image_id in self._where:
                raise StoreError(f"image {image_id!r} is in two {self.WHAT}s: "
                                 f"{self._where[image_id].filename} and {path}")
            self._where[image_id] = f

    def _check_file(self, path: Path, f: h5py.File) -> None:
        """Marker, image count and every group's datasets, from metadata alone."""
        found = f.attrs.get("format")
        if isinstance(found, bytes):
            found = found.decode(errors="replace")
        if found is None:
            raise self._error(path, f"not a pcam {self.WHAT} (an HDF5 file without pcam's format marker)")
        if found != self.FORMAT:
            same_kind = str(found).rpartition("/")[0] == self.FORMAT.rpartition("/")[0]
            what = f"a {self.WHAT} of another pcam version" if same_kind else f"not a pcam {self.WHAT}"
            raise self._error(path, f"{what} (format {found!r}, expected {self.FORMAT!r})")
        recorded = f.attrs.get("images")
        if recorded is None:
            raise self._error(path, f"damaged {self.WHAT}: no recorded image count")
        if int(recorded) != len(f):
            raise self._error(path, f"incomplete {self.WHAT}: {len(f)} of the {int(recorded)} images its "
                                    "writer recorded")
        for name in f.id:
            metadata = group_metadata(f, name, self.DATASETS, self.ATTRS)
            problem = metadata if isinstance(metadata, str) else self._shape_problem(*metadata)
            if problem:
                raise self._error(path, f"damaged {self.WHAT}: image {unquote(name.decode())!r}: {problem}")

    def _check_images(self, shard_ids: Collection[str], required_ids: Iterable[str]) -> None:
        """Every required image is stored, and no image from outside the shard."""
        shard = set(shard_ids)
        where = ", ".join(f.filename for f in self._files)
        foreign = [i for i in self._where if i not in shard]
        if foreign:
            raise self._error(where, f"{self.WHAT} of other images ({len(foreign)} of its {len(self._where)} "
                                     f"outside its shard, e.g. {foreign[:3]})")
        missing = [i for i in required_ids if i not in self._where]
        if missing:
            raise self._error(where, f"incomplete {self.WHAT}: missing {len(missing)} of its shard's images "
                                     f"(e.g. {missing[:3]})")

    @abstractmethod
    def _shape_problem(self, shapes: dict[str, tuple[int, ...]], attrs: dict[str, int]) -> str | None:
        """What is wrong with one image's dataset shapes and attributes together, or None."""

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
            f = self._where[image_id]
        except KeyError:
            raise KeyError(f"image {image_id!r} is in none of the {self.WHAT}s") from None
        try:
            return self._record(f[group_name(image_id)])
        except (OSError, RuntimeError) as error:  # a damaged chunk: checks on open read no data
            raise self._error(f.filename, f"damaged {self.WHAT}: image {image_id!r} cannot be read "
                                          f"({error})") from None

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
