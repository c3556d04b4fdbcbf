"""HOP-Matting: Hierarchical Opacity Propagation for Image Matting (Li, Xu & Lu, arXiv 2004.03249).

The released ``HOP-9x9-RI`` network: the GCA backbone without encoder attention (see
:mod:`mattekit.models.layers`), four guidance heads on the RGB image (1/2 to 1/16), one global HOP block
at 1/16 with positional and trimap embeddings, and three 9x9 local HOP blocks at 1/8, 1/4 and 1/2.
The two released checkpoints differ in BatchNorm eps, which is not stored in them, so each has its own
registry name: ``hop`` (HOP-9x9-RI, eps 1e-3) and ``hop-all-data`` (HOP-9x9-RI-all-data, eps 1e-5).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models.base import Requirements
from mattekit.models.layers import (
    SELF_SCORE,
    NormLayer,
    ResNetDDecoder,
    ResNetDEncoder,
    batch_norm,
    guidance_stage,
    mask_self,
    patch_similarity,
    propagate,
    sinusoid,
    sn_conv1x1,
    unknown_keys,
)
from mattekit.models.network import NetworkModel, build

#: Distances up to this many cells of the global attention grid get their own positional encoding.
GLOBAL_RADIUS = 7
#: The global block works at 1/16 on a grid downsampled by this rate: 2 in the released configs (and the
#: official tester); the official demo.py sets 1, a finer grid for small images (``global_rate=1``).
DEFAULT_GLOBAL_RATE = 2


def requirements(global_rate: int = DEFAULT_GLOBAL_RATE) -> Requirements:
    """Padding as the official demo does it, and large enough for the global block.

    The official block builds its positional scores for at least 2 * 7 cells per axis of its grid, so it
    runs only on padded inputs of 448 px (rate 2) or 224 px (rate 1) or more; smaller ones are padded up.
    """
    min_size = 16 * global_rate * 2 * GLOBAL_RADIUS
    return Requirements(trimap=True, weights=True, pad_multiple=32, pad_border=32, min_size=min_size)


REQUIREMENTS = requirements()

#: BatchNorm eps of the released variants (HOP-9x9-RI was trained in fp16 with a large eps).
EPS_HOP_9X9_RI = 1e-3
EPS_HOP_9X9_RI_ALL_DATA = 1e-5


class GlobalOpacityPropagation(nn.Module):
    """Global HOP block with positional encoding and trimap embedding (HOP §3.1-3.2, Eq. 2-4).

    As in the released code: the attention runs on a grid downsampled by ``rate``, the trimap embedding is
    added to the keys only, the learnable ``scale`` multiplies the content score only, and the positional
    score uses the raw (unnormalised) query.
    """

    def __init__(self, channels: int, guidance_channels: int, norm: NormLayer, rate: int) -> None:
        super().__init__()
        embed = guidance_channels // 2
        self.rate = rate
        self.scale = nn.Parameter(torch.ones(1))
        self.guidance_conv = nn.Conv2d(guidance_channels, embed, kernel_size=1)
        self.pos_embed_linear = nn.Linear(embed, embed)
        self.trimap_embed_conv = nn.Conv2d(3, embed, kernel_size=1)
        self.W = nn.Sequential(sn_conv1x1(channels, channels), norm(channels))
        # The trimap embedding starts at zero and the output near zero (official init).
        nn.init.zeros_(self.trimap_embed_conv.weight)
        nn.init.zeros_(self.trimap_embed_conv.bias)
        nn.init.constant_(self.W[1].weight, 0.1)
        nn.init.zeros_(self.W[1].bias)
        # Row d encodes distance d: position 7 - d of the sinusoid (a fixed table, not in the state_dict).
        table = sinusoid(torch.arange(GLOBAL_RADIUS, -1, -1), embed)
        self.register_buffer("distance_encoding", table, persistent=False)

    def forward(self, guidance: Tensor, alpha: Tensor, trimap: Tensor) -> Tensor:
        """``alpha`` (B, C, h, w) refined over ``guidance`` (B, Cg, h, w) and a one-hot ``trimap``."""
        rate = self.rate
        queries = self.guidance_conv(guidance)[..., ::rate, ::rate]
        trimap = trimap[..., ::rate, ::rate]
        keys = queries + self.trimap_embed_conv(trimap)
        # Scores and softmax stay in float32 under mixed precision: fp16 overflows in this attention.
        with torch.autocast(alpha.device.type, enabled=False):
            distance = self.pos_embed_linear(self.distance_encoding.float())
            spread = torch.stack(
                [
                    self._attend(q.float(), k.float(), a.float(), t[1:2].float(), distance)
                    for q, k, a, t in zip(queries, keys, alpha, trimap, strict=True)
                ]
            )
        return self.W(spread.to(alpha.dtype)) + alpha

    def _attend(
        self, queries: Tensor, keys: Tensor, alpha: Tensor, unknown: Tensor, distance: Tensor
    ) -> Tensor:
        """One image: (C, H, W) alpha spread by attention on the (Ce, H/rate, W/rate) grid."""
        scores = patch_similarity(queries, keys) * self.scale.float()
        scores = mask_self(scores, unknown_keys(unknown)) + self._position_scores(queries, distance)
        return propagate(F.softmax(scores, dim=0), alpha, self.rate)

    @staticmethod
    def _position_scores(queries: Tensor, distance: Tensor) -> Tensor:
        """(L, h, w): P_q[min(|ky - qy|, 7)] + P_q[min(|kx - qx|, 7)], P_q[d] = q . distance[d] (Eq. 4)."""
        height, width = queries.shape[1:]
        per_distance = torch.einsum("chw,dc->hwd", queries, distance)
        rows = torch.arange(height, device=queries.device)
        cols = torch.arange(width, device=queries.device)
        dy = (rows[:, None] - rows[None, :]).abs().clamp(max=GLOBAL_RADIUS)  # (key row, query row)
        dx = (cols[:, None] - cols[None, :]).abs().clamp(max=GLOBAL_RADIUS)  # (key col, query col)
        by_row = per_distance[rows[None, :, None], cols[None, None, :], dy[:, :, None]]  # (ky, qy, qx)
        by_col = per_distance[rows[None, :, None], cols[None, None, :], dx[:, None, :]]  # (kx, qy, qx)
        return (by_row[:, None] + by_col[None, :]).reshape(height * width, height, width)


class LocalOpacityPropagation(nn.Module):
    """Local HOP block: attention within a k x k window with relative positions (HOP §3.1-3.2, Eq. 3)."""

    def __init__(self, channels: int, guidance_channels: int, norm: NormLayer, kernel_size: int = 9) -> None:
        super().__init__()
        embed = guidance_channels // 2
        self.kernel_size = kernel_size
        self.scale = nn.Parameter(torch.ones(1))
        self.guidance_conv = nn.Conv2d(guidance_channels, embed, kernel_size=1)
        self.W = nn.Sequential(sn_conv1x1(channels, channels), norm(channels))
        self.pos_embed_linear = nn.Linear(embed, embed)
        nn.init.constant_(self.W[1].weight, 0.1)
        nn.init.zeros_(self.W[1].bias)
        # Window offset i (0..k-1) is sinusoid position r + 1 - |i - r|, r = k // 2: blind to direction.
        radius = kernel_size // 2
        positions = radius + 1 - (torch.arange(kernel_size) - radius).abs()
        self.register_buffer("offset_encoding", sinusoid(positions, embed), persistent=False)

    def forward(self, guidance: Tensor, alpha: Tensor) -> Tensor:
        """``alpha`` (B, C, H, W) refined over the same-size ``guidance`` (B, Cg, H, W)."""
        size, radius = self.kernel_size, self.kernel_size // 2
        centre = radius * size + radius
        height, width = alpha.shape[2:]
        guide = self.guidance_conv(guidance)
        with torch.autocast(alpha.device.type, enabled=False):
            guide = guide.float()
            offset = self.pos_embed_linear(self.offset_encoding.float())[:, :, None, None]  # (k, C, 1, 1)
            guide = guide / guide.norm(dim=1, keepdim=True).clamp_min(1e-4)
            padded = F.pad(guide, (radius,) * 4, mode="reflect")
            # One score map per window offset (row-major), filled in place: this is the block's memory peak.
            scores = guide.new_empty((size * size, guide.shape[0], 1, height, width))
            for index in range(size * size):
                i, j = divmod(index, size)
                neighbour = padded[..., i : i + height, j : j + width]
                scores[index] = (guide * (neighbour + offset[i] + offset[j])).sum(dim=1, keepdim=True)
            # The centre is masked so a pixel does not copy its own opacity.
            scores[centre] = SELF_SCORE
            attention = F.softmax(scores.mul_(self.scale.float()), dim=0).to(alpha.dtype)
        values = F.pad(alpha, (radius,) * 4, mode="reflect")
        spread = torch.zeros_like(alpha)
        for index in range(size * size):
            i, j = divmod(index, size)
            if index != centre:
                spread = spread + values[..., i : i + height, j : j + width] * attention[index]
        return self.W(spread) + alpha


class HOPEncoder(ResNetDEncoder):
    """ResNet-34-D encoder plus the appearance encoder: guidance heads at 1/2, 1/4, 1/8, 1/16 (HOP §3.3)."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__(norm)
        self.guidance_head1 = guidance_stage(3, 16, norm)
        self.guidance_head2 = guidance_stage(16, 32, norm)
        self.guidance_head3 = guidance_stage(32, 64, norm)
        self.guidance_head4 = guidance_stage(64, 64, norm)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...], Tensor]:
        """Bottleneck feature, the five skip features, the four image features and the 1/16 one-hot trimap."""
        im1 = self.guidance_head1(x[:, :3])
        im2 = self.guidance_head2(im1)
        im3 = self.guidance_head3(im2)
        im4 = self.guidance_head4(im3)
        x1, out = self.stem(x)
        x2 = self.layer1(out)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        trimap = x[:, 3:6, ::16, ::16]  # nearest-sampled at 1/16
        return self.layer_bottleneck(x4), self.shortcuts(x, x1, x2, x3, x4), (im1, im2, im3, im4), trimap


