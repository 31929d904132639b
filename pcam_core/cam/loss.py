"""The PCAM training loss: image-level soft margin + alpha x point MSE (paper Eq. 1-5).

L = L_img + alpha * L_pt (spec §1.3-1.4):

* L_img: multilabel soft margin of the logits (mean over the N classes, then the batch).
* L_pt, per image: the mean over the classes present in its image-level label (C') of
  (1/|S|) sum_{s in S} (U_c(s) - G_c(s))^2, with S its surviving points and G_c(s) = 1 when
  point s has class c (points of other classes, and background points, are negatives).
  U_c is the CAM upsampled bilinearly (align_corners=False) to the network input size; it is
  only ever evaluated at the points, through ``grid_sample`` (spec §1.4), so no full-size
  N-channel map is built.
* U form (decision D1): ``maxnorm`` (option A, default) = ReLU + per-class max over the
  stride-16 map (paper Eq. 2, the same normalisation as the exported maps), then upsampled;
  ``sigmoid`` (option B) = sigmoid of the upsampled raw CAM.
* Batch reduction (decision D12): mean over the images that have >= 1 point; a batch with
  no point at all contributes 0.

Points arrive padded: ``points`` (B, P, 3) float holding (x, y, cls) in input-pixel
coordinates (x = column), ``counts`` (B,) the number of valid rows. cls 0 is a background
point (only ``pcam_full`` has those): target 0 for every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pcam_core.cam.net import MAXNORM_EPS



@dataclass
class CamLoss:
    total: torch.Tensor
    image: torch.Tensor
    point: torch.Tensor | None  # None when alpha == 0 (the term is not computed at all)
    images_with_points: int


def image_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1: multilabel soft margin (= BCE with logits, mean over classes and batch)."""
    return F.multilabel_soft_margin_loss(logits.float(), labels.float())


def maxnorm(cam: torch.Tensor) -> torch.Tensor:
    """Eq. 2 with a ReLU: M_c = ReLU(A_c) / (max_x ReLU(A_c) + 1e-5), per image and class."""
    cam = torch.relu(cam)
    return cam / (cam.amax(dim=(2, 3), keepdim=True) + MAXNORM_EPS)


def sample_at_points(maps: torch.Tensor, points: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """Values of ``maps`` upsampled bilinearly to ``input_hw`` at integer pixels ``points``.

    Bilinear upsampling with align_corners=False evaluated at pixel (x, y) equals grid_sample
    at x_n = (2x+1)/W_in - 1, y_n = (2y+1)/H_in - 1 with border padding (interpolate clamps
    negative source coordinates the same way). Returns (B, C, P).
    """
    h_in, w_in = input_hw
    x = points[..., 0].float()
    y = points[..., 1].float()
    grid = torch.stack([(2 * x + 1) / w_in - 1, (2 * y + 1) / h_in - 1], dim=-1)  # (B, P, 2)
    sampled = F.grid_sample(maps, grid.unsqueeze(2).to(maps.dtype), mode="bilinear",
                            padding_mode="border", align_corners=False)  # (B, C, P, 1)
    return sampled.squeeze(3)


def point_loss(cam: torch.Tensor, labels: torch.Tensor, points: torch.Tensor, counts: torch.Tensor,
               input_hw: tuple[int, int], form: str = "maxnorm") -> tuple[torch.Tensor, int]:
    """Eq. 3-4 reduced over the batch as D12 says; returns (loss, images with >= 1 point).

    cam: raw stride-16 CAM (B, N, h, w); labels: (B, N) image-level {0,1}.
    """
    cam = cam.float()
    batch, num_classes = cam.shape[:2]
    if points.shape[1] == 0:
        return cam.sum() * 0.0, 0
    if form == "maxnorm":
        u = sample_at_points(maxnorm(cam), points, input_hw)
    elif form == "sigmoid":
        u = torch.sigmoid(sample_at_points(cam, points, input_hw))
    else:
        raise ValueError(f"unknown point loss form {form!r} (maxnorm or sigmoid)")
    cls = points[..., 2].long()  # (B, P), 0 = background, 1..N = object classes
    target = F.one_hot(cls, num_classes + 1)[..., 1:].permute(0, 2, 1).float()  # (B, N, P)
    valid = (torch.arange(points.shape[1], device=cam.device)[None, :] < counts[:, None]).float()
    n_points = valid.sum(dim=1)  # |S| per image
    per_class = ((u - target) ** 2 * valid[:, None, :]).sum(dim=2) / n_points.clamp(min=1)[:, None]
    present = labels.float()  # C'
    n_present = present.sum(dim=1)
    per_image = (per_class * present).sum(dim=1) / n_present.clamp(min=1)  # Eq. 4
    has_points = (n_points > 0) & (n_present > 0)
    n_images = int(has_points.sum())
    if n_images == 0:
        return cam.sum() * 0.0, 0
    return per_image[has_points].mean(), n_images


def cam_loss(logits: torch.Tensor, cam: torch.Tensor | None, labels: torch.Tensor, alpha: float,
             points: torch.Tensor | None = None, counts: torch.Tensor | None = None,
             input_hw: tuple[int, int] | None = None, form: str = "maxnorm") -> CamLoss:
    """Eq. 5: L = L_img + alpha * L_pt. alpha == 0 skips the point term entirely (CAM baseline)."""
    loss_img = image_loss(logits, labels)
    if alpha == 0:
        return CamLoss(total=loss_img, image=loss_img, point=None, images_with_points=0)
    if cam is None or points is None or counts is None or input_hw is None:
        raise ValueError("alpha > 0 needs the CAM, the points, their counts and the input size")
    loss_pt, n_images = point_loss(cam, labels, points, counts, input_hw, form)
    return CamLoss(total=loss_img + alpha * loss_pt, image=loss_img, point=loss_pt,
                   images_with_points=n_images)
