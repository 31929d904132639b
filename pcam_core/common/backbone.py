"""ResNet backbones: the CAM/IRNet form (strides 2,2,2,1, frozen BN) and weight loading.

The CAM network and IRNet both use torchvision's ResNet with layer4 at stride 1 WITHOUT
dilation (spec §0.3, §1.1): a 512 input gives 128 / 64 / 32 / 32 at layer1..layer4, and a
size L maps to ceil(L/s) at stride s. BatchNorm is frozen everywhere: it always normalises
with its running statistics (train mode too), while its affine parameters may still learn.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

# File names of the torchvision ImageNet "V1" weights (IMAGENET1K_V1). V1, not V2, for parity
# with IRN and PCAM (spec §1.1). The data stage downloads them into resources/weights/.
IMAGENET_WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-19c8e357.pth",
    "resnet101": "resnet101-5d3b4d8f.pth",
}
BOTTLENECK_DEPTHS = ("resnet50", "resnet101")


def feature_channels(depth: str) -> dict[str, int]:
    """Output channels of stem/layer1..layer4 for a torchvision ResNet depth."""
    widths = (64, 64, 128, 256, 512)
    expansion = 4 if depth in BOTTLENECK_DEPTHS else 1
    return {"stem": widths[0], "layer1": widths[1] * expansion, "layer2": widths[2] * expansion,
            "layer3": widths[3] * expansion, "layer4": widths[4] * expansion}


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always uses (and never updates) its running statistics.

    Unlike torchvision.ops.FrozenBatchNorm2d its weight and bias stay Parameters, so the
    CAM network can train them in layer3/4 as IRN does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


def load_imagenet_weights(model: nn.Module, weights_path: str | Path) -> None:
    """Load a torchvision ImageNet state dict (fc dropped) with a clear error on mismatch."""
    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"{weights_path}: backbone weight file not found")
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{weights_path}: does not match the backbone "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")


def build_resnet(depth: str, weights_path: str | Path | None = None, *,
                 layer4_stride: int = 1, frozen_bn: bool = True,
                 replace_stride_with_dilation=None) -> models.ResNet:
    """A torchvision ResNet without its classifier.

    ``layer4_stride=1`` gives the CAM/IRNet geometry (stride 16 without dilation);
    DeepLab instead passes ``replace_stride_with_dilation=[False, False, True]``.
    """
    if depth not in IMAGENET_WEIGHT_FILES:
        raise ValueError(f"unknown backbone depth {depth!r}; choose one of {sorted(IMAGENET_WEIGHT_FILES)}")
    norm = FrozenStatsBatchNorm2d if frozen_bn else nn.BatchNorm2d
    model = getattr(models, depth)(weights=None, norm_layer=norm,
                                   replace_stride_with_dilation=replace_stride_with_dilation)
    if weights_path:
        load_imagenet_weights(model, weights_path)
    if layer4_stride == 1 and not replace_stride_with_dilation:
        _set_layer4_stride_one(model)
    model.fc = nn.Identity()
    return model


def _set_layer4_stride_one(model: models.ResNet) -> None:
    """Turn layer4's stride-2 (3x3 conv in the v1.5 layout, and the downsample) into 1."""
    block = model.layer4[0]
    strided = block.conv2 if hasattr(block, "conv3") else block.conv1
    strided.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def stem(model: models.ResNet, x: torch.Tensor) -> torch.Tensor:
    """conv1 -> bn1 -> relu -> maxpool (stride 4)."""
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))
