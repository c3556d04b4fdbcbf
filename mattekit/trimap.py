"""Trimaps: reading any common encoding into one canonical form, and making trimaps from masks.

The canonical trimap is a uint8 (H, W) array holding only ``BACKGROUND`` (0), ``UNKNOWN`` (128) and
``FOREGROUND`` (255), the values of the alphamatting.com and Composition-1k benchmarks.

Encodings accepted by :func:`read_trimap`, checked in this order:

1. **Label maps**: grey data (one channel, or colour with equal channels) whose values all lie in
   {0, 1, 2} is read as 0 = background, 1 = unknown, 2 = foreground, whatever the container (8/16-bit,
   RGB, palette, float TIFF).
2. **Everything else** is brought to [0, 1] (8-bit / 255, 16-bit / 65535, floats as they are; colour by
   its luma) and cut at the thresholds of the official GCA-Matting code: below 85/255 background, at or
   above 170/255 foreground, the rest unknown.  So 0/128/255, 127 for unknown, float trimaps and noisy
   JPEG trimaps all come out right.  A trimap's own alpha channel is ignored.

A trimap that is not blank yet falls wholly below the background threshold (a label map saved as JPEG,
say) is an error rather than an all-background trimap that would give a silent all-zero matte.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

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
    rounded = np.rint(codes)
    if codes.min(initial=0) < 0 or rounded.max(initial=0) > 2:
        return None
    if np.abs(codes - rounded).max(initial=0) > 1e-3:  # float error of a colour file's luma only
        return None
    lookup = np.array([BACKGROUND, UNKNOWN, FOREGROUND], dtype=np.uint8)
    return lookup[rounded.astype(np.intp)]


def _grey(color: np.ndarray) -> np.ndarray:
    """One channel, or the luma of colour; colour with equal channels is that channel exactly."""
    if color.shape[2] == 1:
        return color[..., 0]
    if np.array_equal(color[..., 0], color[..., 1]) and np.array_equal(color[..., 0], color[..., 2]):
        return color[..., 0]
    return color @ _LUMA


def read_trimap(source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any supported trimap (path, PIL image or array) as a canonical uint8 trimap (H, W)."""
    decoded = decode(source, max_pixels, clip=False)
    gray = _grey(decoded.color)
    codes = gray * decoded.levels
    # An integer source is a label map when its codes are 0/1/2; a float one only if it uses 2 (0/1 floats
    # are a binary trimap in [0, 1]).
    if decoded.levels > 1 or codes.max(initial=0) > 1:
        labels = _as_labels(codes)
        if labels is not None:
            return labels
    trimap = quantize(np.clip(gray, 0.0, 1.0))
    top = float(np.clip(gray, 0.0, 1.0).max(initial=0)) * 255
    if 0 < top < BACKGROUND_BELOW:
        name = source if isinstance(source, (str, os.PathLike)) else "trimap"
        raise MattekitError(
            f"{name}: every value is below {BACKGROUND_BELOW} (at most {top:.0f} of 255), so the whole "
            f"trimap would be background; expected 0/128/255, or 0/1/2 labels saved losslessly (PNG)"
        )
    return trimap


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


#: Peak bytes per pixel GrabCut adds (OpenCV 4: 189-203 measured at 0.25 and 1 MP, docs/errors.md), and
#: what the trimap command holds per image pixel besides (the decoded photo and its copies, the mask).
GRABCUT_BYTES_PER_PIXEL = 210
TRIMAP_BYTES_PER_PIXEL = 40


def grabcut_pixels(height: int, width: int, budget: int) -> int:
    """How many pixels GrabCut may work on within ``budget`` bytes for a ``height`` x ``width`` photo (all
    of them when they fit); a user error when not even a small copy fits."""
    room = (budget - TRIMAP_BYTES_PER_PIXEL * height * width) // GRABCUT_BYTES_PER_PIXEL
    least = min(height * width, 10_000)
    if room < least:
        needed = TRIMAP_BYTES_PER_PIXEL * height * width + GRABCUT_BYTES_PER_PIXEL * least
        raise MattekitError(
            f"the {width}x{height} image needs at least {needed / 1e9:.2f} GB for GrabCut, over the memory "
            f"budget of {budget / 1e9:.2f} GB; raise --max-memory or make the trimap from a --mask"
        )
    return min(height * width, room)


