"""Training data: layouts on disk, and GCA's augmentation chain run in DataLoader workers.

Layouts (``--data DIR``, detected by :func:`detect_layout`):

- ``composition``: foregrounds and alphas to composite on the fly over backgrounds -- Adobe
  Composition-1k training (``fg/``, ``alpha/``), Distinctions-646 training (``FG/``, ``GT/``) or a generic
  ``fg/ alpha/ bg/`` folder.  Backgrounds come from ``bg/`` inside DIR, or ``data.backgrounds`` (a folder
  or a text file listing one image path per line).
- ``composited``: ready images, ``image/`` (or ``merged/``), ``alpha/`` and optionally ``trimap/``.

The chain (GCA "Data Augmentation" and the official ``dataloader/data_generator.py``; order kept):
second-foreground merge, resize to 640, random affine, trimap by random erosion, a crop centred on an
unknown pixel, HSV jitter, composition.  Colours stay uint8 RGB, as decoded, through the resizes, warps
and the crop (a quarter of the bytes of float32, as the official generator's uint8 arrays); the jitter and
the composition make them float32 in [0, 1].  Alphas are float32 in [0, 1]; trimaps uint8 0/128/255.

Randomness: each sample draws from its own ``numpy.random.Generator`` seeded by (recipe seed, epoch,
index), so a batch depends only on the seed and the data position -- not on the number of workers or on
which worker made it -- and a resumed run sees the same samples as an uninterrupted one.  Workers also seed
Python's and NumPy's global generators per worker (:func:`seed_worker`) for code that uses them.
"""

from __future__ import annotations

import ctypes
import math
import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mattekit.errors import MattekitError
from mattekit.io import list_images, read_gray, read_image, read_image_uint8
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, read_trimap

if TYPE_CHECKING:
    from mattekit.train.recipe import DataOptions, Recipe
    from mattekit.train.task import Task

#: The resampling methods of HOP's random interpolation (RI), drawn with equal probability.
RANDOM_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
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
    Colours (``fg``, ``bg``, ``image``) are RGB, uint8 codes as read, or float32 in [0, 1] once a stage
    has computed new colours (:func:`jitter`, :func:`composite`, a merged foreground): every stage accepts
    both, and :func:`unit_float` gives the float32 view of either.  ``name`` is the source file's stem,
    for messages.
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


