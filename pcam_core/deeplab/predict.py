"""``pcam predict``: segment images with a trained DeepLab checkpoint.

Two modes:

* user mode: ``pcam predict --checkpoint model.pt IMG_OR_DIR ... --out-dir DIR [--overlay]``
  writes ``DIR/<stem>.png`` (palette PNG in the training dataset's class colours, full
  resolution) and, with ``--overlay``, ``DIR/<stem>_overlay.jpg`` (the class colours blended
  over the image). Folders are read non-recursively; files ending in
  .jpg/.jpeg/.png/.tif/.tiff/.bmp/.webp are taken, in sorted order. Images are read exactly
  as the training data was (the checkpoint carries the dataset's ``ImageReading``: 16-bit
  intensity window, alpha background) and upright (EXIF orientation applied), so the label
  maps are in the upright frame a person sees.
  An unreadable image stops the run with an error naming it, unless ``--skip-unreadable``
  is given: then it is counted, named in the final message, and skipped.
* pipeline mode: ``pcam predict --checkpoint model.pt --index index.json --shard ids.txt
  --split val --out-dir DIR`` predicts the shard's images that belong to the split (``all``:
  every image of the shard; ``--ids FILE`` keeps only the listed ids) as ``DIR/<id>.png``
  (ids with '/' make sub-folders); DIR is written as a whole (temp folder + rename), so a killed job leaves
  no half-filled folder behind. ``--true-classes-out-dir DIR2`` also writes, from the same
  forward pass, each image's prediction restricted to background + its ground-truth classes
  (images whose classes the index knows: a mask with objects, or a known-empty tile): the
  like-for-like counterpart of the val pseudo labels, which only ever hold those classes
  (object or background is DeepLab's call, the class the image's; see ``restricted_label``).

Inference follows the paper's protocol (spec §6.6): full-resolution input, single scale, no
flip, no CRF. Images of the same size are batched together (VOC has few distinct sizes), so
batching never changes a prediction (no padding enters the network).
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pcam_core.common import training_loop as tl
from pcam_core.common.progress import progress_bar
from pcam_core.common.atomic_output import atomic_directory, atomic_path
from pcam_core.common.dataset_index import DatasetIndex, read_id_list, read_shard_ids
from pcam_core.deeplab.model import checkpoint_classes, load_deeplab
from pcam_core.common.image_io import IMAGE_EXTENSIONS, ImageReading, read_rgb
from pcam_core.common.image_io import image_size as header_size
from pcam_core.common.label_colouring import OVERLAY_ALPHA, overlay_image  # noqa: F401 (predict.overlay_image)
from pcam_core.common.label_png import write_label_png

OVERLAY_JPEG_QUALITY = 90


class UnreadableImage(ValueError):
    """An input image that cannot be decoded (the message names the file)."""


# ----------------------------------------------------------------------------- inputs
def collect_images(inputs: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(output name, path) per image: files as given, folders' image files sorted by name."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image file or folder")
    names: dict[str, Path] = {}
    for path in found:
        if path.stem in names and names[path.stem].resolve() != path.resolve():
            raise ValueError(f"{names[path.stem]} and {path} would both be written as "
                             f"{path.stem}.png; rename one or predict them into separate folders")
        names.setdefault(path.stem, path)
    if not names:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {list(map(str, inputs))}")
    return list(names.items())


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the upright image from the file header, without decoding the pixels."""
    try:
        return header_size(path)
    except FileNotFoundError:
        raise UnreadableImage(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"{path}: cannot read image ({error})") from error


