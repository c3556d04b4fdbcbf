"""Losses and the network input every GCA-family task shares."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from mattekit.models.network import IMAGENET_MEAN, IMAGENET_STD
from mattekit.trimap import BACKGROUND_BELOW, FOREGROUND_FROM


def normalize(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] to ImageNet-normalised input (as ``network.normalize_images``)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


def one_hot(trimap: Tensor) -> Tensor:
    """(B, 1, H, W) uint8 trimap to (B, 3, H, W) float one-hot background / unknown / foreground, cut at 85
    and 170 (as :func:`mattekit.models.network.one_hot_trimaps`)."""
    classes = torch.ones_like(trimap[:, 0], dtype=torch.long)
    classes[trimap[:, 0] < BACKGROUND_BELOW] = 0
    classes[trimap[:, 0] >= FOREGROUND_FROM] = 2
    return F.one_hot(classes, num_classes=3).permute(0, 3, 1, 2).float()


def unknown_mask(trimap: Tensor) -> Tensor:
    """(B, 1, H, W) float mask of the trimap's unknown pixels."""
    return ((trimap >= BACKGROUND_BELOW) & (trimap < FOREGROUND_FROM)).float()


def global_sum(value: Tensor) -> Tensor:
    """``value`` summed over every process (itself when not distributed); gradients do not flow."""
    value = value.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value)
    return value


def weighted_l1(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """L1 averaged over the weighted pixels (GCA Eq. 2, the official ``regression_loss``).

    REC: the denominator is the weight of the whole global batch, not of this process's share (official:
    per GPU), times the number of processes (DDP averages gradients): then N processes of batch b take
    exactly the step one process of batch N b takes.
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    total = global_sum(weight.sum()) / world
    return (torch.abs(pred.float() - target.float()) * weight).sum() / (total + 1e-8)
