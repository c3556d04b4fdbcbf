"""The registry of matting models, looked up by name (like timm's ``create_model``).

Every architecture is declared once, in the catalogue at the end of this file: its name, the
``"module:function"`` that builds it, what it needs (:class:`Requirements`), a one-line summary and its
paper.  A declaration is plain data, so listing the models, validating ``models.toml`` against them or
running a weight-free solver never imports torch nor any architecture's module; a factory's module is
imported when that model is first built.  The CLI, the predictor and the zoo only ever go through
:func:`create_model`, :func:`get_model_info` and :func:`list_models`, so adding an architecture touches
its own module and one :func:`register_model` line below (docs/adding-a-model.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from mattekit.errors import MattekitError
from mattekit.models.base import MattingModel, Requirements

__all__ = [
    "DEFAULT_MODEL",
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

#: A factory ``f(**kwargs) -> MattingModel``, or where to find one: ``"package.module:function"``.
Factory = Callable[..., MattingModel] | str


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: its name, how to build it, what it needs and where it comes from."""

    name: str
    factory: Factory
    requirements: Requirements
    summary: str
    paper: str

    def build(self, **kwargs: object) -> MattingModel:
        """Import the factory (on first use) and call it with ``kwargs``."""
        return _resolve(self.factory)(**kwargs)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, factory: Factory, requirements: Requirements, summary: str, paper: str) -> None:
    """Declare the model ``name``; ``factory`` is a callable or a ``"module:function"`` imported on use.

    ``requirements`` must be what the built model declares (``tests/test_registry.py`` checks it): the
    predictor, the planner and the zoo read them here without building the model.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    if isinstance(factory, str) and factory.count(":") != 1:
        raise ValueError(f"model {name!r}: factory {factory!r} is not 'package.module:function'")
    _REGISTRY[name] = ModelInfo(name, factory, requirements, summary, paper)


def _resolve(factory: Factory) -> Callable[..., MattingModel]:
    if callable(factory):
        return factory
    module, function = factory.split(":")
    return getattr(import_module(module), function)


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a user error naming the known models if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise MattekitError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, **kwargs: object) -> MattingModel:
    """Build the model registered as ``name``; ``kwargs`` go to its factory (e.g. ``weights``, ``device``)."""
    return get_model_info(name).build(**kwargs)


# --------------------------------------------------------------------------------------------------------
# The catalogue: one register_model(name, "module:function", requirements, summary, paper) per architecture.

#: The classical solvers need a trimap and nothing else (mattekit.models.classical).
_SOLVER = Requirements(trimap=True)
#: GCA / HOP take a trimap and weights, padded as the official demo pads (mattekit.models.gca / hop).
_GCA = Requirements(trimap=True, weights=True, pad_multiple=32, pad_border=32)
#: HOP's global block needs 2 * 7 cells of 32 px per axis at its default rate (``hop.requirements()``).
_HOP = Requirements(trimap=True, weights=True, pad_multiple=32, pad_border=32, min_size=448)
#: HAttMatting takes the image alone (a trimap only fixes known regions); its ResNeXt needs multiples of 32.
_HATT = Requirements(trimap=False, weights=True, pad_multiple=32)
#: HDMatt's dilated encoder has output stride 8; patches smaller than 320 px are padded up to one.
_HDMATT = Requirements(trimap=True, weights=True, pad_multiple=8, min_size=320)
#: TGN makes trimaps from the image and a coarse mask; output stride 16.
_TGN = Requirements(trimap=False, coarse_mask=True, weights=True, pad_multiple=16)
_SPAMATTNET_PAPER = (
    "Zhou et al., Sampling Propagation Attention with Trimap Generation Network for Natural Image Matting, "
    "IEEE TCSVT 2023"
)

register_model(
    "closed-form", "mattekit.models.classical:closed_form", _SOLVER,
    "closed-form matting (matting Laplacian), weight-free",
    "Levin, Lischinski & Weiss, A Closed-Form Solution to Natural Image Matting, TPAMI 2008",
)
register_model(
    "knn", "mattekit.models.knn_matting:knn", _SOLVER,
    "KNN matting (nonlocal affinities), weight-free",
    "Chen, Li & Tang, KNN Matting, TPAMI 2013",
)
register_model(
    "large-kernel", "mattekit.models.classical:large_kernel", _SOLVER,
    "large-kernel matting Laplacian, weight-free",
    "He, Sun & Tang, Fast Matting Using Large Kernel Matting Laplacian Matrices, CVPR 2010",
)
register_model(
    "random-walk", "mattekit.models.classical:random_walk", _SOLVER,
    "random-walk matting, weight-free",
    "Grady, Schiwietz, Aharon & Westermann, Random Walks for Interactive Alpha-Matting, VIIP 2005",
)
register_model(
    "learning-based", "mattekit.models.classical:learning_based", _SOLVER,
    "learning-based digital matting (local linear model), weight-free",
    "Zheng & Kambhamettu, Learning Based Digital Matting, ICCV 2009",
)
register_model(
    "shared-sampling", "mattekit.models.classical:shared_sampling", _SOLVER,
    "shared sampling matting, weight-free",
    "Gastal & Oliveira, Shared Sampling for Real-Time Alpha Matting, Eurographics 2010",
)
register_model(
    "information-flow", "mattekit.models.information_flow:information_flow", _SOLVER,
    "information-flow matting (color-mixture, K-to-U, intra-U and local flows), weight-free",
    "Aksoy, Aydın & Pollefeys, Designing Effective Inter-Pixel Information Flow for Natural Image Matting, "
    "CVPR 2017",
)
register_model(
    "gca", "mattekit.models.gca:gca", _GCA,
    "GCA-Matting (gca-dist): ResNet-34-D encoder-decoder with guided contextual attention",
    "Li & Lu, Natural Image Matting via Guided Contextual Attention, AAAI 2020",
)
register_model(
    "hop", "mattekit.models.hop:hop", _HOP,
    "HOP-Matting (HOP-9x9-RI): global and 9x9 local opacity propagation, BatchNorm eps 1e-3",
    "Li, Xu & Lu, Hierarchical Opacity Propagation for Image Matting, arXiv 2004.03249",
)
register_model(
    "hop-all-data", "mattekit.models.hop:hop_all_data", _HOP,
    "HOP-Matting (HOP-9x9-RI-all-data, also trained on Composition-1k test): BatchNorm eps 1e-5",
    "Li, Xu & Lu, Hierarchical Opacity Propagation for Image Matting, arXiv 2004.03249",
)
register_model(
    "hattmatting", "mattekit.models.hattmatting:hattmatting", _HATT,
    "HAttMatting: trimap-free ResNeXt + ASPP with channel and spatial attention (no trimap needed)",
    "Qiao et al., Attention-Guided Hierarchical Structure Aggregation for Image Matting, CVPR 2020",
)
register_model(
    "hdmatt", "mattekit.models.hdmatt:hdmatt", _HDMATT,
    "HDMatt: patch-based matting, dilated ResNet-34 + ASPP, cross-patch context (top-3, TGNL)",
    "Yu et al., High-Resolution Deep Image Matting, AAAI 2021",
)
register_model(
    "spamattnet", "mattekit.models.spamattnet:spamattnet", _GCA,
    "SPAMattNet: GCA's U-Net with sampling propagation attention (LSPA, GPA, CFC), ASPP, refinement",
    _SPAMATTNET_PAPER,
)
register_model(
    "spamattnet-star", "mattekit.models.spamattnet:spamattnet_star", _GCA,
    "SPAMattNet* (Table IX): sampling propagation attention in MGMatting's U-Net, no ASPP or RM",
    _SPAMATTNET_PAPER,
)
register_model(
    "tgn", "mattekit.models.tgn:tgn", _TGN,
    "TGN: trimap generation network (ResNet-50 DeepLabv3, full-resolution head), RGB + coarse mask",
    _SPAMATTNET_PAPER,
)