_OVERSHOOTING = (cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
#: uint8 code -> float32 in [0, 1] (the exact quotient code / 255; cv2.LUT applies it in one pass).
_UNIT_TABLE = np.arange(256, dtype=np.float32) / np.float32(255)


def unit_float(colour: np.ndarray) -> np.ndarray:
    """Colours as contiguous float32 in [0, 1]: uint8 codes divided by 255, float32 as they are."""
    if colour.dtype == np.uint8:
        return cv2.LUT(colour, _UNIT_TABLE)
    return np.ascontiguousarray(colour, dtype=np.float32)


def unit_range(array: np.ndarray) -> np.ndarray:
    """``array`` clipped to [0, 1] in place (faster than ``np.clip``, which allocates)."""
    np.minimum(array, 1.0, out=array)
    np.maximum(array, 0.0, out=array)
    return array


def _in_range(array: np.ndarray, method: int) -> np.ndarray:
    """A resampled array back in its range: float values clipped after cubic and Lanczos, which overshoot
    (OpenCV saturates uint8 itself)."""
    return unit_range(array) if method in _OVERSHOOTING and array.dtype != np.uint8 else array


def resize(array: np.ndarray, width: int, height: int, method: int) -> np.ndarray:
    """``cv2.resize`` that keeps values in range (cubic and Lanczos overshoot)."""
    return _in_range(cv2.resize(array, (width, height), interpolation=method), method)


def merge_foregrounds(sample: Sample, fg2: np.ndarray, alpha2: np.ndarray, interp: Resampler) -> Sample:
    """Blend a second foreground behind the first (official ``_composite_fg``): F = F1 a1 + F2 (1 - a1),
    a = 1 - (1 - a1)(1 - a2); skipped when the union would be opaque everywhere."""
    assert sample.fg is not None
    height, width = sample.alpha.shape
    fg2 = resize(fg2, width, height, interp(cv2.INTER_NEAREST))
    alpha2 = resize(alpha2, width, height, interp(cv2.INTER_NEAREST))
    alpha = 1 - (1 - sample.alpha) * (1 - alpha2)
    if not np.any(alpha < 1):
        return sample
    fg1 = sample.fg
    if fg1.dtype != fg2.dtype:
        fg1, fg2 = unit_float(fg1), unit_float(fg2)
    a1 = cv2.merge([np.ascontiguousarray(sample.alpha, dtype=np.float32)] * fg1.shape[2])
    fg = fg1 * a1 + fg2 * (1 - a1)  # 8-bit codes stay codes, rounded back to 8 bits (official: truncated)
    if fg1.dtype == np.uint8:
        fg = np.rint(fg, out=fg).astype(np.uint8)
    return replace(sample, fg=fg, alpha=alpha)


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
    m = (
        np.array(
            [
                [math.cos(angle) * sx, math.sin(angle + shear) * sx, 0.0],
                [-math.sin(angle) * sy, math.cos(angle + shear) * sy, 0.0],
            ]
        )
        / d
    )
    cx, cy = width * 0.5 + 0.5, height * 0.5 + 0.5
    m[:, 2] = m[:, 0] * -cx + m[:, 1] * -cy + (cx, cy)
    return m


def random_affine(
    sample: Sample, options: DataOptions, rng: np.random.Generator, interp: Resampler
) -> Sample:
    """Random flip, per-axis scale, shear, and rotation for large foregrounds (official RandomAffine)."""
    height, width = sample.alpha.shape
    degrees = options.rotation if max(height, width) >= options.rotate_min_side else 0.0
    angle = rng.uniform(-degrees, degrees)
    scale = (rng.uniform(*options.scale), rng.uniform(*options.scale))
    shear = rng.uniform(-options.shear, options.shear)
    flip = tuple(int(v) for v in np.where(rng.random(2) < options.flip_prob, -1, 1))
    matrix = affine_matrix(height, width, angle, scale, shear, flip)  # type: ignore[arg-type]

    def warp(array: np.ndarray) -> np.ndarray:
        method = interp(cv2.INTER_NEAREST)
        out = cv2.warpAffine(array, matrix, (width, height), flags=method + cv2.WARP_INVERSE_MAP)
        return _in_range(out, method)

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

    A sample not larger than ``size`` on both sides is enlarged by 1.1 x size / its short side; the centre
    is drawn from a 1/4-scale trimap's unknown cells away from the border, and uniformly when there are
    fewer than ten.  The background is resized to the (enlarged) foreground: the official resizes it to
    the foreground and enlarges both, the same map done here in one resampling.
    """
    assert sample.trimap is not None
    height, width = sample.trimap.shape
    fields: dict[str, np.ndarray | None] = {
        "alpha": sample.alpha,
        "trimap": sample.trimap,
        "fg": sample.fg,
        "image": sample.image,
    }
    while height < size + 1 or width < size + 1:
        ratio = 1.1 * size / min(height, width)
        height, width = int(height * ratio), int(width * ratio)
        for key, value in fields.items():
            if value is None:
                continue
            method = cv2.INTER_NEAREST if key == "trimap" else interp(cv2.INTER_NEAREST)
            fields[key] = resize(value, width, height, method)
    trimap = fields["trimap"]
    assert trimap is not None
    margin = size // 2
    small = cv2.resize(trimap, (width // 4, height // 4), interpolation=cv2.INTER_NEAREST)
    cells = np.argwhere(
        small[margin // 4 : (height - margin) // 4, margin // 4 : (width - margin) // 4] == UNKNOWN
    )
    if len(cells) < _MIN_UNKNOWN_CELLS:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    else:
        # A cell's index in the inner grid, times 4, is the top-left corner that centres it.
        top, left = (int(v) * 4 for v in cells[rng.integers(len(cells))])
    window = np.s_[top : top + size, left : left + size]
    cropped = {key: None if value is None else value[window] for key, value in fields.items()}
    if sample.bg is not None:
        cropped["bg"] = resize(sample.bg, width, height, interp(cv2.INTER_CUBIC))[window]
    return replace(sample, **cropped)


def jitter(sample: Sample, hue: float, rng: np.random.Generator) -> Sample:
    """HSV jitter of the foreground (official RandomJitter): hue moved by up to ``hue`` degrees, saturation
    and value by up to (1.1 - their mean over the foreground) / 10, reflected back into [0, 1]."""
    target = "fg" if sample.fg is not None else "image"
    colour = getattr(sample, target)
    inside = sample.alpha > 0
    if hue <= 0 or colour is None or not inside.any():
        return sample
    hsv = cv2.cvtColor(unit_float(colour), cv2.COLOR_RGB2HSV)
    planes = list(cv2.split(hsv))  # contiguous planes: in-place arithmetic on them is fast
    shift = np.float32(rng.integers(-int(hue), int(hue)))
    planes[0] += shift
    # Hue modulo 360; |shift| < 360, so one correction on the side it moved to (np.remainder is slower).
    if shift > 0:
        np.subtract(planes[0], 360, out=planes[0], where=planes[0] >= 360)
    else:
        np.add(planes[0], 360, out=planes[0], where=planes[0] < 0)
    mask = inside.view(np.uint8)
    for plane in planes[1:]:
        bar = 1.1 - cv2.mean(plane, mask)[0]
        plane += np.float32(rng.random() * bar / 5 - bar / 10)
        np.abs(plane, out=plane)
        np.subtract(2, plane, out=plane, where=plane > 1)  # reflect back below 1
    rgb = unit_range(cv2.cvtColor(cv2.merge(planes), cv2.COLOR_HSV2RGB))
    return replace(sample, **{target: rgb})


def composite(sample: Sample) -> Sample:
    """The training image I = a F + (1 - a) B, computed once in float32, with ``fg``, ``bg`` and ``alpha``
    made the float32 arrays it was computed from; a composited sample keeps its image (as float32)."""
    if sample.fg is None or sample.bg is None:
        return sample if sample.image is None else replace(sample, image=unit_float(sample.image))
    fg, bg = unit_float(sample.fg), unit_float(sample.bg)
    alpha = np.ascontiguousarray(sample.alpha, dtype=np.float32)
    # Alpha repeated over the channels: same-shape operands keep numpy's inner loops long (a broadcast
    # over a last axis of 3 runs them three elements at a time); the values are those of a[..., None].
    a = cv2.merge([alpha] * fg.shape[2])
    return replace(sample, fg=fg, bg=bg, alpha=alpha, image=a * fg + (1 - a) * bg)


def channels_first(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) as a contiguous (1, H, W) or (C, H, W) copy (``cv2.split`` into the planes)."""
    if array.ndim == 2:
        return np.ascontiguousarray(array[None])
    out = np.empty((array.shape[2], *array.shape[:2]), dtype=array.dtype)
    cv2.split(np.ascontiguousarray(array), list(out))
    return out


def to_arrays(sample: Sample, layers: bool = False) -> dict[str, np.ndarray]:
    """The batch fields of a finished (composited) sample: ``image`` (3, H, W) float32, ``alpha`` (1, H, W)
    float32, ``trimap`` (1, H, W) uint8 and, with ``layers``, ``fg`` and ``bg`` (3, H, W) float32 when the
    sample has them (for a loss on the composition; otherwise they are not sent through the loader)."""
    assert sample.image is not None and sample.trimap is not None
    out = {
        "image": channels_first(unit_float(sample.image)),
        "alpha": channels_first(np.asarray(sample.alpha, dtype=np.float32)),
        "trimap": channels_first(np.asarray(sample.trimap, dtype=np.uint8)),
    }
    for key in ("fg", "bg") if layers else ():
        value = getattr(sample, key)
        if value is not None:
            out[key] = channels_first(unit_float(value))
    return out


def standard_sample(
    sample: Sample, recipe: Recipe, rng: np.random.Generator, layers: bool = False
) -> dict[str, np.ndarray]:
    """The end of GCA's chain, after the trimap: crop, jitter, composite (``Task.make_sample``'s default);
    ``layers`` keeps ``fg`` and ``bg`` in the batch (:func:`to_arrays`)."""
    interp = Resampler(recipe.data.interpolation, rng)
    sample = crop_around_unknown(sample, recipe.crop_size, rng, interp)
    sample = jitter(sample, recipe.data.hue, rng)
    return to_arrays(composite(sample), layers)


# --------------------------------------------------------------------------------------------------------
# Layouts on disk


def _find_dir(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / name for name in names if (root / name).is_dir()), None)


