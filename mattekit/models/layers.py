"""Building blocks shared by GCA-Matting and HOP-Matting, laid out so official checkpoints load as they are.

Both papers use one backbone: a ResNet-34-D encoder with five shortcut branches and a 22-layer decoder with
a ``(tanh + 1) / 2`` alpha head, every convolution wrapped in spectral normalisation (GCA, "Baseline
Structure"; HOP §3.3).  Module and attribute names follow the official code because they are the
state_dict keys.  The attention primitives at the end are the contextual-attention steps the GCA block
and HOP's global block have in common.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Builds a BatchNorm2d for a channel count; the HOP variants differ only in its eps.
NormLayer = Callable[[int], nn.BatchNorm2d]

#: Power iterations on a freshly initialised spectral-norm layer (training then does one per step).
INITIAL_POWER_ITERATIONS = 3

#: Added to a key's score at its own position so a pixel does not copy its own opacity (GCA Eq. 3).
SELF_SCORE = -1e4


def batch_norm(eps: float) -> NormLayer:
    """A BatchNorm2d factory with the given eps (not stored in checkpoints, so the variant must say it)."""
    return partial(nn.BatchNorm2d, eps=eps)


def _unit(x: Tensor) -> Tensor:
    # The official power iteration divides by (norm + 1e-12), not max(norm, eps) as F.normalize does.
    return x / (x.norm() + 1e-12)


class SpectralNorm(nn.Module):
    """Spectral normalisation (Miyato et al. 2018) in the official GCA/HOP layout (GCA "Baseline Structure").

    The wrapped layer is kept as ``module`` with its weight replaced by ``weight_u``, ``weight_v`` and
    ``weight_bar``, so the keys read ``<name>.module.weight_u|weight_v|weight_bar``.  The matrix is
    ``weight_bar`` reshaped on dim 0 for every layer, ConvTranspose2d included (whose dim 0 holds the *input*
    channels, unlike ``torch.nn.utils.spectral_norm``): the released weights were trained that way.  In eval
    mode sigma comes from the stored u and v; in training mode one power iteration updates them first.

    Inference (eval mode, no gradient) computes ``weight_bar / sigma`` once and reuses it: recomputing it
    for every layer on every call cost GCA 0.2 s per call on a CPU core.  The price is a second copy of the
    convolution weights while the model is in use (96 MiB for GCA or HOP).  The reused weight is dropped as
    soon as ``weight_bar``, ``u`` or ``v`` change in place (loading a checkpoint) or move (``.to()``).
    """

    def __init__(self, module: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = module.weight.detach()
        nn.init.xavier_uniform_(weight)
        del module._parameters["weight"]
        rows = weight.shape[0]
        # u and v are parameters without gradient, as in the official code (they count as parameters there).
        module.register_parameter("weight_u", nn.Parameter(_unit(torch.randn(rows)), requires_grad=False))
        module.register_parameter(
            "weight_v", nn.Parameter(_unit(torch.randn(weight[0].numel())), requires_grad=False)
        )
        module.register_parameter("weight_bar", nn.Parameter(weight))
        self.module = module
        self._inference_weight: tuple[tuple[tuple[int, int], ...], Tensor] | None = None
        # Random u and v make sigma = u . W v close to zero with a random sign, which blows up an untrained
        # network's activations; a few iterations bring it near the largest singular value.
        for _ in range(INITIAL_POWER_ITERATIONS):
            self._power_iteration()

    def _matrix(self) -> Tensor:
        return self.module.weight_bar.reshape(self.module.weight_bar.shape[0], -1)

    @torch.no_grad()
    def _power_iteration(self) -> None:
        matrix, u, v = self._matrix(), self.module.weight_u, self.module.weight_v
        v.copy_(_unit(matrix.t().mv(u)))
        u.copy_(_unit(matrix.mv(v)))

    def normalized_weight(self) -> Tensor:
        """``weight_bar / sigma`` with ``sigma = u . (W v)``."""
        if self.training:
            self._power_iteration()
        elif not torch.is_grad_enabled():
            return self._cached_weight()
        return self._compute_weight()

    def _compute_weight(self) -> Tensor:
        module = self.module
        return module.weight_bar / module.weight_u.dot(self._matrix().mv(module.weight_v))

    def _cached_weight(self) -> Tensor:
        # Tensors count their in-place changes (_version); a move or a new tensor changes data_ptr.
        tensors = (self.module.weight_bar, self.module.weight_u, self.module.weight_v)
        key = tuple((tensor._version, tensor.data_ptr()) for tensor in tensors)
        if self._inference_weight is None or self._inference_weight[0] != key:
            self._inference_weight = (key, self._compute_weight())
        return self._inference_weight[1]

    def forward(self, x: Tensor) -> Tensor:
        module, weight = self.module, self.normalized_weight()
        if isinstance(module, nn.ConvTranspose2d):
            return F.conv_transpose2d(
                x,
                weight,
                module.bias,
                module.stride,
                module.padding,
                module.output_padding,
                module.groups,
                module.dilation,
            )
        return module._conv_forward(x, weight, module.bias)


def sn_conv(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> SpectralNorm:
    """A bias-free convolution under spectral normalisation."""
    return SpectralNorm(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False))


def sn_conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> SpectralNorm:
    """3x3 convolution, padding 1, under spectral normalisation."""
    return sn_conv(in_channels, out_channels, 3, stride, 1)


def sn_conv1x1(in_channels: int, out_channels: int) -> SpectralNorm:
    """1x1 convolution under spectral normalisation."""
    return sn_conv(in_channels, out_channels, 1)


def sn_upconv(channels: int) -> SpectralNorm:
    """Transposed 4x4 convolution, stride 2, that doubles the resolution, under spectral normalisation."""
    return SpectralNorm(nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False))


class BasicBlock(nn.Module):
    """Encoder residual block; a strided block downsamples its shortcut by average pooling (ResNet-D)."""

    def __init__(self, in_channels: int, channels: int, stride: int, norm: NormLayer) -> None:
        super().__init__()
        self.conv1 = sn_conv3x3(in_channels, channels, stride)
        self.bn1 = norm(channels)
        self.activation = nn.ReLU(inplace=True)
        self.conv2 = sn_conv3x3(channels, channels)
        self.bn2 = norm(channels)
        self.downsample = (
            nn.Sequential(nn.AvgPool2d(2, stride), sn_conv1x1(in_channels, channels), norm(channels))
            if stride != 1
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.activation(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.activation(out + identity)


class DecoderBlock(nn.Module):
    """Decoder residual block; an upsampling block doubles the resolution with a transposed convolution."""

    def __init__(self, in_channels: int, channels: int, upsample: bool, norm: NormLayer) -> None:
        super().__init__()
        self.conv1 = sn_upconv(in_channels) if upsample else sn_conv3x3(in_channels, in_channels)
        self.bn1 = norm(in_channels)
        self.activation = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = sn_conv3x3(in_channels, channels)
        self.bn2 = norm(channels)
        self.upsample = (
            nn.Sequential(
                nn.UpsamplingNearest2d(scale_factor=2), sn_conv1x1(in_channels, channels), norm(channels)
            )
            if upsample
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.activation(self.bn1(self.conv1(x)))))
        identity = x if self.upsample is None else self.upsample(x)
        return self.activation(out + identity)


def encoder_stage(
    in_channels: int, channels: int, blocks: int, stride: int, norm: NormLayer
) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first carries the stride."""
    first = BasicBlock(in_channels, channels, stride, norm)
    return nn.Sequential(first, *(BasicBlock(channels, channels, 1, norm) for _ in range(blocks - 1)))


