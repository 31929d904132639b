"""IRNet boundary branch: geometry at odd sizes, flip TTA, frozen backbone, save/load."""

import numpy as np
import pytest
import torch

from pcam_core.irn.net import IRNetBoundary, infer_boundary, load_irnet, save_irnet
from pcam_core.irn.training import affinity_loss
from pcam_core.irn.path_index import PathIndex, affinity_from_boundary, affinity_labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return IRNetBoundary("resnet18").eval()


@pytest.mark.parametrize("height,width", [(37, 53), (130, 70), (16, 16)])
def test_boundary_inference_any_size(model, height, width):
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    boundary = infer_boundary(model, rgb, "cpu")
    assert boundary.dtype == np.float32
    assert boundary.shape == ((height + 3) // 4, (width + 3) // 4)
    assert (boundary >= 0).all() and (boundary <= 1).all()


def test_forward_grid_is_ceil_quarter(model):
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 37, 53)).shape == (2, 10, 14)


def test_flip_merge_is_symmetric(model):
    """The TTA averages the image and its mirror, so mirroring the input mirrors the output
    (exactly when no padding breaks the symmetry: width a multiple of 16)."""
    rgb = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    a = infer_boundary(model, rgb, "cpu")
    b = infer_boundary(model, rgb[:, ::-1].copy(), "cpu")
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-5)


def test_backbone_gets_no_gradient_and_step_only_touches_edges():
    torch.manual_seed(0)
    model = IRNetBoundary("resnet18").train()
    assert not model.backbone.training  # frozen BN and eval mode, even in train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.edge_parameters(), lr=0.1)
    path_index = PathIndex(4)
    boundary = torch.sigmoid(model(torch.randn(2, 3, 32, 32)))
    label4 = torch.zeros(8, 8, dtype=torch.uint8)
    label4[:, 4:] = 3
    masks = [torch.stack([m, m]) for m in affinity_labels(label4, path_index)]
    loss, terms = affinity_loss(affinity_from_boundary(boundary, path_index), *masks)
    assert set(terms) == {"pos_bg", "pos_fg", "neg"}
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.edge_parameters())
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(not k.startswith("backbone.") for k in changed)
    assert any(k.startswith("edge6.") for k in changed)


def test_affinity_loss_matches_the_formula():
    aff = torch.tensor([[[0.9, 0.2, 0.5, 0.7]]])
    bg = torch.tensor([[[1.0, 0, 0, 0]]])
    fg = torch.tensor([[[0, 0, 0, 1.0]]])
    neg = torch.tensor([[[0, 1.0, 1.0, 0]]])
    loss, _ = affinity_loss(aff, bg, fg, neg)
    eps = 1e-5
    pos = (-np.log(0.9 + eps) / (1 + eps) - np.log(0.7 + eps) / (1 + eps)) / 2
    negative = (-np.log(1 + eps - 0.2) - np.log(1 + eps - 0.5)) / (2 + eps)
    assert loss.item() == pytest.approx((pos + negative) / 2, rel=1e-5)


def test_save_and_load_roundtrip(tmp_path, model):
    path = tmp_path / "irn.pt"
    torch.save(save_irnet(model, {"backbone": "resnet18"}), path)
    loaded = load_irnet(path, "cpu")
    rgb = np.random.default_rng(2).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(infer_boundary(model, rgb, "cpu"), infer_boundary(loaded, rgb, "cpu"))