def detect_layout(root: Path) -> str:
    """``composition`` or ``composited`` (see the module docstring), or a user error saying what fits."""
    if not root.is_dir():
        raise MattekitError(f"{root}: no such folder (--data)")
    alpha = _find_dir(root, _ALPHA_DIRS)
    if alpha is not None and _find_dir(root, _FOREGROUND_DIRS) is not None:
        return "composition"
    if alpha is not None and _find_dir(root, _IMAGE_DIRS) is not None:
        return "composited"
    raise MattekitError(
        f"{root}: unknown training layout; expected fg/ (or FG/) and alpha/ (or GT/) with backgrounds "
        f"(bg/ or data.backgrounds), or image/ (or merged/) and alpha/ [trimap/]"
    )


def _paired(first: Path, second: Path) -> tuple[list[Path], list[Path]]:
    """Files of two folders paired by name without extension; an unpaired file is an error."""
    a = {p.stem: p for p in list_images(first)}
    b = {p.stem: p for p in list_images(second)}
    unpaired = sorted(set(a) ^ set(b))
    if unpaired:
        stem = unpaired[0]
        path, other = (a[stem], second) if stem in a else (b[stem], first)
        more = f" (and {len(unpaired) - 1} more unpaired)" if len(unpaired) > 1 else ""
        raise MattekitError(f"{path}: no file of that name in {other}{more}")
    if not a:
        raise MattekitError(f"{first}: no images")
    names = sorted(a)
    return [a[n] for n in names], [b[n] for n in names]


