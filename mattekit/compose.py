"""Foreground colours, cutouts and composites from an image and its alpha matte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ImageColor

from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, read_image


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground colours F (H, W, 3) with I = alpha F + (1 - alpha) B, by multi-level foreground
    estimation (Germer, Uelwer, Conrad & Harmeling 2021), so the old background does not bleed into
    the edges of a cutout."""
    from mattekit.jit import import_pymatting  # seconds to import: only when colours are asked for

    solve = import_pymatting().estimate_foreground_ml
    foreground = solve(image.astype(np.float64), alpha.astype(np.float64))
    return np.clip(foreground, 0.0, 1.0).astype(np.float32)


def cutout(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA (H, W, 4), straight (not premultiplied) alpha, as PNG stores it."""
    return np.concatenate([foreground, alpha[..., None]], axis=2)


def composite(foreground: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The foreground over a new background (H, W, 3), or a colour (3,)."""
    a = alpha[..., None]
    return (a * foreground + (1.0 - a) * background).astype(np.float32)


def _parse_color(spec: str) -> np.ndarray | None:
    """An RGB triple in [0, 1] from a colour name, ``#rrggbb`` or ``r,g,b``; None if ``spec`` is none."""
    try:
        if "," in spec:
            rgb = tuple(int(v) for v in spec.split(","))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                return None
        else:
            rgb = ImageColor.getrgb(spec)[:3]
    except ValueError:
        return None
    return np.array(rgb, dtype=np.float32) / 255.0


def load_background(spec: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A background from ``--background``: a colour (``white``, ``#00ff00``, ``0,255,0``) as an RGB triple
    (3,), or an image file as (H, W, 3), checked against ``max_pixels`` before it is decoded.  Read once
    per run; :func:`fit_background` sizes it per image."""
    color = _parse_color(spec)
    if color is not None:
        return color
    if not Path(spec).exists():
        raise MattekitError(
            f"--background {spec!r} is neither a colour (name, #rrggbb, r,g,b) nor an image file"
        )
    picture, _ = read_image(spec, max_pixels)  # refuses folders, pipes and devices too
    return picture


def fit_background(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """A colour as it is; a picture scaled and centre-cropped to cover (height, width)."""
    if background.ndim == 1:
        return background
    import cv2  # only a picture background is resized (mattekit.io says why OpenCV waits)

    scale = max(height / background.shape[0], width / background.shape[1])
    size = (max(width, round(background.shape[1] * scale)), max(height, round(background.shape[0] * scale)))
    resized = cv2.resize(background, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top : top + height, left : left + width]
