"""The (P)CAM network: a stride-16 ResNet, global average pooling and a 1x1 classifier.

Spec §1.1-1.2 (IRN's ``resnet50_cam.Net``): strides (2,2,2,1) without dilation, BatchNorm
frozen everywhere (running statistics only) with its affine parameters training in
layer3/4, stem/layer1/layer2 frozen and detached, and a bias-free N-way 1x1 classifier (N = the dataset's object classes).
Because the classifier is linear and bias-free, the logits are the spatial mean of the CAM
(z_c = mean_x w_c^T f(x)), so one forward gives both the image loss and the point loss.

Without ImageNet weights (the demo trains from scratch) ``build_cam_net`` makes every layer
trainable with ordinary BatchNorm instead: freezing only makes sense for pretrained features.

This module also owns the ``cam:`` config section's defaults (``resolve_cam_params``), so the
training, export and evaluation commands agree on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcam_core.common.backbone import IMAGENET_WEIGHT_FILES, build_resnet, feature_channels, stem

# Output k <-> segmentation id k + 1 (spec §0.2); the count N comes from the dataset index
# at training and from the checkpoint afterwards.
# Added to a class map's max before dividing (training option A §1.4, export §2.4): an
# all-zero map stays 0 instead of NaN, and a real map's max becomes 1 - O(1e-5).
MAXNORM_EPS = 1e-5

# Defaults of the ``cam:`` config section: the demo values of config.yaml, so that a
# ``--params`` holding only a few keys (tests, benchmarks, manual runs) still works. The
# workflow passes the whole validated section.
CAM_DEFAULTS: dict[str, Any] = {
    "backbone": "resnet18",
    "imagenet_weights": False,
    "alpha": 0.1,
    "point_loss_form": "maxnorm",
    "batch_size": 16,
    "crop_size": 128,
    "resize_long": [96, 160],
    "epochs": 12,
    "lr_backbone": 0.01,
    "lr_classifier": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0001,
    "poly_power": 0.9,
    "export_scales": [1.0, 0.5, 1.5, 2.0],
    "eval_threshold": {"cam": 0.15, "pcam": 0.30, "pcam_full": 0.30},
    "checkpoint_every": 50,
    "num_workers": 2,
    "seed": 0,
}


def resolve_cam_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``cam:`` section with defaults filled in; an unknown key is an error that names it.

    Refusing unknown keys catches a misspelt ``--params`` given by hand (the workflow's
    schema already catches them in config.yaml).
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(CAM_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown cam parameter(s) {unknown}; known: {sorted(CAM_DEFAULTS)}")
    resolved = {**CAM_DEFAULTS, **params}
    if resolved["point_loss_form"] not in ("maxnorm", "sigmoid"):
        raise ValueError(f"point_loss_form must be 'maxnorm' or 'sigmoid', not {resolved['point_loss_form']!r}")
    if resolved["backbone"] not in IMAGENET_WEIGHT_FILES:
        raise ValueError(f"unknown backbone {resolved['backbone']!r}; choose one of {sorted(IMAGENET_WEIGHT_FILES)}")
    return resolved


class CamNet(nn.Module):
    """ResNet (strides 2,2,2,1, frozen-stats BN) + GAP + bias-free 1x1 classifier.

    ``frozen=False`` (training from scratch, see ``build_cam_net``) makes every layer
    trainable with ordinary BatchNorm; the geometry and the classifier are unchanged.
    """

    def __init__(self, depth: str = "resnet50", weights_path: str | Path | None = None, *,
                 num_classes: int, frozen: bool = True):
        super().__init__()
        self.depth = depth
        self.frozen = frozen
        self.num_classes = num_classes
        self.backbone = build_resnet(depth, weights_path, layer4_stride=1, frozen_bn=frozen)
        channels = feature_channels(depth)["layer4"]
        # PyTorch's default conv init, as IRN (spec §1.2); no bias so that logits = mean CAM.
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)
        # Frozen part (spec §1.1): stem, layer1, layer2. IRN detaches after layer2; we also
        # switch their requires_grad off, so no optimiser (and no weight decay) ever sees them.
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        if not self.frozen:
            return []
        b = self.backbone
        return [b.conv1, b.bn1, b.layer1, b.layer2]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """layer4 features at stride 16: (B, C, ceil(H/16), ceil(W/16))."""
        b = self.backbone
        if not self.frozen:
            return b.layer4(b.layer3(b.layer2(b.layer1(stem(b, x)))))
        # The frozen part runs without autograd: the same as IRN's detach after layer2, and
        # it keeps no activations for backward (less memory, faster).
        with torch.no_grad():
            x = b.layer2(b.layer1(stem(b, x)))
        x = x.detach()
        return b.layer4(b.layer3(x))

    def cam_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The classifier as a 1x1 convolution: raw CAM A_c(x) = w_c^T f(x), stride 16."""
        return self.classifier(features)

    def forward(self, x: torch.Tensor, with_cam: bool = False):
        """Logits (B, N); with ``with_cam`` also the raw stride-16 CAM (B, N, h, w).

        Logits are the spatial mean of the raw CAM, i.e. exactly GAP then the classifier
        (the classifier is linear and bias-free), so the point loss costs no second pass.
        """
        cam = self.cam_logits(self.features(x))
        logits = cam.mean(dim=(2, 3))
        return (logits, cam) if with_cam else logits

    @torch.no_grad()
    def relu_cam(self, x: torch.Tensor) -> torch.Tensor:
        """Inference CAM: ReLU of the stride-16 1x1-conv map (spec §2.2)."""
        return torch.relu(self.cam_logits(self.features(x)))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, classifier) trainable parameters, for their separate learning rates.

        The backbone group holds layer3/layer4 convolutions and their BN gamma/beta, which
        IRN trains and decays like any weight (spec §1.1).
        """
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        classifier = [p for p in self.classifier.parameters() if p.requires_grad]
        return backbone, classifier


def build_cam_net(params: dict[str, Any], weights_path: str | Path | None = None, *,
                  num_classes: int) -> CamNet:
    """A CamNet for a resolved ``cam:`` section.

    With ImageNet weights: IRN's network (frozen stem..layer2, frozen-stats BN). Without
    (the demo): every layer trains and BN uses batch statistics (running statistics at
    export). Freezing is only meaningful for pretrained features: frozen RANDOM layers and
    BN statistics that were never estimated (mean 0, var 1) left the demo net at the class
    priors (loss 0.14 = prior entropy) after 120 steps, while the trainable net reached 0.07
    (resnet18, batch 16, crop 64, lr 0.02/0.2; frozen with BN statistics estimated from the
    data: 0.10).
    """
    pretrained = bool(params.get("imagenet_weights"))
    if pretrained and not weights_path:
        raise ValueError("cam.imagenet_weights is true but no --weights file was given")
    return CamNet(params["backbone"], weights_path if pretrained else None, num_classes=num_classes,
                  frozen=pretrained)


def load_cam_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[CamNet, dict]:
    """Rebuild a trained CamNet from ``train-cam``'s output (state dict + config + depth)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: CAM model not found")
    saved = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(saved, dict) or "state_dict" not in saved or "backbone" not in saved:
        raise ValueError(f"{path}: not a pcam train-cam output (expected state_dict and backbone)")
    # num_classes: the object classes of the dataset it was trained on (20 before pcam stored it).
    model = CamNet(saved["backbone"], num_classes=int(saved.get("num_classes", 20)),
                   frozen=saved.get("frozen", True))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, saved