def _backgrounds(root: Path, spec: str) -> list[Path]:
    if spec:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = list_images(path)
        elif path.is_file():
            lines = [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]
            found = [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]
            missing = [p for p in found if not p.is_file()]
            if missing:
                raise MattekitError(f"{path}: lists {missing[0]}, which does not exist")
        else:
            raise MattekitError(f"data.backgrounds: {path}: no such folder or list file")
    else:
        folder = _find_dir(root, _BACKGROUND_DIRS)
        if folder is None:
            raise MattekitError(
                f"{root}: no bg/ folder; give the backgrounds with --set data.backgrounds=DIR"
            )
        found = list_images(folder)
    if not found:
        raise MattekitError(f"{spec or root / 'bg'}: no background images")
    return found


@dataclass(frozen=True)
class Source:
    """The files of a training set: ``alphas`` with ``foregrounds`` and ``backgrounds`` (composition) or
    with ``images`` and optionally ``trimaps`` (composited)."""

    layout: str
    alphas: list[Path]
    foregrounds: list[Path]
    backgrounds: list[Path]
    images: list[Path]
    trimaps: list[Path]

    def __len__(self) -> int:
        """Samples per epoch by default: one per background (official), or one per image."""
        return len(self.backgrounds) if self.layout == "composition" else len(self.images)


def find_source(root: Path, options: DataOptions) -> Source:
    """The training files in ``root`` (``--data``) for the layout the recipe names or the one detected."""
    layout = detect_layout(root) if options.layout == "auto" else options.layout
    alpha_dir = _find_dir(root, _ALPHA_DIRS)
    if alpha_dir is None:
        raise MattekitError(f"{root}: no alpha/ (or GT/) folder")
    if layout == "composition":
        fg_dir = _find_dir(root, _FOREGROUND_DIRS)
        if fg_dir is None:
            raise MattekitError(f"{root}: no fg/ (or FG/) folder")
        fgs, alphas = _paired(fg_dir, alpha_dir)
        return Source(layout, alphas, fgs, _backgrounds(root, options.backgrounds), [], [])
    image_dir = _find_dir(root, _IMAGE_DIRS)
    if image_dir is None:
        raise MattekitError(f"{root}: no image/ (or merged/) folder")
    images, alphas = _paired(image_dir, alpha_dir)
    trimaps: list[Path] = []
    if (root / "trimap").is_dir():
        trimaps = _paired(image_dir, root / "trimap")[1]
    return Source(layout, alphas, [], [], images, trimaps)


