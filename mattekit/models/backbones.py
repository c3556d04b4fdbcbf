"""ImageNet backbones and the DeepLabv3 ASPP head, shared by the ResNet-based matting networks.

- :class:`ResNet`: ResNet (He et al., *Deep Residual Learning for Image Recognition*, CVPR 2016) and
  ResNeXt (Xie et al., *Aggregated Residual Transformations for Deep Neural Networks*, CVPR 2017) in the
  torchvision layout, so that torchvision or timm ImageNet state_dicts load by name
  (:func:`adapt_state_dict`).  The output stride can be cut from 32 to 16 or 8 by dilating the last
  stages instead of striding them (DeepLabv3, Chen et al., *Rethinking Atrous Convolution for Semantic
  Image Segmentation*, arXiv 1706.05587, §3.1), and ``in_channels`` widens the first convolution for extra
  inputs (a trimap, a coarse mask).
- :class:`ASPP`: atrous spatial pyramid pooling with image-level features (DeepLabv3 §3.3), in
  torchvision's ``DeepLabHead[0]`` layout.

torchvision itself is not a dependency: its wheels pin one torch release each.  Parameter counts match
torchvision's ``num_params`` (tests/test_backbones.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASPP",
    "BACKBONES",
    "ResNet",
    "ResNetFeatures",
    "adapt_state_dict",
    "create_backbone",
]


def _conv3x3(in_channels: int, out_channels: int, stride: int, groups: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False
    )


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity shortcut (He et al. 2016, §4.1, ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock has no grouped (ResNeXt) form")
        self.conv1 = _conv3x3(in_channels, planes, stride, 1, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4 (He et al. 2016 §4.1; Xie et al. 2017 §3.3).

    The stride sits on the 3x3 convolution ("ResNet v1.5", as torchvision and timm), and the width of
    the middle convolutions is ``planes * base_width / 64 * groups`` (ResNeXt's cardinality x width).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetFeatures(NamedTuple):
    """What :meth:`ResNet.forward` returns: every stage's output, finest first.

    ``stem`` is the 1/2 feature after conv1-bn1-relu (before the max-pool); ``pool_indices`` are the
    max-pool's argmax indices (for ``F.max_unpool2d``) when asked for, else None.
    """

    stem: Tensor
    layer1: Tensor
    layer2: Tensor
    layer3: Tensor
    layer4: Tensor
    pool_indices: Tensor | None = None


class ResNet(nn.Module):
    """ResNet / ResNeXt trunk in the torchvision layout (keys ``conv1``, ``bn1``, ``layer1.0.conv1``, ...).

    ``output_stride`` 32 is the classification network; 16 dilates ``layer4`` (rate 2) and 8 also
    ``layer3`` (rate 2, ``layer4`` rate 4), as DeepLabv3 §3.1 does: the first block of a dilated stage keeps
    the previous rate, the others take the new one (torchvision's ``replace_stride_with_dilation``).
    ``num_classes`` adds the average pool and ``fc`` classifier; matting networks leave it None.
    Weights are initialised as torchvision does (Kaiming normal, BN weight 1 and bias 0).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        groups: int = 1,
        width_per_group: int = 64,
        in_channels: int = 3,
        output_stride: int = 32,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        self.block = block
        self.groups, self.base_width = groups, width_per_group
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2, dilate=output_stride == 8)
        self.layer4 = self._make_layer(512, layers[3], stride=2, dilate=output_stride <= 16)
        #: Channels of layer1..layer4 (256..2048 for bottleneck networks, 64..512 for basic ones).
        self.channels = tuple(c * block.expansion for c in (64, 128, 256, 512))
        self.output_stride = output_stride
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        expansion = self.block.expansion
        downsample = None
        if stride != 1 or self.inplanes != planes * expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * expansion, stride), nn.BatchNorm2d(planes * expansion)
            )
        options = {"groups": self.groups, "base_width": self.base_width}
        first = self.block(self.inplanes, planes, stride, downsample, dilation=previous_dilation, **options)
        self.inplanes = planes * expansion
        rest = (
            self.block(self.inplanes, planes, dilation=self.dilation, **options) for _ in range(1, blocks)
        )
        return nn.Sequential(first, *rest)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stem(self, x: Tensor) -> Tensor:
        """conv1-bn1-relu: the 1/2 feature (64 channels)."""
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x: Tensor, pool_indices: bool = False) -> ResNetFeatures:
        """Every stage's output (:class:`ResNetFeatures`); ``pool_indices`` also returns the max-pool's."""
        stem = self.stem(x)
        if pool_indices:
            pooled, indices = F.max_pool2d(stem, 3, 2, 1, return_indices=True)
        else:
            pooled, indices = self.maxpool(stem), None
        layer1 = self.layer1(pooled)
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        return ResNetFeatures(stem, layer1, layer2, layer3, self.layer4(layer3), indices)

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits (needs ``num_classes``): what the torchvision model's forward returns."""
        return self.fc(torch.flatten(self.avgpool(self(x).layer4), 1))


