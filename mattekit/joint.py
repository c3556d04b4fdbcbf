"""Matting without a trimap: coarse mask → trimap → matte → fusion (SPAMattNet "Joint Inference", §IV-B3).

The coarse mask is the user's (``--mask``) or, when there is none, the salient-object segmenter's
(:mod:`mattekit.segment`).  The trimap comes from TGN when a trimap model is given, else from the
morphology of :func:`mattekit.trimap.from_mask` (``erode`` / ``dilate`` pixels, default 10 each).  Any
matting model then mattes with that trimap, and the two are fused:

- **hard** (the default; JIH, the better of the two in the paper's Table V): pixels the trimap calls
  foreground are set to 1 and background to 0; what the predictor does with every trimap anyway.
- **soft** (JIS, Eq. 15): α̃ = F̂ + Û·α̂ with TGN's probabilities F̂ (foreground) and Û (unknown).  α̂ is
  the matte of the matting model with the known regions of the argmax trimap fixed (for the classical
  solvers the only α̂ there is; for a network it differs from the raw output only where the network
  disagrees with the trimap it was given).  A morphology trimap has one-hot probabilities, so soft and
  hard fusion agree on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mattekit.engine import Progress, TileOptions
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, ImageLike
from mattekit.models import DEFAULT_MODEL, create_model, get_model_info
from mattekit.models.base import MattingModel, TrimapModel
from mattekit.predictor import MattingInput, load_input, load_model, run_model
from mattekit.segment import SalientSegmenter
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, TrimMethod, from_mask

FUSIONS = ("hard", "soft")
#: The trimap "model" that needs no weights: erosion and dilation of the mask.
MORPHOLOGY = "morphology"
#: Default morphology band, erosion and dilation alike, as a share of the image's long side: the
#: segmenter's mask is made at 320x320, so its edge errors grow with the image.  Measured on the nine
#: alphamatting.com training photos (~800 px): mean whole-image SAD 12.4 / 11.4 / 10.7 / 10.6 at 5 / 10 /
#: 15 / 25 px (docs/benchmarks.md); 2% is 16 px there.
BAND_SHARE = 0.02
#: Class order of TGN's output and of :attr:`TrimapEstimate.probabilities`.
CLASS_VALUES = np.array([BACKGROUND, UNKNOWN, FOREGROUND], dtype=np.uint8)

Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TrimapEstimate:
    """A trimap made by mattekit: the canonical trimap and its class probabilities (3, H, W)."""

    trimap: np.ndarray
    probabilities: np.ndarray


def one_hot(trimap: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 probabilities that put all mass on each pixel's trimap class."""
    return (trimap[None] == CLASS_VALUES[:, None, None]).astype(np.float32)


def check_fusion(fusion: str) -> None:
    """A one-line user error for an unknown fusion, before any image is read."""
    if fusion not in FUSIONS:
        raise MattekitError(f"--fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")


def fuse(alpha: np.ndarray, probabilities: np.ndarray, fusion: str) -> np.ndarray:
    """Joint-inference fusion of a matte (H, W) with trimap probabilities (3, H, W) (module docstring)."""
    check_fusion(fusion)
    _, unknown, foreground = probabilities
    if fusion == "soft":
        return np.clip(foreground + unknown * alpha, 0.0, 1.0).astype(np.float32)
    classes = probabilities.argmax(axis=0)
    return np.where(classes == 2, 1.0, np.where(classes == 0, 0.0, alpha)).astype(np.float32)


def default_band(height: int, width: int) -> int:
    """The morphology band in pixels for an image of this size (``BAND_SHARE`` of the long side)."""
    return max(1, round(BAND_SHARE * max(height, width)))


