"""GCA-Matting: Natural Image Matting via Guided Contextual Attention (Li & Lu, AAAI 2020).

The released ``gca-dist`` network: a ResNet-34-D encoder and a 22-layer decoder (shared with HOP, see
:mod:`mattekit.models.layers`), a three-step guidance head on the RGB image, and one guided contextual
attention block in the encoder and one in the decoder at 1/8 resolution.  Official checkpoints
(``gca-dist.pth``, ``gca-dist-all-data.pth``) load with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.models.base import Requirements
from mattekit.models.layers import (
    NormLayer,
    ResNetDDecoder,
    ResNetDEncoder,
    batch_norm,
    guidance_stage,
    key_weights,
    mask_self,
    patch_similarity,
    propagate,
    unknown_keys,
)
from mattekit.models.network import NetworkModel, build

#: Official demo padding: a 32 px reflected border, then up to a multiple of 32.
REQUIREMENTS = Requirements(trimap=True, weights=True, pad_multiple=32, pad_border=32)
#: Both attention blocks work on a 2x downsampled 1/8 grid: one cell per 16 input pixels.
ATTENTION_STRIDE = 16


class GuidedContextualAttention(nn.Module):
    """Guided contextual attention block (GCA-Matting, "Guided Contextual Attention", Eq. 3-6).

    Image-feature patches decide where opacity flows; alpha-feature patches are what flows.  As in the
    released code the attention runs on a 2x downsampled grid and every position queries.
    """

    def __init__(self, channels: int = 128, guidance_channels: int = 128) -> None:
        super().__init__()
        self.guidance_conv = nn.Conv2d(guidance_channels, guidance_channels // 2, kernel_size=1)
        self.W = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels)
        )
        # The output starts near zero so the block begins as an identity (official init).
        nn.init.constant_(self.W[1].weight, 1e-3)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, guidance: Tensor, alpha: Tensor, unknown: Tensor) -> Tensor:
        """``alpha`` (B, C, h, w) refined over ``guidance`` (B, Cg, h, w) and ``unknown`` (B, 1, h, w)."""
        guide = self.guidance_conv(guidance)[..., ::2, ::2]
        unknown = unknown[..., ::2, ::2]
        # Scores and softmax stay in float32 under mixed precision: fp16 overflows in this attention.
        with torch.autocast(alpha.device.type, enabled=False):
            pairs = zip(guide, alpha, unknown, strict=True)
            spread = torch.stack([self._attend(g.float(), a.float(), u.float()) for g, a, u in pairs])
        return self.W(spread.to(alpha.dtype)) + alpha

    @staticmethod
    def _attend(guide: Tensor, alpha: Tensor, unknown: Tensor) -> Tensor:
        """One image: (C, H, W) alpha feature spread by the attention of the (Cg, H/2, W/2) guidance."""
        unknown_weight, known_weight = key_weights(unknown.mean())
        is_unknown = unknown_keys(unknown)
        weights = torch.where(is_unknown, unknown_weight, known_weight)
        scores = patch_similarity(guide, guide) * weights[:, None, None]
        attention = F.softmax(mask_self(scores, is_unknown), dim=0)
        return propagate(attention, alpha, rate=2)


class GCAEncoder(ResNetDEncoder):
    """ResNet-34-D encoder with the guidance head and the encoder GCA block after ``layer2``."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__(norm)
        # Three stride-2 steps on RGB give the 1/8 image feature ("Low-level Image Feature").
        stages = (guidance_stage(3, 16, norm), guidance_stage(16, 32, norm), guidance_stage(32, 128, norm))
        self.guidance_head = nn.Sequential(*(layer for stage in stages for layer in stage))
        self.gca = GuidedContextualAttention(128, 128)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...], Tensor, Tensor]:
        """Bottleneck feature, the five skip features, the 1/8 image feature and the 1/8 unknown mask."""
        x1, out = self.stem(x)
        image_feature = self.guidance_head(x[:, :3])
        unknown = x[:, 4:5, ::8, ::8]  # the one-hot unknown channel, nearest-sampled at 1/8
        x2 = self.layer1(out)
        x3 = self.gca(image_feature, self.layer2(x2), unknown)
        x4 = self.layer3(x3)
        return self.layer_bottleneck(x4), self.shortcuts(x, x1, x2, x3, x4), image_feature, unknown


class GCADecoder(ResNetDDecoder):
    """Decoder with the second GCA block after ``layer2`` (GCA "Network with Guided Contextual Attention")."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__(norm)
        self.gca = GuidedContextualAttention(128, 128)

    def forward(self, x: Tensor, skips: tuple[Tensor, ...], image_feature: Tensor, unknown: Tensor) -> Tensor:
        x = self.layer1(x) + skips[4]
        x = self.gca(image_feature, self.layer2(x) + skips[3], unknown)
        x = self.layer3(x) + skips[2]
        x = self.layer4(x) + skips[1]
        return self.head(x, skips[0])


class GCAMatting(nn.Module):
    """The GCA-Matting generator: (normalised RGB, one-hot trimap) to alpha in [0, 1]."""

    def __init__(self, bn_eps: float = 1e-5) -> None:
        super().__init__()
        norm = batch_norm(bn_eps)
        self.encoder = GCAEncoder(norm)
        self.decoder = GCADecoder(norm)

    def forward(self, image: Tensor, trimap: Tensor) -> Tensor:
        bottleneck, skips, image_feature, unknown = self.encoder(torch.cat([image, trimap], dim=1))
        return self.decoder(bottleneck, skips, image_feature, unknown)


def gca(weights: str | Path | None = None, device: str = "auto", half: bool = False) -> NetworkModel:
    """GCA-Matting; ``weights``: an official checkpoint or a zoo ``.safetensors`` file (None: random init)."""
    return build(GCAMatting(), REQUIREMENTS, weights, device, half, ATTENTION_STRIDE)
