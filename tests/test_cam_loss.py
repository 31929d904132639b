"""The PCAM loss against a direct hand computation (paper Eq. 1-5, spec §1.3-1.4, D1, D12)."""

import math

import torch
import torch.nn.functional as F

from pcam_core.cam.loss import cam_loss, point_loss, sample_at_points


def _case():
    torch.manual_seed(0)
    cam = torch.randn(2, 20, 3, 4)
    labels = torch.zeros(2, 20)
    labels[0, [0, 4]] = 1  # image 0: classes 1 and 5
    labels[1, 2] = 1  # image 1: class 3
    # (x, y, cls) padded to 3 rows; image 0 has 3 points (one of them background, cls 0),
    # image 1 has 1 point.
    points = torch.tensor([[[5, 2, 1], [12, 9, 5], [0, 11, 0]],
                           [[7, 3, 3], [0, 0, 0], [0, 0, 0]]], dtype=torch.float32)
    counts = torch.tensor([3, 1])
    return cam, labels, points, counts


def _hand_point_loss(cam, labels, points, counts, hw, form):
    """Upsample the full map, read the pixels, loop over images/classes/points."""
    if form == "maxnorm":
        m = cam.clamp(min=0)
        m = m / (m.amax(dim=(2, 3), keepdim=True) + 1e-5)
        up = F.interpolate(m, size=hw, mode="bilinear", align_corners=False)
    else:
        up = torch.sigmoid(F.interpolate(cam, size=hw, mode="bilinear", align_corners=False))
    per_image = []
    for b in range(cam.shape[0]):
        n = int(counts[b])
        if n == 0:
            continue
        classes = [c for c in range(20) if labels[b, c] > 0]
        total = 0.0
        for c in classes:
            err = 0.0
            for x, y, cls in points[b, :n].long().tolist():
                target = 1.0 if cls == c + 1 else 0.0
                err += (float(up[b, c, y, x]) - target) ** 2
            total += err / n
        per_image.append(total / len(classes))
    return sum(per_image) / len(per_image)


def test_point_loss_matches_hand_computation_both_forms():
    cam, labels, points, counts = _case()
    for form in ("maxnorm", "sigmoid"):
        loss, n = point_loss(cam, labels, points, counts, (12, 16), form)
        assert n == 2
        assert math.isclose(float(loss), _hand_point_loss(cam, labels, points, counts, (12, 16), form),
                            rel_tol=1e-5)


def test_grid_sample_equals_interpolate_at_every_pixel():
    torch.manual_seed(1)
    maps = torch.randn(1, 2, 3, 5)
    ys, xs = torch.meshgrid(torch.arange(11), torch.arange(17), indexing="ij")
    pts = torch.stack([xs.flatten(), ys.flatten()], dim=1)[None].float()
    sampled = sample_at_points(maps, pts, (11, 17))
    full = F.interpolate(maps, size=(11, 17), mode="bilinear", align_corners=False).flatten(2)
    torch.testing.assert_close(sampled, full, rtol=1e-5, atol=1e-6)


def test_total_loss_alpha_and_batch_reduction():
    cam, labels, points, counts = _case()
    logits = torch.randn(2, 20)
    img = F.multilabel_soft_margin_loss(logits, labels)
    expected_img = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(img, expected_img)

    full = cam_loss(logits, cam, labels, 0.1, points, counts, (12, 16))
    pt = _hand_point_loss(cam, labels, points, counts, (12, 16), "maxnorm")
    assert math.isclose(float(full.total), float(img) + 0.1 * pt, rel_tol=1e-5)

    # alpha = 0: no point term at all, and no CAM needed.
    base = cam_loss(logits, None, labels, 0.0)
    assert base.point is None and math.isclose(float(base.total), float(img), rel_tol=1e-6)

    # D12: an image without points does not dilute the batch mean.
    one = cam_loss(logits, cam, labels, 0.1, points, torch.tensor([3, 0]), (12, 16))
    only_first = _hand_point_loss(cam[:1], labels[:1], points[:1], counts[:1], (12, 16), "maxnorm")
    assert one.images_with_points == 1
    assert math.isclose(float(one.point), only_first, rel_tol=1e-5)

    # No point anywhere: L_pt = 0, and the graph still backpropagates.
    cam.requires_grad_(True)
    none = cam_loss(logits, cam, labels, 0.1, points, torch.tensor([0, 0]), (12, 16))
    assert float(none.point.detach()) == 0.0 and none.images_with_points == 0
    none.total.backward()


def test_point_loss_gradient_reaches_the_cam():
    cam, labels, points, counts = _case()
    cam.requires_grad_(True)
    loss, _ = point_loss(cam, labels, points, counts, (12, 16), "maxnorm")
    loss.backward()
    assert cam.grad is not None and cam.grad.abs().sum() > 0
    assert cam.grad[1, 0].abs().sum() == 0  # class 1 is not in image 1's C'
