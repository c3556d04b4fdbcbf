"""Optimisers, learning-rate schedules and gradient clipping, built from a recipe's top-level keys."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from mattekit.train.recipe import Recipe

#: Momentum of the running average of gradient norms that "running" clipping follows (official GCA).
RUNNING_MOMENTUM = 0.999


def make_optimizer(
    params: Iterable[Tensor], recipe: Recipe, lr: float | None = None
) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``params`` (``lr`` overrides the recipe's, e.g. for a discriminator)."""
    lr = recipe.lr if lr is None else lr
    params = list(params)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def lr_factor(step: int, recipe: Recipe) -> float:
    """The multiple of the base learning rate used at ``step`` (counted from 0).

    Warmup is linear, (step + 1) / warmup_steps.  "cosine" is the official GCA schedule: after warmup,
    ``CosineAnnealingLR(T_max = steps - warmup_steps)`` stepped once per step, i.e.
    (1 + cos(pi (step - warmup + 1) / T)) / 2.  "poly" is (1 - t / T)^power over the same span.
    """
    warmup = recipe.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "constant":
        return 1.0
    span = max(recipe.steps - warmup, 1)
    t = min(step - warmup + 1, span) / span
    if recipe.schedule == "cosine":
        return (1 + math.cos(math.pi * t)) / 2
    return (1 - t) ** recipe.poly_power


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler that sets :func:`lr_factor` of the base lr, stepped after each optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, recipe))


class GradientClipper:
    """Gradient-norm clipping: at a fixed ``value`` ("norm"), or at ``value`` times a running average of
    past norms ("running", the official GCA trainer: the first step only measures)."""

    def __init__(self, mode: str, value: float) -> None:
        self.mode = mode
        self.value = value
        self.average = 0.0

    def __call__(self, params: Iterable[Tensor]) -> float:
        """Clip the gradients of ``params`` in place; their total norm before clipping."""
        params = [p for p in params if p.grad is not None]
        if self.mode == "norm":
            return float(nn.utils.clip_grad_norm_(params, self.value))
        if self.average == 0.0:
            norm = float(nn.utils.clip_grad_norm_(params, 1e6))
            self.average = norm
            return norm
        norm = float(nn.utils.clip_grad_norm_(params, self.value * self.average))
        self.average = self.average * RUNNING_MOMENTUM + norm * (1 - RUNNING_MOMENTUM)
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average = float(state["average"])


def default_optimization(params: Iterable[Tensor], recipe: Recipe):  # -> Optimization (import cycle)
    """The recipe's optimiser, its schedule, and its clipping over ``params``."""
    from mattekit.train.task import Optimization

    optimizer = make_optimizer(params, recipe)
    clipper = None if recipe.clip == "off" else GradientClipper(recipe.clip, recipe.clip_value)
    return Optimization(optimizer, make_scheduler(optimizer, recipe), clipper)
