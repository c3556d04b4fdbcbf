"""SPAMattNet: the Sampling Propagation Attention Matting Network of "Sampling Propagation Attention with
Trimap Generation Network for Natural Image Matting" (Zhou et al., IEEE TCSVT 2023, §III-B).

A U-Net matting network (RGB + trimap in, alpha out) augmented with Sampling Propagation Attention (SPA):
LSPA, windowed attention on a low-level feature whose sampling branch reweights its affinities by a
distance map (Eq. 2-4) and whose propagation branch uses GCA's region weights (Eq. 5-7); GPA, global
attention on a high-level feature (Eq. 8); CFC, a gated fusion (Eq. 9); then ASPP and a Refinement Module.
No code or weights were released and Figs. 2, 4, 5 are missing, so these choices fill the gaps (NOTES.md
§5 REC unless said otherwise):

- **Backbone**: GCA's ResNet-34-D U-Net (:mod:`mattekit.models.layers`: encoder, five shortcut branches,
  22-layer decoder, every convolution under spectral normalisation with BatchNorm), the trimap as three
  one-hot channels, RGB ImageNet-normalised (GCA's input, via :class:`~mattekit.models.network.NetworkModel`).
- **Image features**: I_w is two stride-2 guidance stages on RGB (3 -> 32 -> 64 channels, 1/4); I is one
  more (64 -> 128, 1/8): reflect pad, 3x3 conv, ReLU, BN as GCA's guidance head (§III-B1).
- **GPA** sits in line after encoder ``layer2`` (1/8, 128 channels, GCA's encoder attention slot) with its
  residual; r = 2 (GCA's rate): the query is a 1x1 conv of I to C/r = 64 channels at every 1/8 position,
  key (from I) and value (from the alpha feature) are a 1x1 conv to 64 channels then a 3x3 stride-2 conv
  (1/16); the output 1x1 conv back to 128 channels is followed by a BatchNorm that starts at 1e-3, so the
  block starts near the identity (GCA's initialisation).  m (Eq. 6) counts |U| and |K| per image on the
  nearest-downsampled 1/16 trimap.
- **LSPA** sits on ``layer1``'s output (1/4, 64 channels) with I_w as image feature; windows 8x8, 4
  heads; q and k come from one FC layer on I_w; the sampling output goes through a 3x3 conv (on the whole
  map) before the 1D CFC.  dis follows Eq. 4 literally, so unknown keys get logit 0 in the sampling
  branch, and a window without foreground (background) has D_F = 0 (D_B = 0).  m counts |U| and |K| per
  window; the trimap is nearest-sampled to 1/4.  Inputs are reflect-padded to whole windows.
- **Fusion**: GPA's output is upsampled x2 (nearest), projected to 64 channels (1x1 conv, BN) and fused
  with LSPA's output by the 2D CFC; the result replaces ``layer1``'s output as the input of the 1/4
  shortcut branch, i.e. it is the decoder's 1/4 skip.
- **CFC** (Eq. 9): concatenation, a 1x1 convolution (2D) or an FC layer (1D, as a kernel-1 Conv1d) with
  bias under spectral normalisation, split in half, ELU(first) x sigmoid(second).
- **ASPP** on the 1/32 bottleneck as in MGMatting: the DeepLabv3 ASPP of :mod:`mattekit.models.backbones`
  with 256 channels, rates 2 / 4 / 8 and image pooling (MGMatting's rates at 1/32), then a 1x1
  conv-BN-ReLU back to the decoder's 512 channels.
- **Refinement Module** (§III-B3): [normalised RGB, coarse alpha] -> three 3x3 conv-BN-ReLU layers of 32
  channels -> a 3x3 conv to the residual, which starts at zero; refined = clamp(coarse + residual, 0, 1).
- **Loss** (Eq. 10-12): L_coarse + L_refined, each L1 over the unknown region plus the hard-mining L1 over
  the 50% largest errors among the unknown pixels of each image, weight 1 (:func:`matting_loss`).
- **SPAMattNet\\*** (Table IX, ``spamattnet-star``): the same encoder and SPA without ASPP, MGMatting's
  decoder (the same trunk with three side heads at 1/8, 1/4 and 1 -- 3x3 conv 32, BN, LeakyReLU 0.2, 3x3
  conv to 1, ``(tanh + 1) / 2``) and no RM.  At inference the heads are merged by MGMatting's progressive
  refinement: the 1/8 alpha, replaced by the 1/4 alpha within 15 px of its uncertain pixels
  (0 < alpha < 1 in 8 bits), then by the full-resolution alpha within 7 px of the result's uncertain
  pixels (square dilation; MGMatting uses elliptic kernels of 30 and 15 px).

Sizes at 512² (``mattekit models info``; docs/architectures.md): the paper's "26.0M / 49.8G" for
SPAMattNet* count parameters and multiply-adds (the thop convention: MGMatting's 45.7G is its multiply-add
count), which FlopCounterMode reports as twice as many FLOPs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.models.backbones import ASPP
from mattekit.models.base import Requirements
from mattekit.models.layers import (
    NormLayer,
    ResNetDDecoder,
    ResNetDEncoder,
    SpectralNorm,
    batch_norm,
    guidance_stage,
    key_weights,
    sn_conv1x1,
)
from mattekit.models.network import NetworkModel, build

#: GCA's demo padding; 32 also makes the 1/4 grid a whole number of 8x8 windows.
REQUIREMENTS = Requirements(trimap=True, weights=True, pad_multiple=32, pad_border=32)
#: GPA's queries sit at 1/8 and its keys at 1/16: (HW/64)(HW/256) scores, which NetworkModel's estimate
#: (cells at 1/stride, squared) matches at a stride of 16384 ** 0.25 = 11.3; 11 errs on the safe side.
ATTENTION_STRIDE = 11
#: LSPA window side and heads; GPA's channel and spatial reduction (NOTES.md §5 REC).
WINDOW, HEADS, RATE = 8, 4, 2
#: Share of the unknown pixels with the largest error that the hard-mining loss averages (§IV-B2).
HARD_SHARE = 0.5
#: Classes of the one-hot trimap channels (mattekit.models.network.one_hot_trimaps).
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2


# --- Sampling Propagation Attention (§III-B1) ------------------------------------------------------------


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) with H, W multiples of ``window`` to (B * S, window², C) windows, row-major."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // window, window, w // window, window)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, window * window, c)


def window_merge(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """The inverse of :func:`window_partition`: (B * S, window², C) back to (B, C, height, width)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, c, height, width)


