"""The Python API: one image (and its trimap) in, one float32 alpha matte out.

>>> import mattekit
>>> alpha = mattekit.predict("photo.jpg", "photo_trimap.png")          # shared sampling, no weights
>>> alpha = mattekit.predict(image_array, trimap_array, model="knn")
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mattekit.engine import Progress, TileOptions, plan, run_tiled, run_whole
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, ImageLike, read_image
from mattekit.models import DEFAULT_MODEL, MattingModel, create_model, get_model_info
from mattekit.trimap import BACKGROUND, FOREGROUND, read_trimap


@dataclass(frozen=True)
class MattingInput:
    """A decoded image with its trimap, in mattekit's conventions (see :mod:`mattekit.io`).

    ``source_alpha`` is the image file's own alpha channel, if any: the predicted matte is multiplied by
    it, so what was already transparent in the input stays transparent in the output.
    """

    image: np.ndarray
    trimap: np.ndarray | None
    source_alpha: np.ndarray | None = None


def load_input(
    image: ImageLike, trimap: ImageLike | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> MattingInput:
    """Decode an image and its optional trimap and check that they fit together."""
    rgb, source_alpha = read_image(image, max_pixels)
    tri = None if trimap is None else read_trimap(trimap, max_pixels)
    if tri is not None and tri.shape != rgb.shape[:2]:
        name = trimap if isinstance(trimap, (str, os.PathLike)) else "trimap"
        raise MattekitError(
            f"{name}: trimap is {tri.shape[1]}x{tri.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return MattingInput(rgb, tri, source_alpha)


def run_model(
    model: MattingModel,
    data: MattingInput,
    tiling: TileOptions | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """A model's alpha for one input: in one pass (pad as it asks, infer, crop) or, when that does not fit
    the memory budget, in blended tiles (see :mod:`mattekit.engine`); then fix the known regions."""
    requirements = model.requirements
    if requirements.trimap and data.trimap is None:
        raise MattekitError("this model needs a trimap (--trimap)")
    height, width = data.image.shape[:2]
    how = plan(model, height, width, data.trimap, tiling or TileOptions())
    if how.grid is not None:
        return finish_alpha(run_tiled(model, data.image, data.trimap, how, progress), data)
    return finish_alpha(run_whole(model, data.image, data.trimap), data)


def finish_alpha(alpha: np.ndarray, data: MattingInput) -> np.ndarray:
    """Known regions take the trimap's value; the source's own transparency is kept."""
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    if data.trimap is not None:
        alpha[data.trimap == FOREGROUND] = 1.0
        alpha[data.trimap == BACKGROUND] = 0.0
    if data.source_alpha is not None:
        alpha *= data.source_alpha
    return alpha


def load_model(model: str | MattingModel = DEFAULT_MODEL, **kwargs: object) -> MattingModel:
    """A model instance from a zoo name (``models.toml``) or a registry name (``kwargs`` such as ``weights``
    go to its factory).  A zoo name's weights come from the cache, else the hub, unless ``weights`` is given.
    """
    if isinstance(model, MattingModel):
        return model
    # Imported on use: `python -m mattekit.zoo` must find the module not yet imported by the package.
    from mattekit import zoo

    entry = zoo.find_entry(model)
    if entry is not None:
        model = entry.architecture
        if kwargs.get("weights") is None and entry.weights is not None:
            kwargs["weights"] = zoo.resolve_weights(entry)
    info = get_model_info(model)
    if info.requirements.weights and kwargs.get("weights") is None:
        raise MattekitError(f"model {model!r} needs weights: pass --weights FILE")
    return create_model(model, **kwargs)


def predict(
    image: ImageLike,
    trimap: ImageLike | None = None,
    model: str | MattingModel = DEFAULT_MODEL,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tiling: TileOptions | None = None,
    progress: Progress | None = None,
    **model_kwargs: object,
) -> np.ndarray:
    """Alpha matte (H, W) float32 in [0, 1] of ``image``.

    ``image`` and ``trimap`` may be paths, PIL images or numpy arrays (see :mod:`mattekit.trimap` for the
    trimap encodings understood).  ``model`` is a registry name or a model built with
    :func:`load_model`; build it once when matting many images.  ``tiling`` sets how big images are
    split (``mattekit.engine.TileOptions(tile="on", max_memory="6GB")``); ``progress(done, total)`` is
    called after each batch of tiles.
    """
    data = load_input(image, trimap, max_pixels)
    return run_model(load_model(model, **model_kwargs), data, tiling, progress)
