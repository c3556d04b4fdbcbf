"""The shared ResNet/ResNeXt backbones and ASPP against torchvision's published figures."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mattekit.models.backbones import ASPP, adapt_state_dict, create_backbone

# torchvision's ``num_params`` (the classification networks, fc included) and ``GFLOPS`` at 224x224,
# which torchvision counts as multiply-accumulates (half of FlopCounterMode's FLOPs).
TORCHVISION = {
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.41),
}
# torchvision deeplabv3_resnet50 (21 classes, aux classifier): backbone + ASPP(2048, 256, (12, 24, 36))
# + 3x3 conv-BN + 1x1 classifier + FCNHead(1024) on layer3.
DEEPLABV3_RESNET50 = 42_004_074


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameters_and_flops_match_torchvision(name: str) -> None:
    params, gmacs = TORCHVISION[name]
    with torch.device("meta"):  # no memory, no arithmetic: only shapes flow
        net = create_backbone(name, num_classes=1000)
        assert _count(net) == params
        counter = FlopCounterMode(display=False)
        with counter:
            net.classify(torch.empty(1, 3, 224, 224))
    # FlopCounterMode leaves out BN, ReLU, pooling and the residual additions, as torchvision does.
    assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, abs=0.006)


def test_aspp_in_deeplabv3_matches_torchvision_count() -> None:
    with torch.device("meta"):
        backbone = create_backbone("resnet50", output_stride=8)
        aspp = ASPP(2048, 256, (12, 24, 36))
        head = torch.nn.Sequential(
            torch.nn.Conv2d(256, 256, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(256),
            torch.nn.Conv2d(256, 21, 1),
        )
        aux = torch.nn.Sequential(
            torch.nn.Conv2d(1024, 256, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(256),
            torch.nn.Conv2d(256, 21, 1),
        )
    assert sum(_count(m) for m in (backbone, aspp, head, aux)) == DEEPLABV3_RESNET50
    # torchvision key layout: one 1x1, three atrous and one pooled branch, then the projection.
    keys = aspp.state_dict().keys()
    assert {"convs.0.0.weight", "convs.3.0.weight", "convs.4.1.weight", "project.0.weight"} <= keys


@pytest.mark.parametrize(("stride", "dilations"), [(32, (1, 1)), (16, (1, 2)), (8, (2, 4))])
def test_output_stride_by_dilation(stride: int, dilations: tuple[int, int]) -> None:
    net = create_backbone("resnet34", output_stride=stride).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 64, 96), pool_indices=True)
    shapes = [tuple(f.shape[1:]) for f in features[:5]]
    assert shapes == [
        (64, 32, 48),
        (64, 16, 24),
        (128, 8, 12),
        (256, 64 // min(stride, 16), 96 // min(stride, 16)),
        (512, 64 // stride, 96 // stride),
    ]
    # The max-pool indices unpool the 1/4 map back onto the stem's grid.
    pooled = net.maxpool(features.stem)
    size = features.stem.shape[-2:]
    unpooled = torch.nn.functional.max_unpool2d(pooled, features.pool_indices, 3, 2, 1, output_size=size)
    # Every pooled maximum goes back to where it came from.
    assert torch.equal(torch.nn.functional.max_pool2d(unpooled, 3, 2, 1), pooled)
    # The first block of a dilated stage keeps the previous rate (DeepLabv3 / torchvision).
    assert (net.layer3[1].conv1.dilation[0], net.layer4[1].conv1.dilation[0]) == dilations
    assert net.layer4[0].conv1.dilation[0] == dilations[0]


def test_imagenet_state_dict_fits_with_extra_input_channels() -> None:
    imagenet = create_backbone("resnext50_32x4d", num_classes=1000)
    net = create_backbone("resnext50_32x4d", in_channels=5, output_stride=16).eval()
    net.load_state_dict(adapt_state_dict(imagenet.state_dict(), net), strict=True)
    assert torch.equal(net.conv1.weight[:, :3], imagenet.conv1.weight)
    assert not net.conv1.weight[:, 3:].any()
    # Zero-initialised extra channels: the extra inputs have no influence until trained.
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain = imagenet.eval()(image).layer2
        extended = net(torch.cat([image, torch.randn(1, 2, 64, 64)], dim=1)).layer2
    torch.testing.assert_close(extended, plain)


def test_aspp_shape_and_image_pooling() -> None:
    aspp = ASPP(64, 32, rates=(2, 4), image_pooling=False).eval()
    assert len(aspp.convs) == 3
    pooled = ASPP(64, 32, rates=(2, 4)).eval()
    assert len(pooled.convs) == 4
    x = torch.randn(2, 64, 9, 13)
    with torch.no_grad():
        assert aspp(x).shape == pooled(x).shape == (2, 32, 9, 13)
        # The image-level branch is constant over the map.
        branch = pooled.convs[-1](x)
    assert branch.shape == (2, 32, 1, 1)
