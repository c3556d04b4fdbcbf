"""The registry of matting models, looked up by name (like timm's ``create_model``).

A model family registers a factory with :func:`register_model`; the CLI, the predictor and the zoo only
ever go through :func:`create_model` and :func:`get_model_info`, so adding an architecture never
touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from mattekit.errors import MattekitError
from mattekit.models.base import MattingModel, Requirements

__all__ = [
    "MattingModel",
    "ModelInfo",
    "Requirements",
    "create_model",
    "get_model_info",
    "list_models",
    "register_model",
]

#: The weight-free model ``mattekit predict`` uses when no ``--model`` is given (chosen by measurement,
#: see docs/benchmarks.md).
DEFAULT_MODEL = "information-flow"

# Modules that register models when imported; listed here so the registry is complete on first use.
_MODEL_MODULES = (
    "mattekit.models.classical",
    "mattekit.models.information_flow",
    "mattekit.models.gca",
    "mattekit.models.hop",
)


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its name, what it needs, where it comes from, and how to build it."""

    name: str
    requirements: Requirements
    summary: str
    paper: str
    factory: Callable[..., MattingModel]


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str, requirements: Requirements, summary: str, paper: str
) -> Callable[[Callable[..., MattingModel]], Callable[..., MattingModel]]:
    """Decorator that registers a factory ``f(**kwargs) -> MattingModel`` under ``name``."""

    def decorate(factory: Callable[..., MattingModel]) -> Callable[..., MattingModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(name, requirements, summary, paper, factory)
        return factory

    return decorate


def _load_all() -> None:
    for module in _MODEL_MODULES:
        import_module(module)


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    _load_all()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a user error naming the known models if there is none."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise MattekitError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, **kwargs: object) -> MattingModel:
    """Build the model registered as ``name``; ``kwargs`` go to its factory (e.g. ``weights``, ``device``)."""
    return get_model_info(name).factory(**kwargs)
