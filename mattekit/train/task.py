"""Training tasks: everything the trainer must know about one architecture, in one class.

The trainer (:mod:`mattekit.train.trainer`) owns what every run shares -- processes and DDP, the data
loader, mixed precision, gradient clipping, schedules, checkpoints, logging, validation.  A :class:`Task`
owns what differs between papers:

1. ``build_modules``: the networks, by name ("generator", and e.g. "discriminator");
2. ``configure_optimizers``: one :class:`Optimization` per optimiser (default: one over the generator from
   the recipe's ``optimizer``/``lr``/``schedule``/``clip`` keys);
3. ``make_sample``: how a sample leaves the data chain once its trimap exists (default: GCA's crop, jitter
   and composition) -- extra batch fields (context patches, coarse masks) are added here;
4. ``training_step``: forward, losses, and one :meth:`StepContext.optimize` call per optimiser;
5. ``inference_model``: the :class:`~mattekit.models.MattingModel` validation (and ``predict``) runs.

A task is registered with :func:`register_task` and named by a recipe's ``task`` key; its recipe table
``[options]`` is read into its ``Options`` dataclass (unknown keys are errors).  See docs/train.md,
"Adding an architecture".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models import MattingModel, get_model_info
from mattekit.models.network import NetworkModel
from mattekit.train.data import Sample, standard_sample
from mattekit.train.recipe import Recipe

if TYPE_CHECKING:
    from mattekit.train.optim import GradientClipper

__all__ = [
    "NoOptions",
    "Optimization",
    "StepContext",
    "Task",
    "get_task",
    "list_tasks",
    "register_task",
]

# Modules that register tasks when imported (one per architecture).
_TASK_MODULES = (
    "mattekit.train.gca",
    "mattekit.train.hattmatting",
    "mattekit.train.hdmatt",
    "mattekit.train.hop",
    "mattekit.train.spamattnet",
    "mattekit.train.tgn",
)


@dataclass(frozen=True)
class NoOptions:
    """The ``[options]`` table of a task that has none: it must be empty."""


@dataclass
class Optimization:
    """One optimiser with its learning-rate schedule and gradient clipping.

    ``scheduler`` steps once per :meth:`StepContext.optimize` call; ``clipper`` (or None) clips the
    gradients of the optimiser's parameters after they are unscaled, before the step.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    clipper: GradientClipper | None = None


class StepContext(Protocol):
    """What :meth:`Task.training_step` gets from the trainer for one step."""

    #: The step being taken, counted from 0.
    step: int
    #: The networks to run, by the names ``build_modules`` gave them: DDP-wrapped when distributed, in
    #: train mode, on ``device``.
    models: Mapping[str, nn.Module]
    device: torch.device

    def autocast(self) -> AbstractContextManager[object]:
        """The recipe's mixed precision (a no-op when ``amp = "off"`` or on the CPU): wrap forwards in it,
        compute losses outside it."""
        ...

    def optimize(self, name: str, loss: Tensor) -> None:
        """Backward ``loss`` and step optimiser ``name``: grad scaling, unscale, clipping, step, schedule,
        zero_grad.  A non-finite loss raises before anything is changed, naming the step and ``name``."""
        ...


class Task(ABC):
    """How to train one architecture; subclass, set the class attributes, and register it."""

    #: The registered task name a recipe's ``task`` key uses (set by :func:`register_task`).
    name: ClassVar[str] = ""
    #: The model registry name (``mattekit.models``) whose network ``export`` module is: predict, eval and
    #: ``mattekit models add`` build that architecture and load the exported weights strictly.
    architecture: ClassVar[str]
    #: The dataclass of the recipe's ``[options]`` table.
    Options: ClassVar[type] = NoOptions
    #: The module whose weights become ``RUN_DIR/model.safetensors`` and are validated.
    export: ClassVar[str] = "generator"
    #: Whether the default ``make_sample`` puts ``fg`` and ``bg`` in the batch (a loss on the composition
    #: needs them; otherwise two of a sample's three colour images are not sent through the loader).
    layers: ClassVar[bool] = False

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.options = recipe.options

    # 1. networks -------------------------------------------------------------------------------------

    @abstractmethod
    def build_modules(self) -> dict[str, nn.Module]:
        """Freshly initialised networks by name; ``export`` must be one of them."""

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        """Copy ImageNet weights (``backbone_weights``) into matching layers; the names filled, for the log.

        The default refuses: a task whose recipe allows ``backbone_weights`` maps the layers itself
        (see :func:`mattekit.train.backbone.load_matching`).
        """
        raise MattekitError(f"task {self.name!r} takes no backbone_weights")

    # 2. optimisation ---------------------------------------------------------------------------------

    def configure_optimizers(self, modules: Mapping[str, nn.Module]) -> dict[str, Optimization]:
        """One optimiser over ``modules[export]`` from the recipe's top-level keys, named "generator"."""
        from mattekit.train.optim import default_optimization

        return {"generator": default_optimization(modules[self.export].parameters(), self.recipe)}

    # 3. data -----------------------------------------------------------------------------------------

    def make_sample(self, sample: Sample, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The batch fields of one sample (numpy, channels first), from a sample that has been merged,
        resized, warped and given a trimap.  Default: crop around the unknown region, jitter, composite;
        fields ``image``, ``alpha``, ``trimap`` and, when composited on the fly and ``layers`` is set,
        ``fg`` and ``bg``.
        Every sample of a dataset must give the same fields and shapes (they are stacked into a batch)."""
        return standard_sample(sample, self.recipe, rng, self.layers)

    # 4. the step -------------------------------------------------------------------------------------

    @abstractmethod
    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        """Run one step: forward under ``ctx.autocast()``, ``ctx.optimize(name, loss)`` for each optimiser.

        ``batch`` holds the ``make_sample`` fields stacked and moved to ``ctx.device`` (``image`` in [0, 1],
        ``trimap`` uint8 0/128/255).  Returns the losses to log by name (detached or not); ``"loss"`` is
        the headline one (progress bar, ``metrics.csv``'s ``loss`` column).
        """

    # 5. inference ------------------------------------------------------------------------------------

    def inference_model(self, module: nn.Module, device: torch.device) -> MattingModel:
        """The model validation runs on ``module`` (the unwrapped ``export`` network), as predict would."""
        requirements = get_model_info(self.architecture).requirements
        return NetworkModel(module, requirements, device)


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator registering a :class:`Task` under ``name`` (the recipe's ``task`` key)."""

    def decorate(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    for module in _TASK_MODULES:
        import_module(module)


def list_tasks() -> list[str]:
    """Names of every registered task."""
    _load_all()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; a user error naming the known ones if there is none."""
    _load_all()
    try:
        return _TASKS[name]
    except KeyError:
        raise MattekitError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}") from None
