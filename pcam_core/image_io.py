"""Image decoding and the ImageNet normalisation every network here expects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 H x W x 3 RGB; a clear error names a bad file."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode image ({error})") from error


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float32 HWC, RGB/255 then ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0
    return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize (PIL), as IRN resizes images."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


def resize_label(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize for class-index maps."""
    if label.shape[:2] == (height, width):
        return label
    return np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))