def decoder_stage(in_channels: int, channels: int, blocks: int, norm: NormLayer) -> nn.Sequential:
    """``blocks`` DecoderBlocks; the first doubles the resolution."""
    first = DecoderBlock(in_channels, channels, True, norm)
    return nn.Sequential(first, *(DecoderBlock(channels, channels, False, norm) for _ in range(blocks - 1)))


def shortcut_branch(in_channels: int, channels: int, norm: NormLayer) -> nn.Sequential:
    """Two-conv skip branch from an encoder stage to the decoder; ReLU comes before BN here."""
    return nn.Sequential(
        sn_conv3x3(in_channels, channels),
        nn.ReLU(inplace=True),
        norm(channels),
        sn_conv3x3(channels, channels),
        nn.ReLU(inplace=True),
        norm(channels),
    )


def guidance_stage(in_channels: int, channels: int, norm: NormLayer) -> nn.Sequential:
    """One stride-2 step of the low-level image-feature (guidance) head: reflect pad, conv, ReLU, BN."""
    return nn.Sequential(
        nn.ReflectionPad2d(1),
        sn_conv(in_channels, channels, 3, stride=2),
        nn.ReLU(inplace=True),
        norm(channels),
    )


#: Input channels of the backbone: RGB then the one-hot trimap (background, unknown, foreground).
INPUT_CHANNELS = 6
_SHORTCUT_CHANNELS = ((INPUT_CHANNELS, 32), (32, 32), (64, 64), (128, 128), (256, 256))


