"""Trimaps: reading any common encoding into one canonical form, and making trimaps from masks.

The canonical trimap is a uint8 (H, W) array holding only ``BACKGROUND`` (0), ``UNKNOWN`` (128) and
``FOREGROUND`` (255), the values of the alphamatting.com and Composition-1k benchmarks.

Encodings accepted by :func:`read_trimap`, checked in this order:

1. **Label maps**: integer data whose values all lie in {0, 1, 2} is read as 0 = background,
   1 = unknown, 2 = foreground.
2. **Everything else** is brought to [0, 1] (8-bit / 255, 16-bit / 65535, floats as they are; colour by
   its luma) and cut at the thresholds of the official GCA-Matting code: below 85/255 background, at or
   above 170/255 foreground, the rest unknown.  So 0/128/255, 127 for unknown, float trimaps and noisy
   JPEG trimaps all come out right.  A trimap's own alpha channel is ignored.
"""

from __future__ import annotations

import numpy as np

from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, ImageLike, decode

BACKGROUND, UNKNOWN, FOREGROUND = 0, 128, 255
#: Thresholds on the 0..255 scale, as in the official GCA-Matting code.
BACKGROUND_BELOW, FOREGROUND_FROM = 85, 170

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def quantize(values: np.ndarray) -> np.ndarray:
    """Cut unit-range values (H, W) into a canonical trimap at the 85/170 thresholds."""
    codes = values * 255.0
    trimap = np.full(values.shape, UNKNOWN, dtype=np.uint8)
    trimap[codes < BACKGROUND_BELOW] = BACKGROUND
    trimap[codes >= FOREGROUND_FROM] = FOREGROUND
    return trimap


def _as_labels(codes: np.ndarray) -> np.ndarray | None:
    """The trimap of a {0, 1, 2} label map, or None if ``codes`` is not one."""
    if codes.max(initial=0) > 2 or not np.array_equal(codes, np.round(codes)):
        return None
    lookup = np.array([BACKGROUND, UNKNOWN, FOREGROUND], dtype=np.uint8)
    return lookup[codes.astype(np.intp)]


def read_trimap(source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported trimap (path, PIL image or array) as a canonical uint8 trimap (H, W)."""
    decoded = decode(source, max_pixels)
    color = decoded.color
    gray = color[..., 0] if color.shape[2] == 1 else color @ _LUMA
    if decoded.levels > 1 and color.shape[2] == 1:
        labels = _as_labels(gray * decoded.levels)
        if labels is not None:
            return labels
    return quantize(gray)



def regions(trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (background, unknown, foreground) of a canonical trimap."""
    return trimap == BACKGROUND, trimap == UNKNOWN, trimap == FOREGROUND


def from_mask(mask: np.ndarray, erode: int = 10, dilate: int = 10, threshold: float = 0.5) -> np.ndarray:
    """A trimap from a rough binary or soft mask (H, W) in [0, 1]: pixels still inside after eroding by
    ``erode`` px are foreground, pixels still outside after dilating by ``dilate`` px are background, and
    the band between is unknown."""
    if erode < 0 or dilate < 0:
        raise MattekitError("--erode and --dilate must be zero or more pixels")
    import cv2  # here, not at the top: predict reads trimaps and never needs OpenCV (mattekit.io)

    binary = (mask >= threshold).astype(np.uint8)
    inside = cv2.erode(binary, _disk(erode)) if erode else binary
    outside_band = cv2.dilate(binary, _disk(dilate)) if dilate else binary
    trimap = np.full(mask.shape, UNKNOWN, dtype=np.uint8)
    trimap[inside == 1] = FOREGROUND
    trimap[outside_band == 0] = BACKGROUND
    return trimap


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grabcut_mask(image: np.ndarray, rect: tuple[int, int, int, int], iterations: int = 5) -> np.ndarray:
    """A rough foreground mask (H, W) float32 from OpenCV's GrabCut started from a box (x, y, w, h)."""
    height, width = image.shape[:2]
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise MattekitError(f"--rect {x},{y},{w},{h} does not lie inside the {width}x{height} image")
    import cv2

    bgr = cv2.cvtColor(np.rint(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    labels = np.zeros((height, width), np.uint8)
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    cv2.grabCut(bgr, labels, rect, *models, iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
