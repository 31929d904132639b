"""The losses of Bearman et al., "What's the point" (Eq. 2 and 3), on segmentation logits.

S_ic = softmax over the classes (background included, C = N + 1) of the logits at pixel i.
For one image with present classes L, absent classes L' and clicked pixels I_s with
classes G_i and weights alpha_i:

    L_img   = -1/|L|  sum_{c in L}  log S_{t_c c}  -  1/|L'| sum_{c in L'} log(1 - S_{t_c c}),
              t_c = argmax_i S_ic                                               (Eq. 2)
    L_point = L_img - sum_{i in I_s} alpha_i log S_{i G_i}                      (Eq. 3)

A term whose set is empty is 0. ``log S_{t_c c}`` is the maximum over pixels of the log-softmax
(the log is monotone), so the gradient reaches only each class's most confident pixel, as
Eq. 2 says. ``log(1 - S)`` is computed as ``log(-expm1(log S))`` and clamped just below 0
so that a saturated absent class gives a large finite loss, not inf.

The batch loss is the mean over the images of L_point. Eq. 4 (the objectness prior) is left
out: it needs an objectness detector trained on outside images (README, "Choosing a method").

Which classes count as present in a training crop, and the click weights alpha_i, are
decided by the caller (``pcam_core/wtp/augment.py``): L, L' and the click map arrive as
tensors, so this module is the equations alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pcam_core.common.class_list import IGNORE_INDEX

# log(1 - S) for S = 1 - 1e-6 at most: a finite, large penalty for a saturated absent class.
LOG_ONE_MINUS_MAX = -1e-6


def class_max_log_prob(log_probs: torch.Tensor) -> torch.Tensor:
    """(B, C): max over the pixels of each class's log-probability, log S_{t_c c}."""
    return log_probs.flatten(2).max(dim=2).values


def image_level_loss(log_probs: torch.Tensor, present: torch.Tensor, absent: torch.Tensor
                     ) -> torch.Tensor:
    """(B,) Eq. 2 per image; ``present`` / ``absent`` are (B, C) bool masks of L and L'."""
    top = class_max_log_prob(log_probs)
    log_not = torch.log(-torch.expm1(top.clamp(max=LOG_ONE_MINUS_MAX)))
    present_f, absent_f = present.float(), absent.float()
    present_term = -(top * present_f).sum(1) / present_f.sum(1).clamp(min=1)
    absent_term = -(log_not * absent_f).sum(1) / absent_f.sum(1).clamp(min=1)
    return present_term + absent_term


def point_loss(log_probs: torch.Tensor, point_labels: torch.Tensor, point_weights: torch.Tensor
               ) -> torch.Tensor:
    """(B,) the click term of Eq. 3: -sum_i alpha_i log S_{i G_i}.

    ``point_labels`` (B, H, W) holds the clicked pixels' classes and 255 elsewhere;
    ``point_weights`` (B, H, W) their alpha_i (0 elsewhere).
    """
    clicked = point_labels != IGNORE_INDEX
    safe = torch.where(clicked, point_labels, torch.zeros_like(point_labels))
    picked = log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    return -(picked * point_weights * clicked.float()).flatten(1).sum(1)


def wtp_loss(logits: torch.Tensor, present: torch.Tensor, absent: torch.Tensor,
             point_labels: torch.Tensor, point_weights: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Batch mean of Eq. 3 over fp32 log-softmax of ``logits`` (B, C, H, W), and its terms."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    image = image_level_loss(log_probs, present, absent)
    points = point_loss(log_probs, point_labels, point_weights)
    total = (image + points).mean()
    return total, {"loss_img": image.mean().item(), "loss_pt": points.mean().item()}
