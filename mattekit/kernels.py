"""mattekit's own numba kernels, for loops that numpy can only run one whole-array pass at a time.

Declared with a signature and ``cache=True`` like pymatting's, so importing this module compiles them
once and later runs read numba's cache; :func:`mattekit.jit.import_pymatting` imports it with pymatting, so
a first-run compilation is announced and timed like pymatting's.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit("uint8[:](uint8[:], float32[:, :], int64[:], int64[:], float32, uint8)", cache=True, nogil=True)
def nearest_close_label(
    flat: np.ndarray, colors: np.ndarray, pixels: np.ndarray, offsets: np.ndarray, limit: float, unknown: int
) -> np.ndarray:
    """For each of ``pixels`` (flat indices into ``flat``), the label of the first of ``offsets`` (in
    their order) that lands on a pixel not ``unknown`` whose colour's squared distance is below ``limit``;
    ``unknown`` where none does (:func:`mattekit.trimap.trim_edges`)."""
    labels = np.full(pixels.size, unknown, dtype=np.uint8)
    for i in range(pixels.size):
        pixel = pixels[i]
        red, green, blue = colors[pixel, 0], colors[pixel, 1], colors[pixel, 2]
        for offset in offsets:
            other = pixel + offset
            label = flat[other]
            if label == unknown:
                continue
            dr, dg, db = colors[other, 0] - red, colors[other, 1] - green, colors[other, 2] - blue
            if dr * dr + dg * dg + db * db < limit:
                labels[i] = label
                break
    return labels
