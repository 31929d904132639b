"""label_colouring: class colours, the void colour, the legend, and predict's overlay unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcam_core.common.class_list import ClassList, colour_map
from pcam_core.common.label_colouring import (VOID_COLOUR, colour_labels, colour_table, legend_entries,
                                       legend_handles, overlay_image)
from pcam_core.common.label_png import label_to_image
from pcam_core.data.voc_reader import voc_class_list

CELLS = ClassList.from_object_classes([{"name": "nucleus", "colour": [10, 200, 30]},
                                       {"name": "membrane", "colour": [250, 5, 120]}, "debris"])


def test_label_colours_are_the_class_colours_and_void_is_light():
    label = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    rgb = colour_labels(label, CELLS)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    for i, colour in enumerate(CELLS.colours):
        assert (rgb[label == i] == colour).all()
    assert tuple(rgb[1, 1]) == VOID_COLOUR == (224, 224, 192)  # VOC's void colour
    # an id past the class list takes the VOC colour map, as the palette PNGs show it
    assert tuple(colour_labels(np.array([[7]], np.uint8), CELLS)[0, 0]) == colour_map()[7]
    # a 768-value palette (as checkpoints carry) colours exactly like its class list
    assert (colour_table(CELLS.palette()) == colour_table(CELLS)).all()
    with pytest.raises(ValueError, match="2-D uint8"):
        colour_labels(label.astype(np.int64), CELLS)


def test_legend_lists_only_present_classes_in_id_order():
    a = np.array([[3, 3], [0, 255]], np.uint8)
    b = np.array([[1, 1], [1, 0]], np.uint8)
    entries = legend_entries(CELLS, [a, b])
    assert entries == [("background", CELLS.colours[0]), ("nucleus", (10, 200, 30)),
                       ("debris", CELLS.colours[3]), ("void", VOID_COLOUR)]
    assert legend_entries(CELLS, [a], void=False) == [("background", CELLS.colours[0]),
                                                     ("debris", CELLS.colours[3])]
    assert [name for name, _ in legend_entries(CELLS, [], extra_ids=[2])] == ["membrane"]
    patches = legend_handles(entries)
    assert [p.get_label() for p in patches] == ["background", "nucleus", "debris", "void"]
    assert np.allclose(patches[1].get_facecolor()[:3], np.array([10, 200, 30]) / 255)


def _old_overlay(rgb, label, alpha=0.5, palette=None):
    """predict.overlay_image as it was before the move (the reference for byte identity)."""
    colour = np.asarray(label_to_image(label, palette).convert("RGB"), np.float32)
    weight = np.where((label > 0) & (label < 255), alpha, 0.0)[..., None].astype(np.float32)
    blended = rgb.astype(np.float32) * (1 - weight) + colour * weight
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def test_overlay_is_byte_identical_to_predicts_old_one():
    from pcam_core.deeplab import predict

    assert predict.overlay_image is overlay_image and predict.OVERLAY_ALPHA == 0.5
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)
    label = rng.integers(0, 22, (37, 51)).astype(np.uint8)
    label[label == 21] = 255
    for palette in (None, voc_class_list().palette(), CELLS.palette()):
        for alpha in (0.5, 0.3):
            new = overlay_image(rgb, label, alpha, palette=palette)
            assert new.mode == "RGB"
            assert new.tobytes() == _old_overlay(rgb, label, alpha, palette).tobytes()
