"""IRNet's boundary branch on a frozen ResNet, and whole-image boundary inference (spec §4).

Only the boundary (edge) branch is built. IRNet's displacement branch serves instance
segmentation: the backbone is frozen and detached and the two branches share no
parameters, so the gradient reaching the edge parameters comes only from the affinity loss
(L_pos + L_neg)/2; dropping the displacement head and its loss leaves the edge updates, and
therefore the semantic pseudo labels, unchanged (spec §4.12; IRN's author in issue #19).
It would cost two (B, 2, D, n_src) pair tensors and a head for no effect on our outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pcam_core.common.backbone import build_resnet, feature_channels, stem
from pcam_core.common.image_io import normalize, to_chw_tensor
from pcam_core.common.training_loop import autocast_for

# Width of every edge block (IRN: 32 for each of the five taps, 160 concatenated). The
# inputs follow the backbone depth through feature_channels(); 32 stays, since it is the
# head's own capacity and already far below the narrowest tap (64).
EDGE_WIDTH = 32
# GroupNorm groups of the edge blocks (IRN: 4 groups of 8 channels).
EDGE_GROUPS = 4
# Inference pads to a multiple of the backbone's total stride, so every tap's grid is exact.
PAD_MULTIPLE = 16


def _edge_block(in_channels: int, upsample: int) -> nn.Sequential:
    """conv 1x1 (no bias) -> GroupNorm -> [bilinear upsample] -> ReLU, IRN's order."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, EDGE_WIDTH, 1, bias=False),
                               nn.GroupNorm(EDGE_GROUPS, EDGE_WIDTH)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class IRNetBoundary(nn.Module):
    """Frozen ResNet taps x1..x5 -> five edge blocks -> 1x1 conv -> boundary logit at stride 4."""

    def __init__(self, depth: str = "resnet50", weights_path: str | Path | None = None):
        super().__init__()
        self.depth = depth
        self.backbone = build_resnet(depth, weights_path, layer4_stride=1, frozen_bn=True)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        ch = feature_channels(depth)
        self.edge1 = _edge_block(ch["stem"], 1)     # stride 4
        self.edge2 = _edge_block(ch["layer1"], 1)   # stride 4: defines the output grid
        self.edge3 = _edge_block(ch["layer2"], 2)   # stride 8 -> 4
        self.edge4 = _edge_block(ch["layer3"], 4)   # stride 16 -> 4
        self.edge5 = _edge_block(ch["layer4"], 4)   # stride 16 -> 4
        self.edge6 = nn.Conv2d(5 * EDGE_WIDTH, 1, 1, bias=True)

    def train(self, mode: bool = True) -> "IRNetBoundary":
        """Only the heads switch modes; the frozen backbone always stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def edge_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters (everything outside the backbone)."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]

    def use_channels_last(self) -> "IRNetBoundary":
        """NHWC backbone convolutions: faster with bf16 tensor cores on CUDA."""
        self.backbone.to(memory_format=torch.channels_last)
        return self

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x1..x5 of the frozen backbone, detached and in fp32 (bf16 autocast on CUDA)."""
        with torch.no_grad(), autocast_for(x.device):
            if x.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            b = self.backbone
            x1 = stem(b, x)
            x2 = b.layer1(x1)
            x3 = b.layer2(x2)
            x4 = b.layer3(x3)
            x5 = b.layer4(x4)
        return [t.detach().float().contiguous() for t in (x1, x2, x3, x4, x5)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B,3,H,W) -> boundary logits (B, ceil(H/4), ceil(W/4))."""
        x1, x2, x3, x4, x5 = self.taps(x)
        e2 = self.edge2(x2)
        h, w = e2.shape[-2:]
        edges = [self.edge1(x1)[..., :h, :w], e2, self.edge3(x3)[..., :h, :w],
                 self.edge4(x4)[..., :h, :w], self.edge5(x5)[..., :h, :w]]
        return self.edge6(torch.cat(edges, dim=1))[:, 0]


@torch.no_grad()
def infer_boundary(model: IRNetBoundary, rgb: np.ndarray, device: torch.device | str) -> np.ndarray:
    """Boundary map in [0,1], float32 (ceil(H/4), ceil(W/4)), of one uint8 HxWx3 image.

    As IRN's EdgeDisplacement: normalise, batch [image, hflip], zero-pad right/bottom,
    crop the logits to the image's stride-4 grid, flip the second back (after the crop,
    since the padding sits on the right of both), average LOGITS, then the sigmoid.
    Departure: IRN pads to a fixed 512x512, which fails for images over 512 px; we pad to
    the next multiple of 16 so any size works (spec §10.15). The zero padding (the mean
    colour) slightly affects boundary values near the right/bottom border, so numbers on
    VOC differ from IRN's in the last few cells there.
    """
    device = torch.device(device)
    height, width = rgb.shape[:2]
    image = to_chw_tensor(normalize(rgb)).to(device)
    batch = torch.stack([image, image.flip(-1)])
    pad_h = -height % PAD_MULTIPLE
    pad_w = -width % PAD_MULTIPLE
    batch = F.pad(batch, [0, pad_w, 0, pad_h])
    logits = model(batch)[:, : (height + 3) // 4, : (width + 3) // 4].float()
    merged = (logits[0] + logits[1].flip(-1)) / 2
    return torch.sigmoid(merged).cpu().numpy().astype(np.float32)


def save_irnet(model: IRNetBoundary, params: dict) -> dict:
    """The final checkpoint content: full state dict (the backbone too, since a demo
    backbone is randomly initialised and cannot be rebuilt from a file), config, depth."""
    return {"format": "pcam-irnet/1", "depth": model.depth,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": dict(params)}


def load_irnet(path: str | Path, device: torch.device | str = "cpu") -> IRNetBoundary:
    """A trained boundary network in eval mode on ``device``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: IRNet model file not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "pcam-irnet/1":
        raise ValueError(f"{path}: not a pcam IRNet model (written by `pcam train-irn`)")
    model = IRNetBoundary(checkpoint["depth"])
    model.load_state_dict(checkpoint["state_dict"])
    device = torch.device(device)
    model.to(device).eval()
    if device.type == "cuda":
        model.use_channels_last()
    return model
