"""Synchronised BatchNorm for CPU processes (gloo): batch statistics over every process's batch.

``torch.nn.SyncBatchNorm`` is what GPUs use; DistributedDataParallel refuses it on CPU modules.  This
module gives CPU runs (and the tests that check N processes of batch b against one of batch N b) the same
semantics: in training, the mean and variance are those of the global batch, from one all-reduce of
per-channel sums; the backward all-reduces their gradients, as ``SyncBatchNorm`` does.  In eval mode it
is a plain BatchNorm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, value: Tensor) -> Tensor:
        value = value.clone()
        dist.all_reduce(value)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batches of every process (see the module doc)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        local = torch.cat(
            [
                x.sum(dim=(0, 2, 3)),
                (x * x).sum(dim=(0, 2, 3)),
                torch.full((1,), float(x.numel() // channels), dtype=x.dtype, device=x.device),
            ]
        )
        total = _AllReduceSum.apply(local)
        count = total[-1].detach()
        mean = total[:channels] / count
        var = total[channels : 2 * channels] / count - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                unbiased = var.detach() * count / max(float(count) - 1, 1.0)
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach() * self.momentum)
                self.running_var.mul_(1 - self.momentum).add_(unbiased * self.momentum)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BatchNorm2d replaced by this class, parameters and statistics kept."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            synced = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
            )
            synced.load_state_dict(module.state_dict())
            return synced.to(module.weight.device if module.affine else module.running_mean.device)
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module
