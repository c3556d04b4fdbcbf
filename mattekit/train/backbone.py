"""ImageNet initialisation of the ResNet-34-D encoder from timm / torchvision checkpoints.

The official GCA trainer starts from ``ResNet34_En_nomixup``, a custom ImageNet ResNet-34-D with spectral
norm that is not available here.  NOTES.md's REC: load the matching layers of timm ``resnet34d`` (same
deep-stem shapes) or torchvision ``resnet34`` (blocks only: its 7x7 stem does not fit).  Names are
translated, then a tensor is copied only where the shapes match; the trimap input channels of the first
convolution start at zero (official ``load_imagenet_pretrain``).  Spectral-norm u and v are re-estimated
for each loaded weight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from mattekit.models.layers import INITIAL_POWER_ITERATIONS, SpectralNorm

# timm resnet34d's deep stem (conv1.0/1/3/4/6, bn1) in the encoder's names (conv1..3, bn1..3).
_STEM = {
    "conv1.0.": "conv1.",
    "conv1.1.": "bn1.",
    "conv1.3.": "conv2.",
    "conv1.4.": "bn2.",
    "conv1.6.": "conv3.",
    "bn1.": "bn3.",
}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _translate(key: str) -> str:
    """A timm / torchvision ResNet key in the encoder's naming (SN convs keep their weight in weight_bar)."""
    for prefix, ours in _STEM.items():
        if key.startswith(prefix):
            key = ours + key[len(prefix) :]
            break
    return re.sub(r"^layer4\.", "layer_bottleneck.", key)


def _conv_names(encoder: nn.Module) -> dict[str, SpectralNorm]:
    return {name: module for name, module in encoder.named_modules() if isinstance(module, SpectralNorm)}


def load_resnet34_encoder(encoder: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Copy every tensor of ``state_dict`` that finds a same-shaped place in ``encoder``; the names filled.

    torchvision's ``downsample.0|1`` (conv, bn) are tried as ``downsample.1|2``.  The first convolution
    takes RGB weights into its first three input channels and zeros for the trimap's.
    """
    ours = encoder.state_dict()
    convs = _conv_names(encoder)
    filled: list[str] = []
    keys = [re.sub(r"^(module\.|model\.|backbone\.)", "", key) for key in state_dict]
    # torchvision's 7x7 stem (conv1, bn1) has no counterpart in the 3x3 deep stem: skip it.
    deep_stem = "conv1.0.weight" in keys
    with torch.no_grad():
        for key, value in zip(keys, state_dict.values(), strict=True):
            if not deep_stem and (key.startswith("conv1.") or key.startswith("bn1.")):
                continue
            name = _translate(key)
            candidates = [name]
            if ".downsample.0." in name or ".downsample.1." in name:
                candidates.append(
                    re.sub(r"\.downsample\.(\d)\.", lambda m: f".downsample.{int(m[1]) + 1}.", name)
                )
            for candidate in candidates:
                target = _target(candidate, ours, convs)
                if target is None:
                    continue
                if _copy(ours[target], value):
                    filled.append(target)
                    break
        for name, conv in convs.items():
            if f"{name}.module.weight_bar" in filled:
                for _ in range(INITIAL_POWER_ITERATIONS):
                    conv._power_iteration()
    return filled


def _target(name: str, ours: Mapping[str, Tensor], convs: Mapping[str, SpectralNorm]) -> str | None:
    if name.endswith(".weight") and name[: -len(".weight")] in convs:
        return name[: -len(".weight")] + ".module.weight_bar"
    if name in ours and name.rsplit(".", 1)[-1] in _BN_FIELDS:
        return name
    return None


def _copy(target: Tensor, value: Tensor) -> bool:
    if target.shape == value.shape:
        target.copy_(value)
        return True
    # The first convolution: RGB weights for the image channels, zeros for the one-hot trimap.
    rgb = target.dim() == 4 and value.dim() == 4 and value.shape[1] == 3 and target.shape[1] > 3
    if rgb and target.shape[0] == value.shape[0] and target.shape[2:] == value.shape[2:]:
        target.zero_()
        target[:, :3].copy_(value)
        return True
    return False
