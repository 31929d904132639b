"""SBD's ground-truth masks (``cls/<id>.mat``): read by the dataset index for images without
a VOC PNG, and by the VOC reader; kept apart from both so that neither imports the other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` as uint8 (0..20, no void borders)."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: SBD mask file not found") from None
    except Exception as error:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: cannot read SBD .mat file ({error})") from error
    try:
        segmentation = mat["GTcls"][0, 0]["Segmentation"]
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{path}: no GTcls.Segmentation field (not an SBD cls/ file?)") from None
    return np.asarray(segmentation, dtype=np.uint8)