class ResNetDEncoder(nn.Module):
    """ResNet-34-D encoder trunk (deep 3x3 stem, [3, 4, 4, 2] blocks) with its five shortcut branches."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__()
        self.conv1 = sn_conv3x3(INPUT_CHANNELS, 32, stride=2)
        self.conv2 = sn_conv3x3(32, 32)
        self.conv3 = sn_conv3x3(32, 64, stride=2)
        self.bn1 = norm(32)
        self.bn2 = norm(32)
        self.bn3 = norm(64)
        self.activation = nn.ReLU(inplace=True)
        self.layer1 = encoder_stage(64, 64, 3, 1, norm)
        self.layer2 = encoder_stage(64, 128, 4, 2, norm)
        self.layer3 = encoder_stage(128, 256, 4, 2, norm)
        self.layer_bottleneck = encoder_stage(256, 512, 2, 2, norm)
        self.shortcut = nn.ModuleList(shortcut_branch(i, o, norm) for i, o in _SHORTCUT_CHANNELS)

    def stem(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The 1/2 feature ``x1`` (input of ``shortcut.1``) and the 1/4 feature that enters ``layer1``."""
        out = self.activation(self.bn1(self.conv1(x)))
        x1 = self.activation(self.bn2(self.conv2(out)))
        return x1, self.activation(self.bn3(self.conv3(x1)))

    def shortcuts(self, *features: Tensor) -> tuple[Tensor, ...]:
        """Skip features at 1, 1/2, ..., 1/16 from the input, ``x1`` and the outputs of layer1..layer3."""
        return tuple(branch(f) for branch, f in zip(self.shortcut, features, strict=True))


class ResNetDDecoder(nn.Module):
    """22-layer decoder trunk ([2, 3, 3, 2] blocks, 512 to 32 channels) and the alpha head."""

    def __init__(self, norm: NormLayer) -> None:
        super().__init__()
        self.conv1 = sn_upconv(32)
        self.bn1 = norm(32)
        self.leaky_relu = nn.LeakyReLU(0.2, inplace=True)
        self.conv2 = nn.Conv2d(32, 1, kernel_size=3, padding=1)
        self.layer1 = decoder_stage(512, 256, 2, norm)
        self.layer2 = decoder_stage(256, 128, 3, norm)
        self.layer3 = decoder_stage(128, 64, 3, norm)
        self.layer4 = decoder_stage(64, 32, 2, norm)

    def head(self, x: Tensor, input_skip: Tensor) -> Tensor:
        """Full-resolution alpha in [0, 1] from the 1/2 feature and the input's shortcut feature."""
        x = self.leaky_relu(self.bn1(self.conv1(x))) + input_skip
        return (torch.tanh(self.conv2(x)) + 1.0) / 2.0