class HOPDecoder(ResNetDDecoder):
    """Decoder with one global and three local HOP blocks between its stages (HOP Fig. 2)."""

    def __init__(self, norm: NormLayer, global_rate: int) -> None:
        super().__init__(norm)
        self.gca = GlobalOpacityPropagation(256, 64, norm, global_rate)
        self.localgca1 = LocalOpacityPropagation(128, 64, norm)
        self.localgca2 = LocalOpacityPropagation(64, 32, norm)
        self.localgca3 = LocalOpacityPropagation(32, 16, norm)

    def forward(
        self, x: Tensor, skips: tuple[Tensor, ...], image_features: tuple[Tensor, ...], trimap: Tensor
    ) -> Tensor:
        im1, im2, im3, im4 = image_features
        x = self.gca(im4, self.layer1(x) + skips[4], trimap)
        x = self.localgca1(im3, self.layer2(x) + skips[3])
        x = self.localgca2(im2, self.layer3(x) + skips[2])
        x = self.localgca3(im1, self.layer4(x) + skips[1])
        return self.head(x, skips[0])


class HOPMatting(nn.Module):
    """The HOP-Matting generator: (normalised RGB, one-hot trimap) to alpha in [0, 1]."""

    def __init__(self, bn_eps: float = EPS_HOP_9X9_RI, global_rate: int = DEFAULT_GLOBAL_RATE) -> None:
        super().__init__()
        norm = batch_norm(bn_eps)
        self.encoder = HOPEncoder(norm)
        self.decoder = HOPDecoder(norm, global_rate)

    def forward(self, image: Tensor, trimap: Tensor) -> Tensor:
        bottleneck, skips, image_features, small_trimap = self.encoder(torch.cat([image, trimap], dim=1))
        return self.decoder(bottleneck, skips, image_features, small_trimap)


