"""HAttMatting: Attention-Guided Hierarchical Structure Aggregation for Image Matting (Qiao et al. 2020).

Trimap-free matting from the RGB image alone (§3.1).  A ResNeXt backbone gives pyramidal features (block4
through ASPP) and appearance cues (block1); channel attention distils the pyramidal features, spatial
attention computed from them filters the appearance cues, and the two are fused into alpha (§3.2).  A
PatchGAN discriminator on (image, alpha) pairs, MSE and SSIM train it (§3.3, Eq. 2-5).

No official code or weights exist, and Fig. 2 is missing, so everything below the block level is a choice
(REC in ``shared/papers/NOTES.md`` §3, also in docs/architectures.md):

- Backbone: torchvision ``resnext101_32x8d`` (``resnext50_32x4d`` and the other
  :data:`~mattekit.models.backbones.BACKBONES` via ``backbone=``); the "larger receptive field" is output
  stride 16 with block4 (``layer4``) dilated by 2, so the x4 upsampling lands on block1's 1/4 grid.
- ASPP: DeepLabv3, 256 channels, rates 6/12/18 and image pooling.
- Channel attention: CBAM-style, average- and max-pooled vectors through one shared 2-layer MLP (reduction
  16), summed, sigmoid ("a shared MLP" suggests two inputs).
- Spatial attention: 1x7 and 7x1 conv-BN-ReLU (64 channels each) on the attended pyramidal features,
  concatenated, a 1x1 convolution to one channel and a sigmoid, multiplied onto all block1 channels.
  "We average the feature maps of block1" is read as: block1's 256 maps are the cues, as they are.
- Fusion head: concatenation at 1/4, two 3x3 conv-BN-ReLU (256), a 1x1 convolution to one channel,
  bilinear x4 to the input size, sigmoid.
- Initialisation outside the backbone: Kaiming-normal convolutions (a Gaussian, §3.4).
- Discriminator: the 70x70 PatchGAN of pix2pix on RGB + alpha, binary cross-entropy on logits; Eq. 3's
  real pair takes the ground-truth alpha (the text's "predicted" is taken as a slip).
- SSIM: 11x11 Gaussian window, sigma 1.5, constants (0.01, 0.03) for data range 1, over valid windows.
- Test time: reflect padding to a multiple of 32, then cropping (the predictor's padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.device import resolve_device
from mattekit.errors import MattekitError
from mattekit.models.backbones import ASPP, BACKBONES, create_backbone
from mattekit.models.base import Requirements
from mattekit.models.checkpoint import load_into, read_state_dict
from mattekit.models.network import NetworkModel

REQUIREMENTS = Requirements(trimap=False, weights=True, pad_multiple=32)
#: The backbone §3.4 trains (ImageNet ResNeXt-101; torchvision's 32x8d is NOTES.md's REC).
DEFAULT_BACKBONE = "resnext101_32x8d"
#: Output stride of the backbone: block4 dilated so that ASPP x4 meets block1 at 1/4.
OUTPUT_STRIDE = 16
ASPP_CHANNELS = 256
ASPP_RATES = (6, 12, 18)
MLP_REDUCTION = 16
SPATIAL_CHANNELS = 64
FUSION_CHANNELS = 256
#: Peak bytes per input pixel of one CPU forward pass: resident-memory growth measured at 384 and 768 px
#: with either backbone, 757 to 1066 (benchmarks/network_memory.py, docs/architectures.md), plus a margin.
BYTES_PER_PIXEL = 1152
_PAPER = "Qiao et al., Attention-Guided Hierarchical Structure Aggregation for Image Matting, CVPR 2020"


def conv_bn_relu(in_channels: int, out_channels: int, kernel: tuple[int, int]) -> nn.Sequential:
    """A same-size convolution, BatchNorm and ReLU."""
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ChannelAttention(nn.Module):
    """Pyramidal features distillation (§3.2): global pooling, a shared MLP, sigmoid, channel-wise product."""

    def __init__(self, channels: int, reduction: int = MLP_REDUCTION) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(pooled)


class SpatialAttention(nn.Module):
    """Appearance cues filtration (§3.2): 1x7 and 7x1 convolutions on the semantics give a spatial mask."""

    def __init__(self, channels: int, mid_channels: int = SPATIAL_CHANNELS) -> None:
        super().__init__()
        self.horizontal = conv_bn_relu(channels, mid_channels, (1, 7))
        self.vertical = conv_bn_relu(channels, mid_channels, (7, 1))
        self.mask = nn.Conv2d(2 * mid_channels, 1, 1)

    def forward(self, semantics: Tensor, cues: Tensor) -> Tensor:
        """``cues`` (B, C, h, w) weighted by a (B, 1, h, w) mask in [0, 1] computed from ``semantics``."""
        both = torch.cat([self.horizontal(semantics), self.vertical(semantics)], dim=1)
        return cues * torch.sigmoid(self.mask(both))


class HAttMatting(nn.Module):
    """The generator (§3.2): normalised RGB (B, 3, H, W) to alpha (B, 1, H, W) in [0, 1]."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, output_stride=OUTPUT_STRIDE)
        cue_channels, deep_channels = self.backbone.channels[0], self.backbone.channels[3]
        self.aspp = ASPP(deep_channels, ASPP_CHANNELS, ASPP_RATES)
        self.channel_attention = ChannelAttention(ASPP_CHANNELS)
        self.spatial_attention = SpatialAttention(ASPP_CHANNELS)
        self.fusion = nn.Sequential(
            conv_bn_relu(ASPP_CHANNELS + cue_channels, FUSION_CHANNELS, (3, 3)),
            conv_bn_relu(FUSION_CHANNELS, FUSION_CHANNELS, (3, 3)),
            nn.Conv2d(FUSION_CHANNELS, 1, 1),
        )
        for name, module in self.named_modules():
            if not name.startswith("backbone") and isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, image: Tensor) -> Tensor:
        features = self.backbone(image)
        cues = features.layer1  # block1, 1/4
        pyramid = F.interpolate(
            self.aspp(features.layer4), size=cues.shape[-2:], mode="bilinear", align_corners=False
        )
        semantics = self.channel_attention(pyramid)
        filtered = self.spatial_attention(semantics, cues)
        logits = self.fusion(torch.cat([filtered, semantics], dim=1))
        logits = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (§3.2; Isola et al., pix2pix, CVPR 2017, §3.2.2): a logit per 70x70 patch.

    Conditioned on the image (Eq. 3): it sees the normalised RGB and an alpha, four channels.
    """

    def __init__(self, in_channels: int = 4, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for index in range(1, layers + 1):
            out = width * min(2**index, 8)
            stride = 2 if index < layers else 1
            blocks += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.layers = nn.Sequential(*blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)  # pix2pix's initialisation

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:
        return self.layers(torch.cat([image, alpha], dim=1))


# --- losses (§3.3) and their schedule (§3.4) ---------------------------------------------------------------


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 1-D Gaussian of SSIM (Wang et al. 2004: 11 taps, sigma 1.5)."""
    taps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(taps**2) / (2 * sigma**2))
    return (window / window.sum()).float()