def distance_map(classes: Tensor) -> Tensor:
    """dis = D_F + D_B (Eq. 3-4) for windows of trimap classes (S, h * w) laid out row-major in a square.

    For query i and key j with d_ij their pixel distance: D_F = d_ij / min_{j' in F} d_ij' when i is
    unknown and j foreground, -d_ij when i is not unknown and j foreground, 0 when j is not foreground;
    D_B likewise with background.  Returns (S, hw, hw) float32.
    """
    side = math.isqrt(classes.shape[-1])
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    position = torch.stack([rows.flatten(), cols.flatten()], dim=1).float().to(classes.device)
    distance = torch.cdist(position, position)[None]  # (1, hw, hw)
    query_unknown = (classes == UNKNOWN)[:, :, None]

    def region_term(region: int) -> Tensor:
        keys = (classes == region)[:, None, :]  # (S, 1, hw)
        nearest = torch.where(keys, distance, torch.inf).amin(dim=2, keepdim=True)  # (S, hw, 1)
        # An unknown query is never a key of F or B, so its nearest distance is >= 1 whenever keys exist.
        term = torch.where(query_unknown, distance / nearest, -distance)
        return torch.where(keys, term, torch.zeros((), device=classes.device))

    return region_term(FOREGROUND) + region_term(BACKGROUND)


def region_weights(unknown: Tensor) -> Tensor:
    """m of Eq. 6 for keys (N, L) flagged unknown: GCA's weight for unknown keys where set, for known keys
    elsewhere, with |U| and |K| counted over each row (a window for LSPA, an image for GPA)."""
    unknown_weight, known_weight = key_weights(unknown.float().mean(dim=1, keepdim=True))
    return torch.where(unknown, unknown_weight, known_weight)