def group_by_size(sizes: dict[str, tuple[int, int]], batch_size: int) -> list[list[str]]:
    """Batches of names whose images share one size (so no padding is ever needed)."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for name, size in sizes.items():
        by_size.setdefault(size, []).append(name)
    batches = []
    for size in sorted(by_size):
        names = by_size[size]
        batches.extend(names[i:i + batch_size] for i in range(0, len(names), batch_size))
    return batches


class _BatchDecoder(Dataset):
    """Decodes one same-size batch per item (in DataLoader workers when there are any)."""

    def __init__(self, batches: list[list[str]], paths: dict[str, Path], reading: ImageReading):
        self.batches, self.paths, self.reading = batches, paths, reading

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[tuple[str, np.ndarray | None, str | None]]:
        out = []
        for name in self.batches[i]:
            try:
                out.append((name, read_rgb(self.paths[name], self.reading), None))
            except (OSError, ValueError) as error:
                out.append((name, None, str(error)))
        return out


def _as_is(batch):
    """DataLoader collate for pre-batched items (a module function, so workers can pickle it)."""
    return batch


# ----------------------------------------------------------------------------- prediction
@torch.no_grad()
def predict_logits(model: torch.nn.Module, rgbs: list[np.ndarray], mean: Sequence[float],
                   std: Sequence[float], device: torch.device) -> torch.Tensor:
    """float32 logits (B, C, H, W), on ``device``, of same-size uint8 RGB images: single scale, no flip."""
    x = torch.from_numpy(np.stack(rgbs)).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with tl.autocast_for(device):
        logits = model(x)
    return logits.float()


def labels_from_logits(logits: torch.Tensor) -> list[np.ndarray]:
    """uint8 (H, W) argmax labels of (B, C, H, W) logits."""
    return list(logits.argmax(dim=1).to(torch.uint8).cpu().numpy())


def restricted_label(logits: torch.Tensor, allowed: Sequence[int]) -> np.ndarray:
    """uint8 (H, W) labels of (C, H, W) logits for an image known to hold only ``allowed``
    (background 0 plus its true classes): the like-for-like counterpart of its pseudo labels.

    Decided as the val pseudo labels are: object or background first, then which of the
    image's classes. A pixel is background where DeepLab gives background at least half the
    probability, i.e. at least all object classes together; every other pixel takes the most
    probable of the image's own object classes. A plain argmax over the allowed channels
    would instead count the probability DeepLab puts on absent classes as background: on the
    shape demo, where DeepLab trained from scratch spreads an object's probability over
    classes of similar shape, that turned 47-79 % of the object pixels into background
    (like for like 30.0-46.5 over three DeepLab seeds, against 48.8-58.3 with this rule; on
    the colour demo, whose classes it tells apart, the two rules differ by < 1 point).
    """
    objects = [c for c in allowed if c != 0]
    if not objects:
        return np.zeros(logits.shape[1:], dtype=np.uint8)
    background = logits.softmax(dim=0)[0] >= 0.5
    classes = torch.as_tensor(objects, dtype=torch.long, device=logits.device)
    best = classes[logits[classes].argmax(dim=0)]
    return torch.where(background, 0, best).to(torch.uint8).cpu().numpy()


def predict_batch(model: torch.nn.Module, rgbs: list[np.ndarray], mean: Sequence[float],
                  std: Sequence[float], device: torch.device) -> list[np.ndarray]:
    """Labels (uint8 H x W) for same-size uint8 RGB images: single scale, no flip."""
    return labels_from_logits(predict_logits(model, rgbs, mean, std, device))


def predict_files(checkpoint: str | Path, images: list[tuple[str, Path]], out_dir: Path, *,
                  overlay: bool = False, batch_size: int = 4, device: str = "auto",
                  skip_unreadable: bool = False, workers: int = 2,
                  desc: str = "predict", true_classes: dict[str, Sequence[int]] | None = None,
                  true_classes_dir: Path | None = None) -> dict[str, object]:
    """Predict every (name, path) into ``out_dir/<name>.png``; returns counts and skipped files.

    With ``true_classes`` (name -> its ground-truth class ids) and ``true_classes_dir``, the
    named images also get ``true_classes_dir/<name>.png`` restricted to {0} U their classes.
    """
    dev = tl.pick_device(device)
    model, payload = load_deeplab(checkpoint, dev)
    palette = checkpoint_classes(payload).palette()
    true_classes = true_classes or {}
    reading = ImageReading.from_json(payload.get("image_reading"))
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    paths = dict(images)
    sizes, skipped = {}, []
    for name, path in images:
        try:
            sizes[name] = image_size(path)
        except UnreadableImage as error:
            if not skip_unreadable:
                raise
            skipped.append(str(error))
    batches = group_by_size(sizes, max(1, batch_size))
    loader = DataLoader(_BatchDecoder(batches, paths, reading), batch_size=None, shuffle=False,
                        num_workers=max(0, workers) if len(batches) > 1 else 0,
                        collate_fn=_as_is)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = restricted = 0
    bar = progress_bar(len(sizes), 0, desc)
    for batch in loader:
        good = []
        for name, rgb, error in batch:
            if rgb is None:
                if not skip_unreadable:
                    raise UnreadableImage(error)
                skipped.append(error)
            else:
                good.append((name, rgb))
        if good:
            logits = predict_logits(model, [rgb for _, rgb in good], payload["mean"], payload["std"], dev)
            for (name, rgb), label, image_logits in zip(good, labels_from_logits(logits), logits):
                write_label_png(out_dir / f"{name}.png", label, palette)
                if name in true_classes and true_classes_dir is not None:
                    allowed = [0, *true_classes[name]]
                    if max(allowed) >= image_logits.shape[0]:
                        raise ValueError(f"{name}: ground-truth classes {sorted(true_classes[name])} exceed the "
                                         f"{image_logits.shape[0]} output classes of {checkpoint}")
                    write_label_png(true_classes_dir / f"{name}.png", restricted_label(image_logits, allowed),
                                    palette)
                    restricted += 1
                if overlay:
                    with atomic_path(out_dir / f"{name}_overlay.jpg") as tmp:
                        overlay_image(rgb, label, palette=palette).save(
                            tmp, format="JPEG", quality=OVERLAY_JPEG_QUALITY)
                written += 1
        bar.update(len(batch))
    bar.close()
    return {"written": written, "restricted": restricted, "skipped": skipped, "device": str(dev)}


def shard_images(index: DatasetIndex, shard: str | Path, split: str,
                 only: set[str] | None = None) -> list[tuple[str, Path]]:
    """(id, image path) of the shard's images that belong to ``split`` ("all": every image),
    restricted to ``only`` when given, in shard order."""
    if split == "all":
        members = set(index.records)
    elif split in index.splits:
        members = set(index.splits[split])
    else:
        raise KeyError(f"unknown split {split!r}; the index has {sorted(index.splits)} (or use 'all')")
    if only is not None:
        members &= only
    return [(i, Path(index[i].image)) for i in read_shard_ids(shard) if i in members]


def known_classes(record) -> bool:
    """Whether the index knows the image's classes: a mask with objects, or a known-empty tile."""
    return bool(record.gt_classes) or record.known_empty()


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files or folders (jpg, jpeg, png, tif, tiff, bmp, webp; not recursive)")
    parser.add_argument("--checkpoint", required=True, help="model.pt written by train-deeplab")
    parser.add_argument("--out-dir", required=True, help="output folder: <name>.png label maps")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <name>_overlay.jpg (class colours over the image)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="images per forward pass (same-size images are batched together)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="count and skip images that cannot be decoded instead of stopping")
    pipeline = parser.add_argument_group("pipeline mode (used by the workflow)")
    pipeline.add_argument("--index", help="dataset index.json (instead of INPUTs)")
    pipeline.add_argument("--shard", help="shard list of image ids (with --index)")
    pipeline.add_argument("--split", default="val",
                          help="predict the shard's images of this split ('all': every image)")
    pipeline.add_argument("--ids", default=None,
                          help="a file of image ids: predict only these (with --index)")
    pipeline.add_argument("--true-classes-out-dir", default=None,
                          help="also write each image's prediction restricted to background + its "
                               "ground-truth classes (images whose classes the index knows) here")


