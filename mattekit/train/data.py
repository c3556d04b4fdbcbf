"""Training data: layouts on disk, and GCA's augmentation chain run in DataLoader workers.

Layouts (``--data DIR``, detected by :func:`detect_layout`):

- ``composition``: foregrounds and alphas to composite on the fly over backgrounds -- Adobe
  Composition-1k training (``fg/``, ``alpha/``), Distinctions-646 training (``FG/``, ``GT/``) or a generic
  ``fg/ alpha/ bg/`` folder.  Backgrounds come from ``bg/`` inside DIR, or ``data.backgrounds`` (a folder
  or a text file listing one image path per line).
- ``composited``: ready images, ``image/`` (or ``merged/``), ``alpha/`` and optionally ``trimap/``.

The chain (GCA "Data Augmentation" and the official ``dataloader/data_generator.py``; order kept):
second-foreground merge, resize to 640, random affine, trimap by random erosion, a crop centred on an
unknown pixel, HSV jitter, composition.  Everything is float32 RGB in [0, 1]; trimaps are uint8 0/128/255.

Randomness: each sample draws from its own ``numpy.random.Generator`` seeded by (recipe seed, epoch,
index), so a batch depends only on the seed and the data position -- not on the number of workers or on
which worker made it -- and a resumed run sees the same samples as an uninterrupted one.  Workers also seed
Python's and NumPy's global generators per worker (:func:`seed_worker`) for code that uses them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mattekit.errors import MattekitError
from mattekit.io import list_images, read_gray, read_image
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN

if TYPE_CHECKING:
    from mattekit.train.recipe import DataOptions, Recipe
    from mattekit.train.task import Task

#: The resampling methods of HOP's random interpolation (RI), drawn with equal probability.
RANDOM_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_FOREGROUND_DIRS = ("fg", "FG", "foreground")
_ALPHA_DIRS = ("alpha", "GT", "matte")
_BACKGROUND_DIRS = ("bg", "BG", "background")
_IMAGE_DIRS = ("image", "merged")
#: Fewer unknown cells than this (on the 1/4 grid) and the crop is placed uniformly (official).
_MIN_UNKNOWN_CELLS = 10


@dataclass
class Sample:
    """One training example on its way through the chain.

    ``fg``/``bg`` (H, W, 3) for the composition layout, ``image`` (H, W, 3) once composited (or from the
    composited layout); ``alpha`` (H, W) float32; ``trimap`` (H, W) uint8 once generated or read.
    ``name`` is the source file's stem, for messages.
    """

    alpha: np.ndarray
    fg: np.ndarray | None = None
    bg: np.ndarray | None = None
    image: np.ndarray | None = None
    trimap: np.ndarray | None = None
    name: str = ""


# --------------------------------------------------------------------------------------------------------
# The stages: small functions a task's ``make_sample`` may call in its own order.


class Resampler:
    """The interpolation of each resize: a fixed one, or a random one per call (HOP's RI)."""

    def __init__(self, interpolation: str, rng: np.random.Generator) -> None:
        self.random = interpolation == "random"
        self.fixed = _INTERPOLATIONS.get(interpolation)  # None: "official" or "random"
        self.rng = rng

    def __call__(self, default: int) -> int:
        """The method for a resize whose official method is ``default``."""
        if self.random:
            return int(RANDOM_INTERPOLATIONS[self.rng.integers(len(RANDOM_INTERPOLATIONS))])
        return default if self.fixed is None else self.fixed


def resize(array: np.ndarray, width: int, height: int, method: int) -> np.ndarray:
    """``cv2.resize`` that keeps float values in range (cubic and Lanczos overshoot)."""
    out = cv2.resize(array, (width, height), interpolation=method)
    return np.clip(out, 0.0, 1.0) if method in (cv2.INTER_CUBIC, cv2.INTER_LANCZOS4) else out


def merge_foregrounds(
    sample: Sample, fg2: np.ndarray, alpha2: np.ndarray, interp: Resampler
) -> Sample:
    """Blend a second foreground behind the first (official ``_composite_fg``): F = F1 a1 + F2 (1 - a1),
    a = 1 - (1 - a1)(1 - a2); skipped when the union would be opaque everywhere."""
    assert sample.fg is not None
    height, width = sample.alpha.shape
    fg2 = resize(fg2, width, height, interp(cv2.INTER_NEAREST))
    alpha2 = resize(alpha2, width, height, interp(cv2.INTER_NEAREST))
    alpha = 1 - (1 - sample.alpha) * (1 - alpha2)
    if not np.any(alpha < 1):
        return sample
    a1 = sample.alpha[..., None]
    return replace(sample, fg=(sample.fg * a1 + fg2 * (1 - a1)).astype(np.float32), alpha=alpha)


def resize_square(sample: Sample, size: int, interp: Resampler) -> Sample:
    """Foreground and alpha (or image and alpha) resized to ``size`` x ``size``."""
    fields = {"alpha": resize(sample.alpha, size, size, interp(cv2.INTER_NEAREST))}
    for key in ("fg", "image"):
        value = getattr(sample, key)
        if value is not None:
            fields[key] = resize(value, size, size, interp(cv2.INTER_NEAREST))
    return replace(sample, **fields, trimap=None)


def affine_matrix(
    height: int, width: int, angle: float, scale: tuple[float, float], shear: float, flip: tuple[int, int]
) -> np.ndarray:
    """The inverse 2x3 map of flip, then scale, rotation and shear about the centre (the official
    ``RandomAffine._get_inverse_affine_matrix`` with no translation)."""
    angle, shear = math.radians(angle), math.radians(shear)
    sx, sy = flip[0] / scale[0], flip[1] / scale[1]
    d = math.cos(angle + shear) * math.cos(angle) + math.sin(angle + shear) * math.sin(angle)
    m = np.array(
        [
            [math.cos(angle) * sx, math.sin(angle + shear) * sx, 0.0],
            [-math.sin(angle) * sy, math.cos(angle + shear) * sy, 0.0],
        ]
    ) / d
    cx, cy = width * 0.5 + 0.5, height * 0.5 + 0.5
    m[:, 2] = m[:, 0] * -cx + m[:, 1] * -cy + (cx, cy)
    return m


def random_affine(sample: Sample, options: DataOptions, rng: np.random.Generator, interp: Resampler) -> Sample:
    """Random flip, per-axis scale, shear, and rotation for large foregrounds (official RandomAffine)."""
    height, width = sample.alpha.shape
    degrees = options.rotation if max(height, width) >= options.rotate_min_side else 0.0
    angle = rng.uniform(-degrees, degrees)
    scale = (rng.uniform(*options.scale), rng.uniform(*options.scale))
    shear = rng.uniform(-options.shear, options.shear)
    flip = tuple(int(v) for v in np.where(rng.random(2) < options.flip_prob, -1, 1))
    matrix = affine_matrix(height, width, angle, scale, shear, flip)  # type: ignore[arg-type]

    def warp(array: np.ndarray) -> np.ndarray:
        flags = interp(cv2.INTER_NEAREST) + cv2.WARP_INVERSE_MAP
        out = cv2.warpAffine(array, matrix, (width, height), flags=flags)
        return np.clip(out, 0.0, 1.0)

    fields = {"alpha": warp(sample.alpha)}
    for key in ("fg", "image"):
        value = getattr(sample, key)
        if value is not None:
            fields[key] = warp(value)
    return replace(sample, **fields, trimap=None)


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def generate_trimap(alpha: np.ndarray, fg_size: int, bg_size: int) -> np.ndarray:
    """Trimap of ``alpha``: its opaque (a = 1) and clear (a = 0) regions eroded by elliptical kernels of
    ``fg_size`` and ``bg_size`` pixels, the rest unknown (official GenTrimap)."""
    fg_mask = (alpha + 1e-5 >= 1).astype(np.uint8)
    bg_mask = (alpha <= 1e-5).astype(np.uint8)
    trimap = np.full(alpha.shape, UNKNOWN, dtype=np.uint8)
    trimap[cv2.erode(fg_mask, _ellipse(fg_size)) == 1] = FOREGROUND
    trimap[cv2.erode(bg_mask, _ellipse(bg_size)) == 1] = BACKGROUND
    return trimap


def random_trimap(sample: Sample, erosion: tuple[int, int], rng: np.random.Generator) -> Sample:
    """A generated trimap with random erosion sizes drawn from ``erosion`` (inclusive)."""
    low, high = erosion
    sizes = rng.integers(low, high + 1, size=2)
    return replace(sample, trimap=generate_trimap(sample.alpha, int(sizes[0]), int(sizes[1])))


def crop_around_unknown(sample: Sample, size: int, rng: np.random.Generator, interp: Resampler) -> Sample:
    """A ``size`` crop centred on a random unknown pixel (official RandomCrop).

    The background is first resized to the foreground; a sample not larger than ``size`` on both sides is
    enlarged by 1.1 x size / its short side; the centre is drawn from a 1/4-scale trimap's unknown cells
    away from the border, and uniformly when there are fewer than ten.
    """
    assert sample.trimap is not None
    height, width = sample.trimap.shape
    fields: dict[str, np.ndarray | None] = {"alpha": sample.alpha, "trimap": sample.trimap, "fg": sample.fg,
                                            "image": sample.image, "bg": sample.bg}
    if sample.bg is not None:
        fields["bg"] = resize(sample.bg, width, height, interp(cv2.INTER_CUBIC))
    while height < size + 1 or width < size + 1:
        ratio = 1.1 * size / min(height, width)
        height, width = int(height * ratio), int(width * ratio)
        for key, value in fields.items():
            if value is None:
                continue
            method = cv2.INTER_NEAREST if key == "trimap" else interp(
                cv2.INTER_CUBIC if key == "bg" else cv2.INTER_NEAREST
            )
            fields[key] = resize(value, width, height, method)
    trimap = fields["trimap"]
    assert trimap is not None
    margin = size // 2
    small = cv2.resize(trimap, (width // 4, height // 4), interpolation=cv2.INTER_NEAREST)
    cells = np.argwhere(small[margin // 4 : (height - margin) // 4, margin // 4 : (width - margin) // 4] == UNKNOWN)
    if len(cells) < _MIN_UNKNOWN_CELLS:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    else:
        # A cell's index in the inner grid, times 4, is the top-left corner that centres it.
        top, left = (int(v) * 4 for v in cells[rng.integers(len(cells))])
    return replace(
        sample, **{key: None if value is None else value[top : top + size, left : left + size]
                   for key, value in fields.items()}
    )


def jitter(sample: Sample, hue: float, rng: np.random.Generator) -> Sample:
    """HSV jitter of the foreground (official RandomJitter): hue moved by up to ``hue`` degrees, saturation
    and value by up to (1.1 - their mean over the foreground) / 10, reflected back into [0, 1]."""
    target = "fg" if sample.fg is not None else "image"
    colour = getattr(sample, target)
    if hue <= 0 or colour is None or not np.any(sample.alpha > 0):
        return sample
    hsv = cv2.cvtColor(np.ascontiguousarray(colour, dtype=np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.remainder(hsv[..., 0] + rng.integers(-int(hue), int(hue)), 360)
    inside = sample.alpha > 0
    for channel in (1, 2):
        bar = 1.1 - hsv[..., channel][inside].mean()
        moved = np.abs(hsv[..., channel] + rng.random() * bar / 5 - bar / 10)
        hsv[..., channel] = np.where(moved > 1, 2 - moved, moved)
    rgb = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
    return replace(sample, **{target: rgb})


def composite(sample: Sample) -> Sample:
    """The training image I = a F + (1 - a) B, computed once in float32 (a composited sample is kept)."""
    if sample.fg is None or sample.bg is None:
        return sample
    a = sample.alpha[..., None]
    return replace(sample, image=(a * sample.fg + (1 - a) * sample.bg).astype(np.float32))


def to_arrays(sample: Sample) -> dict[str, np.ndarray]:
    """The batch fields of a finished sample: ``image``, ``fg``, ``bg`` (3, H, W) float32 when present,
    ``alpha`` (1, H, W) float32, ``trimap`` (1, H, W) uint8."""
    assert sample.image is not None and sample.trimap is not None
    out = {
        "image": np.ascontiguousarray(sample.image.transpose(2, 0, 1), dtype=np.float32),
        "alpha": np.ascontiguousarray(sample.alpha[None], dtype=np.float32),
        "trimap": np.ascontiguousarray(sample.trimap[None], dtype=np.uint8),
    }
    for key in ("fg", "bg"):
        value = getattr(sample, key)
        if value is not None:
            out[key] = np.ascontiguousarray(value.transpose(2, 0, 1), dtype=np.float32)
    return out


def standard_sample(sample: Sample, recipe: Recipe, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The end of GCA's chain, after the trimap: crop, jitter, composite (``Task.make_sample``'s default)."""
    interp = Resampler(recipe.data.interpolation, rng)
    sample = crop_around_unknown(sample, recipe.crop_size, rng, interp)
    sample = jitter(sample, recipe.data.hue, rng)
    return to_arrays(composite(sample))
