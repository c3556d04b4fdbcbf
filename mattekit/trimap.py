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

import cv2
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
    binary = (mask >= threshold).astype(np.uint8)
    inside = cv2.erode(binary, _disk(erode)) if erode else binary
    outside_band = cv2.dilate(binary, _disk(dilate)) if dilate else binary
    trimap = np.full(mask.shape, UNKNOWN, dtype=np.uint8)
    trimap[inside == 1] = FOREGROUND
    trimap[outside_band == 0] = BACKGROUND
    return trimap


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def grabcut_mask(image: np.ndarray, rect: tuple[int, int, int, int], iterations: int = 5) -> np.ndarray:
    """A rough foreground mask (H, W) float32 from OpenCV's GrabCut started from a box (x, y, w, h)."""
    height, width = image.shape[:2]
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise MattekitError(f"--rect {x},{y},{w},{h} does not lie inside the {width}x{height} image")
    bgr = cv2.cvtColor(np.rint(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    labels = np.zeros((height, width), np.uint8)
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    cv2.grabCut(bgr, labels, rect, *models, iterations, cv2.GC_INIT_WITH_RECT)
    return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


#: Patch-based trimming thresholds on the Bhattacharyya distance (Aksoy et al., arXiv 1707.05055, trimap
#: trimming): a pixel joins a class when its patch is closer than ``TRIM_CLOSE`` to one of that class's
#: patches and farther than ``TRIM_FAR`` from every patch of the other class.
TRIM_CLOSE, TRIM_FAR = 0.25, 0.9
#: Candidate patches of each class per unknown pixel (nearest by mean colour), and the variance added to
#: every patch's colour covariance so that flat patches have a finite distance (colours in [0, 1]).
TRIM_CANDIDATES, TRIM_VARIANCE = 10, 1e-4


def trim(image: np.ndarray, trimap: np.ndarray, radius: int = 1) -> np.ndarray:
    """Patch-based trimap trimming (Aksoy, Aydın & Pollefeys, arXiv 1707.05055): unknown pixels whose
    colour statistics are confidently those of one known class become known.

    Each pixel's (2r+1)² patch is modelled as a normal distribution of its colours.  An unknown pixel is
    marked foreground when the Bhattacharyya distance from its patch to the nearest foreground patch is
    below ``TRIM_CLOSE`` and to the nearest background patch above ``TRIM_FAR`` (and the other way round
    for background).  Known patches are those whose whole window lies in one class; the nearest are
    searched among the ``TRIM_CANDIDATES`` closest by mean colour (KD-tree).  A pre-step for any model:
    the trimap it returns has fewer unknown pixels and the same known ones.
    """
    from scipy.spatial import cKDTree

    means, covariances = _patch_statistics(image, radius)
    size = 2 * radius + 1
    unknown = np.flatnonzero(trimap.ravel() == UNKNOWN)
    distances = []
    for label in (FOREGROUND, BACKGROUND):
        inside = cv2.erode((trimap == label).astype(np.uint8), np.ones((size, size), np.uint8))
        known = np.flatnonzero(inside.ravel())
        if known.size == 0 or unknown.size == 0:
            return trimap.copy()
        # One patch per distinct mean colour (to 1/1024): a KD-tree over thousands of identical points
        # (a flat backdrop) answers queries in seconds instead of milliseconds.
        _, first = np.unique(np.round(means[known] * 1024).astype(np.int32), axis=0, return_index=True)
        known = known[first]
        k = min(TRIM_CANDIDATES, known.size)
        tree = cKDTree(means[known], balanced_tree=False, compact_nodes=False)
        _, index = tree.query(means[unknown], k=k, workers=-1)
        candidates = known[index.reshape(unknown.size, k)]
        distances.append(_nearest_bhattacharyya(means, covariances, unknown, candidates))
    to_fg, to_bg = distances
    result = trimap.copy().ravel()
    result[unknown[(to_fg < TRIM_CLOSE) & (to_bg > TRIM_FAR)]] = FOREGROUND
    result[unknown[(to_bg < TRIM_CLOSE) & (to_fg > TRIM_FAR)]] = BACKGROUND
    return result.reshape(trimap.shape)


def _patch_statistics(image: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour (N, 3) and colour covariance (N, 3, 3) of every pixel's (2r+1)² window."""
    size = (2 * radius + 1,) * 2
    colors = image.astype(np.float64)

    def box(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, -1, size, borderType=cv2.BORDER_REFLECT)

    means = box(colors).reshape(-1, 3)
    products = np.einsum("hwi,hwj->hwij", colors, colors).reshape(*colors.shape[:2], 9)
    second = box(products).reshape(-1, 3, 3)
    covariances = second - means[:, :, None] * means[:, None, :] + TRIM_VARIANCE * np.eye(3)
    return means, covariances


def _nearest_bhattacharyya(
    means: np.ndarray, covariances: np.ndarray, pixels: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Smallest Bhattacharyya distance from each pixel's patch to its candidate patches, in chunks.

    D = (μ_p − μ_q)ᵀ Σ⁻¹ (μ_p − μ_q) / 8 + ln(det Σ / √(det Σ_p det Σ_q)) / 2 with Σ = (Σ_p + Σ_q) / 2, in
    closed form for 3×3 symmetric matrices (numpy's batched LAPACK calls cost more than the arithmetic).
    """
    log_det = np.log(_det3(covariances))
    nearest = np.empty(pixels.size)
    step = 1 << 15
    for start in range(0, pixels.size, step):
        chunk = slice(start, start + step)
        own, other = pixels[chunk][:, None], candidates[chunk]
        average = 0.5 * (covariances[own] + covariances[other])
        delta = means[other] - means[own]
        determinant = _det3(average)
        distance = _adjugate_form3(average, delta) / (8.0 * determinant) + 0.5 * (
            np.log(determinant) - 0.5 * (log_det[own] + log_det[other])
        )
        nearest[chunk] = distance.min(axis=1)
    return nearest


def _det3(m: np.ndarray) -> np.ndarray:
    """Determinants of symmetric 3×3 matrices (..., 3, 3)."""
    a, b, c = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    d, e, f = m[..., 0, 1], m[..., 0, 2], m[..., 1, 2]
    return a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)


def _adjugate_form3(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """vᵀ adj(m) v for symmetric 3×3 matrices m (..., 3, 3) and vectors v (..., 3); equals vᵀ m⁻¹ v det m."""
    a, b, c = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    d, e, f = m[..., 0, 1], m[..., 0, 2], m[..., 1, 2]
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return (
        (b * c - f * f) * x * x + (a * c - e * e) * y * y + (a * b - d * d) * z * z
        + 2 * ((e * f - d * c) * x * y + (d * f - b * e) * x * z + (d * e - a * f) * y * z)
    )
