"""CAM network geometry (spec §0.3, §13), frozen parts and frozen BN statistics."""

import pytest
import torch

from pcam_core.cam.net import CamNet, resolve_cam_params


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CamNet("resnet18", num_classes=20)


def test_feature_sizes_500x375(net):
    from pcam_core.common.backbone import stem

    x = torch.zeros(1, 3, 375, 500)
    with torch.no_grad():
        s4 = net.backbone.layer1(stem(net.backbone, x))
        cam = net.relu_cam(x)
    assert s4.shape[-2:] == (94, 125)  # stride 4: ceil(375/4) x ceil(500/4)
    assert cam.shape == (1, 20, 24, 32)  # stride 16: ceil(375/16) x ceil(500/16)


def test_logits_are_the_mean_cam(net):
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        logits, cam = net(x, with_cam=True)
        gap = net.classifier(net.features(x).mean(dim=(2, 3), keepdim=True)).flatten(1)
    assert logits.shape == (2, 20)
    torch.testing.assert_close(logits, gap, rtol=1e-4, atol=1e-5)


def test_frozen_parts_get_no_gradient_and_bn_stats_stay():
    torch.manual_seed(0)
    net = CamNet("resnet18", num_classes=20)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    logits, cam = net(torch.randn(2, 3, 64, 64), with_cam=True)
    (logits.sum() + cam.pow(2).mean()).backward()
    for module in net.frozen_modules():
        for p in module.parameters():
            assert p.grad is None and not p.requires_grad
    assert net.backbone.layer3[0].conv1.weight.grad is not None
    assert net.backbone.layer4[0].bn1.weight.grad is not None  # BN affine trains in layer3/4
    assert net.classifier.weight.grad is not None
    for k, v in net.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    backbone, classifier = net.param_groups()
    assert classifier == [net.classifier.weight]
    assert net.classifier.bias is None
    assert len(backbone) == len([p for n, p in net.backbone.named_parameters()
                                 if n.startswith(("layer3", "layer4"))])


def test_resolve_params_rejects_unknown_keys():
    assert resolve_cam_params({"alpha": 0.2})["alpha"] == 0.2
    with pytest.raises(ValueError, match="alhpa"):
        resolve_cam_params({"alhpa": 0.2})


def test_from_scratch_net_trains_every_layer_with_batch_norm():
    from pcam_core.cam.net import build_cam_net

    torch.manual_seed(0)
    net = build_cam_net(resolve_cam_params({"imagenet_weights": False}), num_classes=20)
    assert not net.frozen and net.frozen_modules() == []
    net.train()
    before = net.backbone.bn1.running_mean.clone()
    logits = net(torch.randn(2, 3, 64, 64))
    logits.sum().backward()
    assert net.backbone.conv1.weight.grad is not None  # the stem learns too
    assert not torch.equal(before, net.backbone.bn1.running_mean)  # batch statistics are tracked
    backbone, _ = net.param_groups()
    assert len(backbone) == len(list(net.backbone.parameters()))
    with pytest.raises(ValueError, match="no --weights"):
        build_cam_net(resolve_cam_params({"imagenet_weights": True}), num_classes=20)
