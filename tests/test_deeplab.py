"""DeepLabv3+ geometry (output stride 16, spec §13), decoder layout (D8) and LR groups (D6)."""

import pytest
import torch
from torch import nn

from pcam_core.deeplab.model import ASPP_RATES, DeepLabV3Plus, build_dilated_resnet


@pytest.fixture(scope="module")
def resnet18_model():
    torch.manual_seed(0)
    return DeepLabV3Plus("resnet18", num_classes=21).eval()


def test_output_stride_16_shapes_at_513(resnet18_model):
    x = torch.randn(1, 3, 513, 513)
    with torch.no_grad():
        taps = resnet18_model.features(x)
        logits = resnet18_model(x)
    assert taps["low_level"].shape[-2:] == (129, 129)  # stride 4
    assert taps["out"].shape[-2:] == (33, 33)  # stride 16, layer4 dilated not strided
    assert logits.shape == (1, 21, 513, 513)


def test_bottleneck_backbone_is_dilated_like_torchvision():
    model = build_dilated_resnet("resnet50")
    first, second = model.layer4[0], model.layer4[1]
    assert first.conv2.stride == (1, 1) and first.conv2.dilation == (1, 1)
    assert second.conv2.dilation == (2, 2)
    with torch.no_grad():
        out = model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(1, 3, 65, 65)))))))))
    assert out.shape == (1, 2048, 5, 5)  # ceil(65 / 16)


def test_basic_block_backbone_dilates_after_first_block(resnet18_model):
    layer4 = resnet18_model.backbone.layer4
    assert layer4[0].conv1.stride == (1, 1) and layer4[0].conv1.dilation == (1, 1)
    assert layer4[1].conv1.dilation == (2, 2) and layer4[1].conv2.padding == (2, 2)
    assert all(isinstance(m, nn.BatchNorm2d) and type(m) is nn.BatchNorm2d
               for m in resnet18_model.backbone.modules() if isinstance(m, nn.BatchNorm2d))


def test_decoder_has_two_3x3_convs_and_aspp_rates(resnet18_model):
    convs = [m for m in resnet18_model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3)]
    assert convs[0].in_channels == 256 + 48 and all(c.out_channels == 256 for c in convs)
    assert resnet18_model.low_level[0].out_channels == 48
    rates = [m.dilation[0] for m in resnet18_model.aspp.modules()
             if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert tuple(rates) == ASPP_RATES
    assert resnet18_model.classifier.out_channels == 21


def test_param_groups(resnet18_model):
    n_params = len(list(resnet18_model.parameters()))
    single = resnet18_model.param_groups(0.007, "single")
    assert [g["lr"] for g in single] == [0.007, 0.007]
    assert sum(len(g["params"]) for g in single) == n_params
    vainf = resnet18_model.param_groups(0.007, "vainf")
    assert vainf[0]["name"] == "backbone" and vainf[0]["lr"] == pytest.approx(0.0007)
    with pytest.raises(ValueError, match="lr_groups"):
        resnet18_model.param_groups(0.007, "jfz")


def test_bn_momentum_depends_on_pretrained_weights(tmp_path):
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), weights)
    pretrained = build_dilated_resnet("resnet18", weights)
    scratch = build_dilated_resnet("resnet18")
    assert pretrained.bn1.momentum == 0.01  # VainF: keep ImageNet statistics
    assert scratch.bn1.momentum == 0.1  # from scratch: overwrite the (0, 1) init quickly
