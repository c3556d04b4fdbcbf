"""The Python API: one image (and its trimap) in, one float32 alpha matte out.

>>> import mattekit
>>> alpha = mattekit.predict("photo.jpg", "photo_trimap.png")          # information flow, no weights
>>> alpha = mattekit.predict(image_array, trimap_array, model="knn")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from mattekit.engine import Progress, TileOptions, plan, run_tiled, run_whole
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, ImageLike, image_size, read_gray, read_image
from mattekit.models import (
    DEFAULT_MODEL,
    MattingModel,
    Requirements,
    create_model,
    get_model_info,
    list_models,
)
from mattekit.trimap import BACKGROUND, FOREGROUND, TrimMethod, read_trimap, trim


@dataclass(frozen=True)
class MattingInput:
    """A decoded image with its trimap, in mattekit's conventions (see :mod:`mattekit.io`).

    ``source_alpha`` is the image file's own alpha channel, if any: the predicted matte is multiplied by
    it, so what was already transparent in the input stays transparent in the output.  ``mask`` is a
    coarse foreground mask (H, W) in [0, 1] to make the trimap from when there is none
    (:mod:`mattekit.joint`).
    """

    image: np.ndarray
    trimap: np.ndarray | None
    source_alpha: np.ndarray | None = None
    mask: np.ndarray | None = None


def load_input(
    image: ImageLike,
    trimap: ImageLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mask: ImageLike | None = None,
) -> MattingInput:
    """Decode an image, its optional trimap and coarse mask, and check that they fit together (for files,
    from their headers before any is decoded)."""
    if isinstance(image, (str, os.PathLike)):
        width, height = image_size(image, max_pixels)
        for what, source in (("trimap", trimap), ("mask", mask)):
            if isinstance(source, (str, os.PathLike)):
                other_width, other_height = image_size(source, max_pixels)
                if (width, height) != (other_width, other_height):
                    raise MattekitError(
                        f"{source}: {what} is {other_width}x{other_height} but the image is {width}x{height}"
                    )
    rgb, source_alpha = read_image(image, max_pixels)
    tri = None if trimap is None else read_trimap(trimap, max_pixels)
    rough = None if mask is None else read_gray(mask, max_pixels)
    for what, source, array in (("trimap", trimap, tri), ("mask", mask, rough)):
        if array is not None and array.shape != rgb.shape[:2]:
            name = source if isinstance(source, (str, os.PathLike)) else what
            raise MattekitError(
                f"{name}: {what} is {array.shape[1]}x{array.shape[0]} "
                f"but the image is {rgb.shape[1]}x{rgb.shape[0]}"
            )
    return MattingInput(rgb, tri, source_alpha, rough)


def run_model(
    model: MattingModel,
    data: MattingInput,
    tiling: TileOptions | None = None,
    progress: Progress | None = None,
    trim_trimap: bool | TrimMethod = False,
) -> np.ndarray:
    """A model's alpha for one input: in one pass (pad as it asks, infer, crop) or, when that does not fit
    the memory budget, in blended tiles (see :mod:`mattekit.engine`); then fix the known regions.

    ``trim_trimap`` first moves unknown pixels that are confidently foreground or background into the
    known regions (:func:`mattekit.trimap.trim`, on the whole image before any tiling): a method name
    (``"edges"``, ``"patch"``), or True for the default method.
    """
    requirements = model.requirements
    if requirements.trimap and data.trimap is None:
        raise MattekitError("this model needs a trimap (--trimap)")
    if trim_trimap and data.trimap is not None:
        method = "edges" if trim_trimap is True else trim_trimap
        data = replace(data, trimap=trim(data.image, data.trimap, method))
    height, width = data.image.shape[:2]
    how = plan(model, height, width, data.trimap, tiling or TileOptions())
    if how.grid is not None:
        return finish_alpha(run_tiled(model, data.image, data.trimap, how, progress), data)
    return finish_alpha(run_whole(model, data.image, data.trimap), data)


def finish_alpha(alpha: np.ndarray, data: MattingInput) -> np.ndarray:
    """Known regions take the trimap's value; the source's own transparency is kept.  A model that gave
    NaN or infinite values is an error, never a silent 0."""
    bad = alpha.size - int(np.count_nonzero(np.isfinite(alpha)))
    if bad:
        raise MattekitError(
            f"the model gave {bad:,} non-finite alpha value(s) (NaN or infinity) of {alpha.size:,}; "
            f"its weights may be broken (check them with `mattekit models verify`)"
        )
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
    if not _weight_free_architecture(model):
        # Imported on use: `python -m mattekit.zoo` must find the module not yet imported by the package.
        from mattekit import zoo

        entry = zoo.find_entry(model)
        if entry is not None:
            model = entry.architecture
            if kwargs.get("weights") is None and entry.weights is not None:
                kwargs["weights"] = zoo.resolve_weights(entry)
    info = get_model_info(model)
    if info.requirements.coarse_mask:
        raise MattekitError(f"model {model!r} makes trimaps, not mattes: use it as --trimap-model {model}")
    if info.requirements.weights and kwargs.get("weights") is None:
        raise MattekitError(f"model {model!r} needs weights: pass --weights FILE")
    _refuse_ignored_options(model, info.requirements, kwargs)
    return create_model(model, **kwargs)


def _weight_free_architecture(name: str) -> bool:
    """Whether ``name`` is a registered weight-free architecture: then the zoo is not read (importing it
    and parsing ``models.toml`` cost ≈0.02 s of CPU per run), and need not be, since a catalogue entry
    may take an architecture's name only if it is that architecture, and a weight-free one carries no
    weights (``zoo._check_against_registry``)."""
    return any(info.name == name and not info.requirements.weights for info in list_models())


def _refuse_ignored_options(model: str, requirements: Requirements, kwargs: dict[str, object]) -> None:
    """An option a model would silently ignore is an error: ``--weights`` for a weight-free model, and
    ``--device cuda`` for one that runs on the CPU only (``cpu`` and ``auto`` always hold).  Weight-free
    models are the classical solvers, which run on the CPU only."""
    if kwargs.get("weights") is not None and not requirements.weights:
        weights = kwargs["weights"]
        raise MattekitError(f"--weights {weights}: model {model!r} is weight-free and takes no weights")
    device = kwargs.get("device")
    on_gpu = isinstance(device, str) and device.strip().lower() not in ("auto", "cpu")
    if on_gpu and not requirements.weights:
        from mattekit.device import resolve_device

        resolve_device(str(device))  # no CUDA, or no such GPU: say that first
        raise MattekitError(f"--device {device}: model {model!r} runs on the CPU only; use --device cpu")


def predict(
    image: ImageLike,
    trimap: ImageLike | None = None,
    model: str | MattingModel = DEFAULT_MODEL,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tiling: TileOptions | None = None,
    progress: Progress | None = None,
    trim_trimap: bool | TrimMethod = False,
    **model_kwargs: object,
) -> np.ndarray:
    """Alpha matte (H, W) float32 in [0, 1] of ``image``.

    ``image`` and ``trimap`` may be paths, PIL images or numpy arrays (see :mod:`mattekit.trimap` for the
    trimap encodings understood).  ``model`` is a registry name or a model built with
    :func:`load_model`; build it once when matting many images.  ``tiling`` sets how big images are
    split (``mattekit.engine.TileOptions(tile="on", max_memory="6GB")``); ``progress(done, total)`` is
    called after each batch of tiles; ``trim_trimap`` trims the trimap first (:func:`mattekit.trimap.trim`).
    """
    data = load_input(image, trimap, max_pixels)
    return run_model(load_model(model, **model_kwargs), data, tiling, progress, trim_trimap)