class CrossFusionContext(nn.Module):
    """Cross-Fusion Contextual Module, CFC (§III-B2, Eq. 9): a gated fusion of two same-size features.

    ``dims`` 2 fuses (B, C, H, W) maps with a 1x1 convolution; ``dims`` 1 fuses (N, L, C) token sequences
    with an FC layer on the last dimension (a kernel-1 Conv1d, so that spectral normalisation applies).
    """

    def __init__(self, channels: int, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.dims = dims
        self.linear = SpectralNorm(conv(2 * channels, 2 * channels, kernel_size=1))

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        if self.dims == 1:
            first, second = first.transpose(1, 2), second.transpose(1, 2)
        features, gate = self.linear(torch.cat([first, second], dim=1)).chunk(2, dim=1)
        fused = F.elu(features) * torch.sigmoid(gate)
        return fused.transpose(1, 2) if self.dims == 1 else fused


class LocalSamplingPropagationAttention(nn.Module):
    """LSPA (§III-B1, Eq. 2-7): windowed sampling and propagation attention fused by the 1D CFC."""

    def __init__(self, channels: int = 64, window: int = WINDOW, heads: int = HEADS) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.qk = nn.Linear(channels, 2 * channels)
        self.sampling_conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.fusion = CrossFusionContext(channels, dims=1)

    def _heads(self, tokens: Tensor) -> Tensor:
        n, length, c = tokens.shape
        return tokens.reshape(n, length, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, image_feature: Tensor, alpha_feature: Tensor, classes: Tensor) -> Tensor:
        """Fused local feature (B, C, H, W) from I_w and A_w (B, C, H, W) and trimap classes (B, H, W)."""
        height, width = alpha_feature.shape[-2:]
        pad = (0, -width % self.window, 0, -height % self.window)
        image_feature = F.pad(image_feature, pad, mode="reflect") if any(pad) else image_feature
        alpha_feature = F.pad(alpha_feature, pad, mode="reflect") if any(pad) else alpha_feature
        classes = F.pad(classes[:, None].float(), pad, mode="replicate")[:, 0].long()
        padded_h, padded_w = alpha_feature.shape[-2:]
        image_windows = window_partition(image_feature, self.window)
        alpha_windows = window_partition(alpha_feature, self.window)
        class_windows = window_partition(classes[:, None], self.window)[..., 0]
        query, key = (self._heads(t) for t in self.qk(image_windows).chunk(2, dim=-1))
        with torch.autocast(alpha_feature.device.type, enabled=False):  # scores in float32, as in GCA
            scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(query.shape[-1])
            sampling = F.softmax(distance_map(class_windows)[:, None] * scores, dim=-1)
            propagation = F.softmax(region_weights(class_windows == UNKNOWN)[:, None, None] * scores, dim=-1)
            sampled = sampling @ self._heads(image_windows).float()  # Eq. 2
            propagated = propagation @ self._heads(alpha_windows).float()  # Eq. 5
        sampled = sampled.transpose(1, 2).flatten(2).to(alpha_feature.dtype)
        propagated = propagated.transpose(1, 2).flatten(2).to(alpha_feature.dtype)
        sampled = self.sampling_conv(window_merge(sampled, self.window, padded_h, padded_w))
        fused = self.fusion(window_partition(sampled, self.window), propagated)
        return window_merge(fused, self.window, padded_h, padded_w)[..., :height, :width]


class GlobalPropagationAttention(nn.Module):
    """GPA (§III-B1, Eq. 8): image-guided global attention that propagates the alpha feature, residual."""

    def __init__(self, channels: int = 128, guidance_channels: int = 128, rate: int = RATE) -> None:
        super().__init__()
        reduced = channels // rate
        self.query = nn.Conv2d(guidance_channels, reduced, kernel_size=1)
        self.key = nn.Sequential(
            nn.Conv2d(guidance_channels, reduced, kernel_size=1),
            nn.Conv2d(reduced, reduced, kernel_size=3, stride=rate, padding=1),
        )
        self.value = nn.Sequential(
            nn.Conv2d(channels, reduced, kernel_size=1),
            nn.Conv2d(reduced, reduced, kernel_size=3, stride=rate, padding=1),
        )
        self.out = nn.Sequential(
            nn.Conv2d(reduced, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels)
        )
        nn.init.constant_(self.out[1].weight, 1e-3)  # start near the identity, as GCA's block does

    def forward(self, guidance: Tensor, alpha: Tensor, unknown: Tensor) -> Tensor:
        """``alpha`` (B, C, H, W) refined; ``guidance`` (B, Cg, H, W); ``unknown`` (B, 1, H, W) in {0, 1}."""
        b, _, h, w = alpha.shape
        query = self.query(guidance).flatten(2).transpose(1, 2)  # (B, HW, C/r)
        key = self.key(guidance)
        value = self.value(alpha).flatten(2).transpose(1, 2)  # (B, HW/r², C/r)
        unknown_keys = F.interpolate(unknown, size=key.shape[-2:], mode="nearest").flatten(1) > 0.5
        with torch.autocast(alpha.device.type, enabled=False):
            scores = query.float() @ key.flatten(2).float() / math.sqrt(query.shape[-1])
            attention = F.softmax(region_weights(unknown_keys)[:, None] * scores, dim=-1)
            spread = (attention @ value.float()).transpose(1, 2).reshape(b, -1, h, w)
        return self.out(spread.to(alpha.dtype)) + alpha


# --- The network --------------------------------------------------------------------------------------


class SPAEncoder(ResNetDEncoder):
    """GCA's ResNet-34-D encoder with GPA after ``layer2``, LSPA on ``layer1`` and their 2D CFC as the 1/4
    skip; ``aspp`` adds the bottleneck ASPP of the full model (SPAMattNet* has none)."""

    def __init__(self, norm: NormLayer, aspp: bool) -> None:
        super().__init__(norm)
        self.local_head = nn.Sequential(*guidance_stage(3, 32, norm), *guidance_stage(32, 64, norm))
        self.global_head = guidance_stage(64, 128, norm)
        self.gpa = GlobalPropagationAttention(128, 128)
        self.lspa = LocalSamplingPropagationAttention(64)
        self.global_to_local = nn.Sequential(sn_conv1x1(128, 64), norm(64))
        self.cfc = CrossFusionContext(64, dims=2)
        self.aspp = (
            nn.Sequential(
                ASPP(512, 256, rates=(2, 4, 8)), sn_conv1x1(256, 512), norm(512), nn.ReLU(inplace=True)
            )
            if aspp
            else None
        )

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Bottleneck feature and the five skip features."""
        classes = x[:, 3:6].argmax(dim=1)  # the one-hot trimap: background, unknown, foreground
        local_image = self.local_head(x[:, :3])
        global_image = self.global_head(local_image)
        x1, out = self.stem(x)
        x2 = self.layer1(out)
        unknown = (classes[:, None, ::8, ::8] == UNKNOWN).float()
        x3 = self.gpa(global_image, self.layer2(x2), unknown)
        x4 = self.layer3(x3)
        bottleneck = self.layer_bottleneck(x4)
        if self.aspp is not None:
            bottleneck = self.aspp(bottleneck)
        local = self.lspa(local_image, x2, classes[:, ::4, ::4])
        spread = self.global_to_local(F.interpolate(x3, size=x2.shape[-2:], mode="nearest"))
        return bottleneck, self.shortcuts(x, x1, self.cfc(local, spread), x3, x4)


class RefinementModule(nn.Module):
    """Refinement Module, RM (§III-B3): a residual on the coarse alpha from the image and that alpha."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        body: list[nn.Module] = []
        for index in range(layers):
            body += [
                nn.Conv2d(4 if index == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.body = nn.Sequential(*body)
        self.residual = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.residual.weight)  # the refined alpha starts as the coarse one
        nn.init.zeros_(self.residual.bias)

    def forward(self, image: Tensor, coarse: Tensor) -> Tensor:
        residual = self.residual(self.body(torch.cat([image, coarse], dim=1)))
        return (coarse + residual).clamp(0.0, 1.0)


class SPAMattNet(nn.Module):
    """SPAMattNet: (normalised RGB, one-hot trimap) to the refined alpha, or with ``with_coarse`` to
    (coarse, refined), which the loss of Eq. 10 needs (through ``forward``, so a DDP wrapper sees it)."""

    def __init__(self, bn_eps: float = 1e-5) -> None:
        super().__init__()
        norm = batch_norm(bn_eps)
        self.encoder = SPAEncoder(norm, aspp=True)
        self.decoder = ResNetDDecoder(norm)
        self.refinement = RefinementModule()

    def forward(
        self, image: Tensor, trimap: Tensor, with_coarse: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        bottleneck, skips = self.encoder(torch.cat([image, trimap], dim=1))
        x = self.decoder.layer1(bottleneck) + skips[4]
        x = self.decoder.layer2(x) + skips[3]
        x = self.decoder.layer3(x) + skips[2]
        x = self.decoder.layer4(x) + skips[1]
        coarse = self.decoder.head(x, skips[0])
        refined = self.refinement(image, coarse)
        return (coarse, refined) if with_coarse else refined


def side_head(in_channels: int) -> nn.Sequential:
    """One of MGMatting's alpha heads: 3x3 conv to 32, BN, LeakyReLU 0.2, 3x3 conv to 1."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(32, 1, 3, padding=1),
    )


class ProgressiveDecoder(ResNetDDecoder):
    """MGMatting's decoder: GCA's trunk with alpha heads at 1/8, 1/4 and full resolution (for SPAMattNet*)."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__(norm)
        del self.conv2  # the side heads replace GCA's single output convolution
        self.refine_os8, self.refine_os4, self.refine_os1 = side_head(128), side_head(64), side_head(32)

    def forward(self, x: Tensor, skips: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """Alphas in [0, 1] from the 1/8, 1/4 and full-resolution heads, each at full resolution."""
        x = self.layer1(x) + skips[4]
        x = self.layer2(x) + skips[3]
        os8 = self.refine_os8(x)
        x = self.layer3(x) + skips[2]
        os4 = self.refine_os4(x)
        x = self.layer4(x) + skips[1]
        os1 = self.refine_os1(self.leaky_relu(self.bn1(self.conv1(x))) + skips[0])
        size = os1.shape[-2:]
        os8, os4 = (F.interpolate(a, size=size, mode="bilinear", align_corners=False) for a in (os8, os4))
        os8, os4, os1 = ((torch.tanh(a) + 1) / 2 for a in (os8, os4, os1))
        return os8, os4, os1


def progressive_refinement(os8: Tensor, os4: Tensor, os1: Tensor) -> Tensor:
    """MGMatting's inference merge: each finer alpha replaces the coarser one near its uncertain pixels."""
    alpha = os8
    for finer, radius in ((os4, 15), (os1, 7)):
        uncertain = ((alpha > 1 / 255) & (alpha < 254 / 255)).float()
        near = F.max_pool2d(uncertain, 2 * radius + 1, stride=1, padding=radius) > 0
        alpha = torch.where(near, finer, alpha)
    return alpha


class SPAMattNetStar(nn.Module):
    """SPAMattNet* (Table IX): SPA in MGMatting's U-Net, without ASPP or RM."""

    def __init__(self, bn_eps: float = 1e-5) -> None:
        super().__init__()
        norm = batch_norm(bn_eps)
        self.encoder = SPAEncoder(norm, aspp=False)
        self.decoder = ProgressiveDecoder(norm)

    def forward(
        self, image: Tensor, trimap: Tensor, with_sides: bool = False
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """The merged alpha, or with ``with_sides`` the (1/8, 1/4, full) head alphas training supervises."""
        bottleneck, skips = self.encoder(torch.cat([image, trimap], dim=1))
        sides = self.decoder(bottleneck, skips)
        return sides if with_sides else progressive_refinement(*sides)


# --- Loss (§III-B4) -------------------------------------------------------------------------------------


def alpha_loss(pred: Tensor, gt: Tensor, unknown: Tensor) -> Tensor:
    """L_alpha (Eq. 11): mean absolute error over the unknown pixels (B, 1, H, W masks)."""
    return ((pred - gt).abs() * unknown).sum() / unknown.sum().clamp_min(1.0)


def hard_mining_loss(pred: Tensor, gt: Tensor, unknown: Tensor, share: float = HARD_SHARE) -> Tensor:
    """L_hard (Eq. 12): per image, the mean absolute error of the ``share`` of its unknown pixels with the
    largest error, averaged over the images that have unknown pixels."""
    losses = []
    for error, region in zip((pred - gt).abs().flatten(1), unknown.flatten(1) > 0, strict=True):
        candidates = error[region]
        if candidates.numel():
            count = max(1, math.ceil(share * candidates.numel()))
            losses.append(candidates.topk(count).values.mean())
    return torch.stack(losses).mean() if losses else pred.sum() * 0.0


def matting_loss(
    coarse: Tensor, refined: Tensor, gt: Tensor, unknown: Tensor, share: float = HARD_SHARE
) -> dict[str, Tensor]:
    """The four terms of L_alpha (Eq. 10): L_alpha and L_hard of the coarse and of the refined alpha, by
    name (``coarse_alpha``, ``coarse_hard``, ``refined_alpha``, ``refined_hard``); the loss is their sum."""
    terms = {}
    for name, pred in (("coarse", coarse), ("refined", refined)):
        terms[f"{name}_alpha"] = alpha_loss(pred, gt, unknown)
        terms[f"{name}_hard"] = hard_mining_loss(pred, gt, unknown, share)
    return terms


# --- Registry ---------------------------------------------------------------------------------------------

_PAPER = (
    "Zhou et al., Sampling Propagation Attention with Trimap Generation Network for Natural Image Matting, "
    "IEEE TCSVT 2023"
)


def spamattnet(weights: str | Path | None = None, device: str = "auto", half: bool = False) -> NetworkModel:
    """SPAMattNet; ``weights``: a state_dict file (``.pth`` or ``.safetensors``); None: random init."""
    return build(SPAMattNet(), REQUIREMENTS, weights, device, half, ATTENTION_STRIDE)


def spamattnet_star(
    weights: str | Path | None = None, device: str = "auto", half: bool = False
) -> NetworkModel:
    """SPAMattNet*; ``weights``: a state_dict file (``.pth`` or ``.safetensors``); None: random init."""
    return build(SPAMattNetStar(), REQUIREMENTS, weights, device, half, ATTENTION_STRIDE)