def _build(
    bn_eps: float, weights: str | Path | None, device: str, half: bool, global_rate: int
) -> NetworkModel:
    if global_rate not in (1, 2):
        raise MattekitError(f"HOP global_rate must be 1 or 2, not {global_rate}")
    # The global grid has one cell per 16 * rate input pixels: its attention memory grows with its square.
    net = HOPMatting(bn_eps, global_rate)
    return build(net, requirements(global_rate), weights, device, half, attention_stride=16 * global_rate)


def hop(
    weights: str | Path | None = None,
    device: str = "auto",
    half: bool = False,
    global_rate: int = DEFAULT_GLOBAL_RATE,
) -> NetworkModel:
    """HOP-9x9-RI; ``weights``: an official checkpoint or a zoo ``.safetensors`` file (None: random init)."""
    return _build(EPS_HOP_9X9_RI, weights, device, half, global_rate)


def hop_all_data(
    weights: str | Path | None = None,
    device: str = "auto",
    half: bool = False,
    global_rate: int = DEFAULT_GLOBAL_RATE,
) -> NetworkModel:
    """HOP-9x9-RI-all-data; the same keys as ``hop``, only the BatchNorm eps differs."""
    return _build(EPS_HOP_9X9_RI_ALL_DATA, weights, device, half, global_rate)