def grabcut_mask(
    image: np.ndarray,
    rect: tuple[int, int, int, int],
    iterations: int = 5,
    max_pixels: int | None = None,
) -> np.ndarray:
    """A rough foreground mask (H, W) float32 from OpenCV's GrabCut started from a box (x, y, w, h); on
    images over ``max_pixels`` (see :func:`grabcut_pixels`) GrabCut runs on a scaled-down copy and its
    mask is scaled back up, which costs accuracy (half size: 12% less overlap with the true matte on
    alphamatting.com GT04), so only a memory budget should ask for it."""
    height, width = image.shape[:2]
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise MattekitError(f"--rect {x},{y},{w},{h} does not lie inside the {width}x{height} image")
    if w == width and h == height:
        raise MattekitError(
            f"--rect {x},{y},{w},{h} covers the whole {width}x{height} image: GrabCut learns the background "
            f"from the pixels outside the box, so draw the box around the subject only"
        )
    import cv2  # here, not at the top: predict reads trimaps and never needs OpenCV (mattekit.io)

    scale = 1.0 if max_pixels is None else min(1.0, (max_pixels / (height * width)) ** 0.5)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = image if scale == 1.0 else cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    box = rect if scale == 1.0 else _scaled_box(rect, scale, small)
    bgr = cv2.cvtColor(np.rint(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    labels = np.zeros(bgr.shape[:2], np.uint8)
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    try:
        cv2.grabCut(bgr, labels, box, *models, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        raise MattekitError(
            f"--rect {x},{y},{w},{h}: GrabCut cannot start from this box (too few pixels inside or outside "
            f"it); draw a larger box with some background around it"
        ) from None
    mask = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    return mask if scale == 1.0 else cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


Box = tuple[int, int, int, int]


def _scaled_box(rect: Box, scale: float, size: tuple[int, int]) -> Box:
    """The box (x, y, w, h) on the image scaled down to ``size`` (width, height), still inside it."""
    x, y, w, h = rect
    left, top = min(int(x * scale), size[0] - 1), min(int(y * scale), size[1] - 1)
    right = min(size[0], max(left + 1, round((x + w) * scale)))
    bottom = min(size[1], max(top + 1, round((y + h) * scale)))
    return left, top, right - left, bottom - top


#: Patch-based trimming thresholds on the Bhattacharyya distance (Aksoy et al., arXiv 1707.05055, trimap
#: trimming): a pixel joins a class when its patch is closer than ``TRIM_CLOSE`` to one of that class's
#: patches and farther than ``TRIM_FAR`` from every patch of the other class.
TRIM_CLOSE, TRIM_FAR = 0.25, 0.9
#: Candidate patches of each class per unknown pixel (nearest by mean colour), and the variance added to
#: every patch's colour covariance so that flat patches have a finite distance (colours in [0, 1]).
TRIM_CANDIDATES, TRIM_VARIANCE = 10, 1e-4


def trim_patches(image: np.ndarray, trimap: np.ndarray, radius: int = 1) -> np.ndarray:
    """Patch-based trimap trimming (Aksoy, Aydın & Pollefeys, arXiv 1707.05055): unknown pixels whose
    colour statistics are confidently those of one known class become known.

    Each pixel's (2r+1)² patch is modelled as a normal distribution of its colours.  An unknown pixel is
    marked foreground when the Bhattacharyya distance from its patch to the nearest foreground patch is
    below ``TRIM_CLOSE`` and to the nearest background patch above ``TRIM_FAR`` (and the other way round
    for background).  Known patches are those whose whole window lies in one class; the nearest are
    searched among the ``TRIM_CANDIDATES`` closest by mean colour (KD-tree).  A pre-step for any model:
    the trimap it returns has fewer unknown pixels and the same known ones.
    """
    import cv2  # here, not at the top: predict without --trim never needs OpenCV (mattekit.io)
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
    import cv2

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


#: Known-unknown-edge trimming (Shahrian, Rajan, Price & Cohen, "Improving Image Matting using Comprehensive
#: Sampling Sets", CVPR 2013, expansion of the known regions): ``EDGE_STEPS`` passes; pass i looks i pixels
#: around each unknown pixel and accepts a known pixel whose colour is closer than a threshold that falls
#: linearly from ``EDGE_COLOR_FROM`` (i = 0) to ``EDGE_COLOR_TO`` (i = ``EDGE_STEPS``), colours in [0, 1].
#: The paper gives the rule; the schedule (9 passes, 9/256 down to 1/256) is that of the authors' public
#: Affinity-Based Matting Toolbox, read for its parameter values only.
EDGE_STEPS, EDGE_COLOR_FROM, EDGE_COLOR_TO = 9, 9 / 256, 1 / 256


def trim_edges(image: np.ndarray, trimap: np.ndarray, steps: int = EDGE_STEPS) -> np.ndarray:
    """Known-unknown-edge trimming (Shahrian et al. 2013): unknown pixels near the known regions take the
    label of the spatially nearest known pixel of almost the same colour.

    Pass i (1 … ``steps``) looks at every unknown pixel within i pixels (chessboard) of a known one; among
    the known pixels of its (2i+1)² window whose colour differs by less than that pass's threshold
    (Euclidean, RGB in [0, 1]) it takes the label of the nearest (Euclidean distance in pixels).  Each pass
    reads the trimap the previous one left, so the known regions grow by at most i pixels per pass and
    only into colours continuous with them.  Known pixels never change.
    """
    # scipy, not OpenCV: information-flow trims its edges on every predict, which stays without cv2
    from scipy.ndimage import maximum_filter

    # numba (seconds to import): only when trimming.  Its per-pixel search stops at the first match, where
    # numpy went offset by offset over every pixel still unmatched: the 18 alphamatting-dev trimaps took
    # 94.8 s that way and 10.1 s compiled, side by side at load 7, with identical output (docs/benchmarks.md)
    from mattekit.kernels import nearest_close_label

    # Work on copies padded by ``steps`` unknown pixels: no window leaves them, so no bounds checks.
    height, width = trimap.shape[0] + 2 * steps, trimap.shape[1] + 2 * steps
    padded = np.pad(trimap.astype(np.uint8, copy=False), steps, constant_values=UNKNOWN)
    colors = np.pad(image.astype(np.float32), ((steps, steps), (steps, steps), (0, 0))).reshape(-1, 3)
    flat = padded.ravel()
    original = np.pad(np.ones(trimap.shape, bool), steps).ravel()  # the padding is never labelled
    fresh = flat != UNKNOWN  # known pixels a pass has not looked at yet with its threshold
    for radius in range(1, steps + 1):
        threshold = EDGE_COLOR_FROM - radius * (EDGE_COLOR_FROM - EDGE_COLOR_TO) / steps
        limit = np.float32(threshold * threshold)  # squared colour distances are float32
        window = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
        window.sort(key=lambda offset: offset[0] ** 2 + offset[1] ** 2)
        whole = [dy * width + dx for dy, dx in window[1:]]  # the first is the pixel itself
        ring = [dy * width + dx for dy, dx in window if max(abs(dy), abs(dx)) == radius]
        known = (flat != UNKNOWN).reshape(height, width)
        near = maximum_filter(known, size=2 * radius + 1, mode="constant").ravel()
        # The last pass found no known pixel of close enough colour within radius - 1 of a pixel still
        # unknown, and thresholds only fall: inside that radius only pixels labelled since can match, so
        # pixels away from those need the window's outer ring alone (the same answer, a third of the work).
        inner = 2 * radius - 1
        near_fresh = maximum_filter(fresh.reshape(height, width), size=inner, mode="constant").ravel()
        candidates = near & (flat == UNKNOWN) & original
        result = flat.copy()
        for pixels, offsets in ((np.flatnonzero(candidates & near_fresh), whole),
                                (np.flatnonzero(candidates & ~near_fresh), ring)):
            result[pixels] = nearest_close_label(
                flat, colors, pixels, np.array(offsets, dtype=np.int64), limit, UNKNOWN
            )
        fresh = result != flat
        flat = result
    return flat.reshape(height, width)[steps:-steps, steps:-steps].copy()


#: The trimming pre-steps by name (``--trim-method``, ``trim_trimap=``); see docs/trimap.md for which helps.
TrimMethod = Literal["patch", "edges"]
TRIM_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "patch": trim_patches, "edges": trim_edges,
}


def trim(image: np.ndarray, trimap: np.ndarray, method: TrimMethod = "edges") -> np.ndarray:
    """The trimap trimmed by ``method``: ``"edges"`` (:func:`trim_edges`, Shahrian et al.; the default, the
    better of the two on alphamatting-dev for every model measured, docs/benchmarks.md) or ``"patch"``
    (:func:`trim_patches`, Aksoy et al.).  Only unknown pixels change."""
    if method not in TRIM_METHODS:
        raise MattekitError(f"unknown trimming method {method!r}; choose from {', '.join(TRIM_METHODS)}")
    return TRIM_METHODS[method](image, trimap)