def ssim(pred: Tensor, target: Tensor, size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean SSIM (Eq. 5's fraction) of (B, 1, H, W) maps, over every window that lies inside the image.

    Local means, variances and covariance are Gaussian-weighted population statistics, with the usual
    constants c1 = (0.01 L)^2, c2 = (0.03 L)^2.
    """
    window = gaussian_window(size, sigma).to(pred)
    kernel_h, kernel_v = window.view(1, 1, 1, size), window.view(1, 1, size, 1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, kernel_h), kernel_v)

    mu_p, mu_g = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_g = blur(target * target) - mu_g**2
    cov = blur(pred * target) - mu_p * mu_g
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    score = ((2 * mu_p * mu_g + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_g**2 + c1) * (var_p + var_g + c2))
    return score.mean()


@dataclass(frozen=True)
class LossWeights:
    """The balance coefficients of Eq. 2."""

    adversarial: float
    mse: float
    ssim: float


#: §3.4: (0.05, 1, 0.1) in the first epoch, (0.05, 1, 0.025) in the 19 that follow.
FIRST_EPOCH_WEIGHTS = LossWeights(0.05, 1.0, 0.1)
LATER_WEIGHTS = LossWeights(0.05, 1.0, 0.025)


def loss_weights(epoch: int) -> LossWeights:
    """Eq. 2's lambdas for a 0-based ``epoch``."""
    return FIRST_EPOCH_WEIGHTS if epoch == 0 else LATER_WEIGHTS


def _bce(logits: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), float(real)))


def generator_loss(
    fake_logits: Tensor, pred: Tensor, target: Tensor, weights: LossWeights
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 2 for the generator, and its terms: adversarial (D's logits on (I, G(I)) pushed to "real"),
    MSE over every pixel (Eq. 4) and 1 - SSIM (Eq. 5); computed in float32."""
    pred, target = pred.float(), target.float()
    parts = {
        "adversarial": _bce(fake_logits, True),
        "mse": F.mse_loss(pred, target),
        "ssim": 1.0 - ssim(pred, target),
    }
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, parts


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Eq. 3 for the discriminator: (I, ground truth) is real, (I, G(I)) fake; halved as in pix2pix."""
    return 0.5 * (_bce(real_logits, True) + _bce(fake_logits, False))


# --- inference ----------------------------------------------------------------------------------------------


def backbone_of(state_dict: dict[str, Tensor]) -> str:
    """The backbone whose HAttMatting network has exactly the keys and shapes of ``state_dict``.

    Lets ``--weights`` alone pick the network: a checkpoint trained on ResNeXt-50 needs no extra option.
    """
    shapes = {key: tuple(value.shape) for key, value in state_dict.items()}
    for name in BACKBONES:
        with torch.device("meta"):  # shapes only: nothing is allocated or initialised for real
            expected = HAttMatting(name).state_dict()
        if shapes == {key: tuple(value.shape) for key, value in expected.items()}:
            return name
    return DEFAULT_BACKBONE  # the strict load then names the keys that misfit


def hattmatting(
    weights: str | Path | None = None,
    device: str = "auto",
    half: bool = False,
    backbone: str | None = None,
) -> NetworkModel:
    """HAttMatting; ``backbone`` defaults to the one the ``weights`` were trained with, else ResNeXt-101."""
    state_dict = None if weights is None else read_state_dict(weights)
    if backbone is None:
        backbone = DEFAULT_BACKBONE if state_dict is None else backbone_of(state_dict)
    if backbone not in BACKBONES:
        raise MattekitError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    net = HAttMatting(backbone)
    if state_dict is not None:
        load_into(net, state_dict, source=str(weights))
    return NetworkModel(net, REQUIREMENTS, resolve_device(device), half, bytes_per_pixel=BYTES_PER_PIXEL)