#: name -> (block, stage depths, groups, width per group): the torchvision/timm configurations.
BACKBONES: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...], int, int]] = {
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8),
}


def create_backbone(
    name: str, in_channels: int = 3, output_stride: int = 32, num_classes: int | None = None
) -> ResNet:
    """The backbone ``name`` (a key of :data:`BACKBONES`), randomly initialised."""
    try:
        block, layers, groups, width = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None
    return ResNet(block, layers, groups, width, in_channels, output_stride, num_classes)


def adapt_state_dict(state_dict: Mapping[str, Tensor], backbone: ResNet) -> dict[str, Tensor]:
    """An ImageNet state_dict (torchvision or timm layout) made to fit ``backbone``.

    The classifier (``fc.*``) is dropped when the backbone has none, and input channels beyond the
    checkpoint's are added to ``conv1.weight`` as zeros, so the extra inputs (trimap, mask) start without
    influence (GCA "Implementation Details"; the TGN of SPAMattNet §III-E does the same).  Load the result
    with ``load_state_dict(strict=True)``.
    """
    expected = backbone.state_dict()
    adapted = {
        key: value for key, value in state_dict.items() if key in expected or not key.startswith("fc.")
    }
    weight = adapted.get("conv1.weight")
    wanted = expected["conv1.weight"].shape[1]
    if weight is not None and weight.shape[1] < wanted:
        extra = weight.new_zeros(weight.shape[0], wanted - weight.shape[1], *weight.shape[2:])
        adapted["conv1.weight"] = torch.cat([weight, extra], dim=1)
    return adapted


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image-level features (DeepLabv3 §3.3, Fig. 5).

    Parallel branches on the same feature: a 1x1 convolution, one 3x3 convolution per atrous rate and,
    with ``image_pooling``, global average pooling -> 1x1 convolution -> bilinear upsampling; each
    branch is conv-BN-ReLU with ``out_channels``.  Their concatenation is projected back to
    ``out_channels`` by a 1x1 conv-BN-ReLU.  Keys follow torchvision (``convs.N.*``, ``project.*``);
    DeepLabv3 uses rates (6, 12, 18) at output stride 16 and (12, 24, 36) at 8.  ``dropout`` after the
    projection is torchvision's addition (0.5 there), off by default here.  The pooled branch has a BN on
    a 1x1 map, so training needs batches of at least two.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        image_pooling: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(_conv1x1(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU())
        ]
        for rate in rates:
            branches.append(
                nn.Sequential(
                    _conv3x3(in_channels, out_channels, 1, 1, rate), nn.BatchNorm2d(out_channels), nn.ReLU()
                )
            )
        if image_pooling:
            branches.append(
                nn.Sequential(
                    nn.AdaptiveAvgPool2d(1),
                    _conv1x1(in_channels, out_channels),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                )
            )
        self.image_pooling = image_pooling
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            _conv1x1(len(branches) * out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        outputs = [branch(x) for branch in self.convs]
        if self.image_pooling:
            outputs[-1] = F.interpolate(outputs[-1], size=size, mode="bilinear", align_corners=False)
        return self.project(torch.cat(outputs, dim=1))