def run_trimap_model(model: TrimapModel, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A trimap model's probabilities (3, H, W) for one image: reflect-pad as it asks, run, crop."""
    height, width = image.shape[:2]
    top, bottom, left, right = model.requirements.padding(height, width)
    image = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    mask = np.pad(mask, ((top, bottom), (left, right)), mode="reflect")
    probabilities = model.probabilities(image[None], mask[None].astype(np.float32))[0]
    return probabilities[:, top : top + height, left : left + width]


class TrimapMaker:
    """Turns an image and its coarse mask (or no mask: the segmenter makes one) into a trimap.

    ``model`` is a TGN (:class:`~mattekit.models.base.TrimapModel`) or None for the morphology with
    ``erode`` / ``dilate`` pixels (None: :func:`default_band`).  The segmenter is built on first use by
    ``make_segmenter``, so a run with masks never needs onnxruntime.
    """

    def __init__(
        self,
        model: TrimapModel | None = None,
        erode: int | None = None,
        dilate: int | None = None,
        make_segmenter: Callable[[], Segmenter] | None = None,
        model_name: str = "tgn",
    ) -> None:
        self.model = model
        self.erode, self.dilate = erode, dilate
        self.model_name = model_name
        self._make_segmenter = make_segmenter
        self._segmenter: Segmenter | None = None

    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            if self._make_segmenter is None:
                raise MattekitError("no trimap and no mask, and no segmenter to make a mask")
            self._segmenter = self._make_segmenter()
        return self._segmenter

    def estimate(self, image: np.ndarray | None, mask: np.ndarray | None = None) -> TrimapEstimate:
        """The trimap of ``image`` from ``mask`` (H, W) in [0, 1], or from the segmenter's mask (``image``
        may be None when the morphology turns a given mask into the trimap: it needs no photo)."""
        if mask is None:
            mask = self.segmenter()(image)
        if self.model is None:
            band = default_band(*mask.shape)
            erode = band if self.erode is None else self.erode
            dilate = band if self.dilate is None else self.dilate
            trimap = from_mask(mask, erode, dilate)
            return TrimapEstimate(trimap, one_hot(trimap))
        probabilities = run_trimap_model(self.model, image, mask)
        return TrimapEstimate(CLASS_VALUES[probabilities.argmax(axis=0)], probabilities)

    def describe(self, mask_source: str) -> str:
        """How the trimap is made, for the CLI: ``mask_source`` names where the mask comes from."""
        if self.model is None:
            share = f"{BAND_SHARE:.0%} of the long side"
            erode, dilate = (share if v is None else f"{v} px" for v in (self.erode, self.dilate))
            how = f"{MORPHOLOGY} (erode {erode}, dilate {dilate})"
        else:
            how = self.model_name
        return f"{mask_source} -> {how}"


def matte(
    model: MattingModel,
    data: MattingInput,
    maker: TrimapMaker | None = None,
    fusion: str = "hard",
    tiling: TileOptions | None = None,
    progress: Progress | None = None,
    trim_trimap: bool | TrimMethod = False,
) -> np.ndarray:
    """Alpha of one input: with its trimap as given, else through a trimap ``maker`` and ``fusion``
    (``trim_trimap``: see :func:`mattekit.predictor.run_model`)."""
    if data.trimap is not None or maker is None:
        return run_model(model, data, tiling, progress, trim_trimap)
    estimate = maker.estimate(data.image, data.mask)
    guided = replace(data, trimap=estimate.trimap, mask=None, source_alpha=None)
    alpha = fuse(run_model(model, guided, tiling, progress, trim_trimap), estimate.probabilities, fusion)
    if data.source_alpha is not None:
        alpha *= data.source_alpha
    return alpha


def load_trimap_maker(
    model: str = MORPHOLOGY,
    weights: str | Path | None = None,
    device: str = "auto",
    erode: int | None = None,
    dilate: int | None = None,
) -> TrimapMaker:
    """A :class:`TrimapMaker` for a trimap model name: ``morphology`` (no weights) or a registered trimap
    model such as ``tgn``, which needs ``weights``.  The segmenter is built only if a mask is missing."""
    if model == MORPHOLOGY:
        if weights is not None:
            raise MattekitError(f"the {MORPHOLOGY} trimap takes no weights; for TGN pass --trimap-model tgn")
        return TrimapMaker(None, erode, dilate, SalientSegmenter)
    info = get_model_info(model)
    if not info.requirements.coarse_mask:
        raise MattekitError(f"{model!r} is a matting model, not a trimap model (use {MORPHOLOGY} or tgn)")
    if weights is None:
        raise MattekitError(
            f"trimap model {model!r} needs weights: pass its weights file (without a trimap model the mask "
            f"is turned into a trimap by {MORPHOLOGY})"
        )
    network = create_model(model, weights=weights, device=device)
    return TrimapMaker(network, erode, dilate, SalientSegmenter, model_name=f"{model} ({weights})")


def predict(
    image: ImageLike,
    mask: ImageLike | None = None,
    model: str | MattingModel = DEFAULT_MODEL,
    *,
    trimap_model: str | TrimapMaker = MORPHOLOGY,
    fusion: str = "hard",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tiling: TileOptions | None = None,
    **model_kwargs: object,
) -> np.ndarray:
    """Alpha matte (H, W) float32 of ``image`` with no trimap: from a coarse ``mask`` or, without one,
    from the salient-object segmenter (needs ``mattekit[auto]``); ``trimap_model`` is ``morphology``, a
    :class:`TrimapMaker` (e.g. from :func:`load_trimap_maker` with TGN weights)."""
    maker = trimap_model if isinstance(trimap_model, TrimapMaker) else load_trimap_maker(trimap_model)
    data = load_input(image, None, max_pixels, mask=mask)
    return matte(load_model(model, **model_kwargs), data, maker, fusion, tiling)
