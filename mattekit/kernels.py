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


@njit(
    "Tuple((float64[:, :], int64[:, :], float64[:]))"
    "(float64[:, :, :], float64, int64[:], int64[:], float64[:])",
    cache=True,
    nogil=True,
)
def matting_laplacian_rows(
    image: np.ndarray, epsilon: float, pixels: np.ndarray, position: np.ndarray, known_alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of Levin et al.'s matting Laplacian (3×3 windows) for ``pixels`` (flat indices into the
    (H, W, 3) ``image``), split as a system in those pixels: values (n, 25) over the 5×5 pixels a row can
    reach, their columns (n, 25) as ``position`` gives them (-1 where the pixel is known or off the image),
    and each row's sum over known pixels of value × ``known_alpha`` (its right-hand side).

    The sums are pymatting's ``cf_laplacian``'s (windows wholly inside the image, ε / 9 added to each
    window's colour covariance), in the same order, but only for the rows asked for: pymatting builds every
    row of the box it is given, 400 bytes per pixel whether known or not.  Each window's covariance is
    computed for every pixel of it that is asked for (up to 9 times) rather than stored: no per-window
    memory, for a small share of the solve's time.
    """
    height, width = image.shape[0], image.shape[1]
    values = np.zeros((pixels.size, 25))
    columns = np.full((pixels.size, 25), -1, dtype=np.int64)
    fixed = np.zeros(pixels.size)
    centred = np.empty((3, 3, 3))
    for n in range(pixels.size):
        y, x = pixels[n] // width, pixels[n] % width
        for cy in range(max(y - 1, 1), min(y + 1, height - 2) + 1):
            for cx in range(max(x - 1, 1), min(x + 1, width - 2) + 1):
                for c in range(3):
                    mean = 0.0
                    for wy in range(3):
                        for wx in range(3):
                            mean += image[cy - 1 + wy, cx - 1 + wx, c]
                    mean /= 9.0
                    for wy in range(3):
                        for wx in range(3):
                            centred[wy, wx, c] = image[cy - 1 + wy, cx - 1 + wx, c] - mean
                # The window's colour covariance plus ε / 9, inverted by its adjugate.
                a, b, d, e, f, g = epsilon, 0.0, 0.0, epsilon, 0.0, epsilon
                for wy in range(3):
                    for wx in range(3):
                        r, s, t = centred[wy, wx, 0], centred[wy, wx, 1], centred[wy, wx, 2]
                        a += r * r
                        b += r * s
                        d += r * t
                        e += s * s
                        f += s * t
                        g += t * t
                a, b, d, e, f, g = a / 9.0, b / 9.0, d / 9.0, e / 9.0, f / 9.0, g / 9.0
                i00, i01, i02 = e * g - f * f, d * f - b * g, b * f - d * e
                i11, i12, i22 = a * g - d * d, b * d - a * f, a * e - b * b
                determinant = a * i00 + b * i01 + d * i02
                py, px = y - cy + 1, x - cx + 1
                r, s, t = centred[py, px, 0], centred[py, px, 1], centred[py, px, 2]
                u0 = (i00 * r + i01 * s + i02 * t) / determinant
                u1 = (i01 * r + i11 * s + i12 * t) / determinant
                u2 = (i02 * r + i12 * s + i22 * t) / determinant
                for wy in range(3):
                    for wx in range(3):
                        product = u0 * centred[wy, wx, 0] + u1 * centred[wy, wx, 1] + u2 * centred[wy, wx, 2]
                        same = 1.0 if (wy == py and wx == px) else 0.0
                        k = (cy - 1 + wy - y + 2) * 5 + cx - 1 + wx - x + 2
                        values[n, k] += same - (1.0 + product) / 9.0
        for k in range(25):
            other_y, other_x = y + k // 5 - 2, x + k % 5 - 2
            if 0 <= other_y < height and 0 <= other_x < width:
                other = other_y * width + other_x
                columns[n, k] = position[other]
                if position[other] < 0:
                    fixed[n] += values[n, k] * known_alpha[other]
    return values, columns, fixed