# --------------------------------------------------------------------------------------------------------
# The dataset and its sampler


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a function of the recipe seed and the data position only."""
    return np.random.default_rng([seed, epoch, index])


class TrainingSet(Dataset):
    """Map-style dataset of ``(epoch, index)`` keys (from :class:`StreamSampler`) to batch fields."""

    def __init__(self, source: Source, recipe: Recipe, task: Task) -> None:
        self.source = source
        self.recipe = recipe
        self.task = task
        self.size = recipe.data.epoch_size or len(source)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: tuple[int, int]) -> dict[str, np.ndarray]:
        epoch, index = key
        rng = sample_rng(self.recipe.seed, epoch, index)
        sample = self.load(index, rng)
        return self.task.make_sample(sample, rng)

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        """Sample ``index`` read and taken through the chain up to its trimap."""
        source, options = self.source, self.recipe.data
        interp = Resampler(options.interpolation, rng)
        if source.layout == "composition":
            fg_index = index % len(source.foregrounds)
            sample = Sample(
                alpha=read_gray(source.alphas[fg_index]),
                fg=read_image_uint8(source.foregrounds[fg_index]),
                bg=read_image_uint8(source.backgrounds[index % len(source.backgrounds)]),
                name=source.foregrounds[fg_index].stem,
            )
            if rng.random() < options.merge_prob:
                # As the official generator: a second foreground a random distance further in the list.
                other = (fg_index + int(rng.integers(len(source.foregrounds)))) % len(source.foregrounds)
                fg2, alpha2 = read_image_uint8(source.foregrounds[other]), read_gray(source.alphas[other])
                sample = merge_foregrounds(sample, fg2, alpha2, interp)
        else:
            image_index = index % len(source.images)
            trimap = read_trimap(source.trimaps[image_index]) if source.trimaps else None
            sample = Sample(
                alpha=read_gray(source.alphas[image_index]),
                image=read_image_uint8(source.images[image_index]),
                name=source.images[image_index].stem,
            )
            if trimap is not None:
                # A given trimap is used as it is: no resizing or warping that it would not follow.
                return replace(sample, trimap=trimap)
        if rng.random() < options.resize_prob:
            sample = resize_square(sample, options.resize_size, interp)
        sample = random_affine(sample, options, rng, interp)
        return random_trimap(sample, options.erosion, rng)


class StreamSampler(Sampler[tuple[int, int]]):
    """An endless stream of ``(epoch, index)`` keys for one process, starting at a data position.

    Each epoch is a permutation of the dataset seeded by (seed, epoch), as ``DistributedSampler`` with
    ``set_epoch``: process ``rank`` of ``world`` takes every ``world``-th index from ``rank``, and the
    epoch is padded by wrapping so every process gets as many.  ``start`` is the number of keys this
    process has already consumed (checkpointed as the data position).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, start: int = 0) -> None:
        self.size, self.seed, self.rank, self.world, self.start = size, seed, rank, world, start
        self.per_rank = -(-size // world)

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: self.per_rank * self.world - self.size]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            for index in self.permutation(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: per-worker seeds for Python's and NumPy's global generators (derived
    from the seed torch gives each worker); SIGTERM and SIGINT are left to the main process; freed memory
    is kept for the next sample (:func:`keep_freed_memory`).

    A cluster pre-empting a job signals every process of it: a worker that died of it would make the main
    process fail with "DataLoader worker is killed" instead of saving; the main process stops the workers
    itself once it has saved.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse rather than hand it back to the kernel; True when
    it did (other C libraries are left alone).

    Each sample allocates and frees images of megabytes.  By default glibc maps such blocks fresh from the
    kernel (above a threshold that adapts only up to where it started) and trims the heap's free top, so
    the next sample pays a page fault per 4 KiB page it writes: on the virtual machine measured
    (docs/benchmarks.md) that cost more than the resizes and colour conversions themselves.  Blocks up to
    32 MiB come from the heap, and up to 256 MiB of freed heap stays mapped (a worker keeps its peak).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mmap_threshold, trim_threshold = -3, -1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    return bool(mallopt(mmap_threshold, 32 << 20)) and bool(mallopt(trim_threshold, 256 << 20))


def serial_opencv() -> None:
    """Turn off OpenCV's thread pool in this process before it forks DataLoader workers: a pool inherited
    through fork can deadlock the workers (as detectron2 and mmcv do); the workers are the parallelism."""
    cv2.setNumThreads(0)


def extract_foregrounds(
    images: Sequence[Path], alphas: Sequence[Path], out: Path, max_side: int | None = None
) -> list[Path]:
    """A composition training set from matted photos: ``out/fg/`` and ``out/alpha/`` (8-bit PNG), the
    foreground colours estimated from each image and its alpha (:func:`mattekit.compose.estimate_foreground`),
    optionally downscaled so the long side is at most ``max_side``.  Returns the foreground files."""
    from mattekit.compose import estimate_foreground
    from mattekit.io import write_png

    written = []
    for image_path, alpha_path in zip(images, alphas, strict=True):
        image, alpha = read_image(image_path)[0], read_gray(alpha_path)
        if max_side is not None and max(alpha.shape) > max_side:
            ratio = max_side / max(alpha.shape)
            size = (round(alpha.shape[1] * ratio), round(alpha.shape[0] * ratio))
            image = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_AREA), 0, 1)
            alpha = np.clip(cv2.resize(alpha, size, interpolation=cv2.INTER_AREA), 0, 1)
        write_png(out / "alpha" / f"{image_path.stem}.png", alpha)
        written.append(write_png(out / "fg" / f"{image_path.stem}.png", estimate_foreground(image, alpha)))
    return written