def main(args: argparse.Namespace) -> int:
    tl.set_cpu_threads(args.threads)
    if args.index or args.shard:
        if not (args.index and args.shard) or args.inputs:
            raise SystemExit("pcam predict: pipeline mode takes --index and --shard and no INPUTs")
        index = DatasetIndex.load(args.index)
        only = set(read_id_list(args.ids, index.records, "--ids")) if args.ids else None
        images = shard_images(index, args.shard, args.split, only)
        context = atomic_directory(args.out_dir)
        true_classes = {name: index[name].gt_classes for name, _ in images if known_classes(index[name])}
    else:
        if not args.inputs:
            raise SystemExit("pcam predict: give image files or folders (or --index and --shard)")
        if args.true_classes_out_dir:
            raise SystemExit("pcam predict: --true-classes-out-dir needs --index (the ground-truth classes)")
        images = collect_images(args.inputs)
        context = nullcontext(Path(args.out_dir))
        true_classes = {}
    true_context = atomic_directory(args.true_classes_out_dir) if args.true_classes_out_dir else nullcontext()
    workers = min(args.workers, args.threads) if args.threads > 0 else args.workers
    with context as out_dir, true_context as true_dir:
        result = predict_files(args.checkpoint, images, Path(out_dir), overlay=args.overlay,
                               batch_size=args.batch_size, device=args.device,
                               skip_unreadable=args.skip_unreadable, workers=workers,
                               true_classes=true_classes if true_dir else None,
                               true_classes_dir=Path(true_dir) if true_dir else None)
    print(f"predict: {result['written']} label maps written to {args.out_dir} on {result['device']}")
    if args.true_classes_out_dir:
        print(f"predict: {result['restricted']} restricted to their ground-truth classes written to "
              f"{args.true_classes_out_dir}")
    if result["skipped"]:
        print(f"predict: skipped {len(result['skipped'])} unreadable image(s):")
        for message in result["skipped"]:
            print(f"  {message}")
    return 0