# --- contextual attention primitives (GCA "Guided Contextual Attention"; HOP §3.1 global block) -------------


def reflect_patches(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Patches (L, C, k, k) of a reflect-padded (C, H, W) map, row-major over the H/stride x W/stride grid."""
    before, after = (kernel - stride + 1) // 2, (kernel - stride) // 2
    padded = F.pad(x[None], (before, after, before, after), mode="reflect")[0]
    patches = padded.unfold(1, kernel, stride).unfold(2, kernel, stride)
    return patches.permute(1, 2, 0, 3, 4).reshape(-1, x.shape[0], kernel, kernel)


def patch_similarity(queries: Tensor, keys: Tensor) -> Tensor:
    """Scores (L, h, w) of every 3x3 query patch against every L2-normalised 3x3 key patch of (C, h, w) maps.

    Only the keys are normalised, so this is a cosine similarity up to the query's norm, as in the code.
    """
    patches = reflect_patches(keys, 3, 1)
    norms = patches.square().sum(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-4)
    return F.conv2d(F.pad(queries[None], (1, 1, 1, 1), mode="reflect"), patches / norms)[0]


def key_weights(unknown_share: Tensor) -> tuple[Tensor, Tensor]:
    """GCA Eq. 5-6: the weights of unknown keys and of known keys, given the unknown share of the area.

    Keys from the smaller region get more weight so it is not drowned by the larger one:
    clamp(sqrt(|U| / |K|)) and clamp(sqrt(|K| / |U|)) with clamp to [0.1, 10].  A share of 0 or 1 gives
    0 / inf before the clamp, so the weights stay finite without an epsilon.
    """
    unknown_weight = torch.sqrt(unknown_share / (1 - unknown_share)).clamp(0.1, 10)
    known_weight = torch.sqrt((1 - unknown_share) / unknown_share).clamp(0.1, 10)
    return unknown_weight, known_weight


def unknown_keys(unknown: Tensor) -> Tensor:
    """(L,) bool: keys whose 3x3 window of the reflect-padded (1, h, w) unknown mask touches it."""
    return reflect_patches(unknown, 3, 1).mean(dim=(1, 2, 3)) > 0


def mask_self(scores: Tensor, keys: Tensor) -> Tensor:
    """Add SELF_SCORE in place where a query meets itself as a key, for the keys flagged in ``keys`` (L,)."""
    # Key k sits at query position k, so its self score is entry (k, k) of the (L, L) view; no L x L mask.
    scores.view(scores.shape[0], -1).diagonal().add_(SELF_SCORE * keys.to(scores.dtype))
    return scores


def propagate(attention: Tensor, values: Tensor, rate: int = 2) -> Tensor:
    """Spread (C, H, W) values by (L, H/rate, W/rate) attention over (2 rate)-sized value patches.

    Rate 2: 4x4 patches at stride 2 pasted by a transposed convolution.  Rate 1: 2x2 patches, with the
    attention maps reflect-padded on the top and left.  Either way each pixel sums 4 patches, hence / 4.
    """
    patches = reflect_patches(values, 2 * rate, rate)
    if rate == 1:
        padded = F.pad(attention[None], (1, 0, 1, 0), mode="reflect")
        return F.conv2d(padded, patches.transpose(0, 1))[0] / 4.0
    return F.conv_transpose2d(attention[None], patches, stride=rate, padding=1)[0] / 4.0


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal encodings (len(positions), dim): sin then cos at frequencies 10000^(-2i/dim)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, dim, 2.0) / dim))
    angles = positions.float()[:, None] * inv_freq[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
