"""SAD, MSE, Grad and Conn exactly as the official Deep Image Matting evaluation code computes them.

The reference is the MATLAB code released with Xu et al., *Deep Image Matting* (CVPR 2017), as shipped in
``DIM_evaluation_code/`` of the HOP-Matting repository: ``compute_sad_loss.m``, ``compute_mse_loss.m``,
``compute_gradient_loss.m`` (with ``gaussgradient.m``) and ``compute_connectivity_error.m``, called by
``evaluate.m``.  Every published Composition-1k table uses it, so its conventions are kept here:

- **8-bit alphas.**  The official code reads predictions and ground truths with ``imread`` and works on
  their 8-bit codes.  :func:`to_uint8` brings any other input to that convention: uint8 is taken as it is,
  uint16 is scaled by 255/65535 and rounded, floats in [0, 1] are rounded as mattekit's PNG writer
  (:func:`mattekit.io.write_png`) rounds them, so a matte scored in memory scores exactly like the file
  ``mattekit predict`` writes for it.
- **Region.**  Sums run over ``trimap == 128`` (the unknown region); :func:`region_mask` also gives the whole
  image for ``region="full"``.
- **Scale.**  SAD, Grad and Conn are sums divided by 1000 (``evaluate.m`` divides Grad and Conn, SAD divides
  itself); MSE is the mean squared error of alphas in [0, 1] over the region, not multiplied by anything.

The official code accumulates in single precision; here sums are exact (integers) or float64, which agrees
with it to about 1e-6 relative.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from mattekit.errors import MattekitError
from mattekit.io import to_integer
from mattekit.trimap import UNKNOWN

#: ``evaluate.m`` reports SAD, Grad and Conn divided by this ("due to the large images used").
SCALE = 1000.0
#: ``compute_gradient_loss.m`` calls ``gaussgradient(pred, 1.4)``; ``gaussgradient.m`` truncates at 1e-2.
GRAD_SIGMA, GRAD_EPSILON = 1.4, 1e-2
#: ``evaluate.m`` calls ``compute_connectivity_error(pred, target, trimap, 0.1)``.
CONN_STEP = 0.1
#: ``compute_connectivity_error.m`` keeps the distance to the threshold map only where it is >= 0.15.
CONN_CUTOFF = 0.15

REGIONS = ("unknown", "full")


@dataclass(frozen=True)
class Scores:
    """The four numbers of one prediction, on the scales of the official ``evaluate.m``."""

    sad: float
    mse: float
    grad: float
    conn: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def to_uint8(alpha: np.ndarray) -> np.ndarray:
    """An alpha matte (H, W) as the 8-bit codes the official code sees.

    uint8 passes unchanged; uint16 becomes ``round(v * 255 / 65535)``; floats are clipped to [0, 1] and
    become ``rint(alpha * 255)`` (round half to even), the rounding of :func:`mattekit.io.write_png`.
    """
    if alpha.ndim != 2:
        raise MattekitError(f"an alpha matte must be HxW, not an array of shape {alpha.shape}")
    if alpha.dtype == np.uint8:
        return alpha
    if alpha.dtype == np.uint16:
        return to_integer(alpha / np.float32(65535), 8)
    if np.issubdtype(alpha.dtype, np.floating):
        return to_integer(alpha, 8)
    raise MattekitError(f"an alpha matte must be uint8, uint16 or float, not {alpha.dtype}")


def check_region(region: str) -> None:
    """A user error unless ``region`` is one of :data:`REGIONS`."""
    if region not in REGIONS:
        raise MattekitError(f"--region must be one of {', '.join(REGIONS)}, not {region!r}")


def region_mask(trimap: np.ndarray, region: str = "unknown") -> np.ndarray:
    """Boolean (H, W) mask of the pixels scored: ``trimap == 128`` as the official code, or every pixel."""
    check_region(region)
    if region == "full":
        return np.ones(trimap.shape, dtype=bool)
    return trimap == UNKNOWN


def _error_histogram(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """How many masked pixels have each absolute error |pred - gt| in codes 0..255: exact integer sums
    of errors and squared errors follow from it without full-size temporaries."""
    return np.bincount(cv2.absdiff(pred, gt)[mask], minlength=256)


_CODES = np.arange(256, dtype=np.int64)


def sad(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """``compute_sad_loss.m``: sum of |pred - gt| / 255 over the mask, divided by 1000."""
    return float(_error_histogram(pred, gt, mask) @ _CODES) / 255.0 / SCALE


def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """``compute_mse_loss.m``: mean of ((pred - gt) / 255)^2 over the mask (NaN for an empty mask, as the
    official 0/0)."""
    histogram = _error_histogram(pred, gt, mask)
    count = int(histogram.sum())
    if count == 0:
        return float("nan")
    return float(histogram @ _CODES**2) / 255.0**2 / count


def _gaussgradient_kernels(sigma: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D factors (gaussian, derivative) of ``gaussgradient.m``'s 2-D kernel.

    Its kernel is ``hx(i, j) = gauss(i) * dgauss(j)`` divided by its Frobenius norm, which is the product of
    the two factors' norms, so normalising each factor gives the same kernel as an outer product.
    """
    half = int(np.ceil(sigma * np.sqrt(-2.0 * np.log(np.sqrt(2.0 * np.pi) * sigma * epsilon))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * np.sqrt(2.0 * np.pi))
    dgauss = -u * gauss / sigma**2
    return gauss / np.linalg.norm(gauss), dgauss / np.linalg.norm(dgauss)


# Single-precision factors: the official code filters in double and rounds the magnitudes to single;
# filtering in single changes Grad by ~1e-7 relative (measured on the reference rows) and is 5x faster.
_GAUSS, _DGAUSS = (k.astype(np.float32) for k in _gaussgradient_kernels(GRAD_SIGMA, GRAD_EPSILON))


def _mat2gray_table(alpha: np.ndarray) -> np.ndarray:
    """``mat2gray`` (min-max scaling to [0, 1]) of an 8-bit matte, as a float32 value for each code.
    mat2gray leaves a constant matte as it is, and a constant's gradient is zero whatever its value, so
    it becomes zeros here."""
    low, high = int(alpha.min()), int(alpha.max())
    if low == high:
        return np.zeros(256, dtype=np.float32)
    # mat2gray multiplies by the reciprocal, in double
    return ((np.arange(256, dtype=np.float64) - low) * (1.0 / (high - low))).astype(np.float32)


def _gradient_magnitude(alpha: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``sqrt(gx^2 + gy^2)`` of ``gaussgradient(mat2gray(alpha), 1.4)`` in single precision (the official
    code rounds it to single), with ``table`` from :func:`_mat2gray_table`.

    ``imfilter(..., 'replicate', 'conv')`` convolves: OpenCV correlates, so the kernel is mirrored, which
    for the odd derivative factor is a sign change.  The 2-D kernel is separable, so two 1-D passes give
    the same result as the official 9x9 filter.
    """
    image = cv2.LUT(alpha, table)
    border = cv2.BORDER_REPLICATE
    gx = cv2.sepFilter2D(image, cv2.CV_32F, -_DGAUSS, _GAUSS, borderType=border)
    gy = cv2.sepFilter2D(image, cv2.CV_32F, _GAUSS, -_DGAUSS, borderType=border)
    return cv2.magnitude(gx, gy)


#: Grad is computed in strips of this many rows: strip-sized temporaries stay in cache and are reused,
#: where full-size ones (144 MB each at 36 MP) cost more in page faults than the filtering.
STRIP_ROWS = 256


def gradient_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """``compute_gradient_loss.m`` / 1000: squared difference of the derivative-of-Gaussian gradient
    magnitudes (sigma 1.4) of the min-max scaled mattes, summed over the mask.

    Each strip is filtered with the rows the kernel reaches beyond it, so only the image's own top and
    bottom rows are replicated, as in the whole-image filter.
    """
    tables = _mat2gray_table(pred), _mat2gray_table(gt)
    reach, height = len(_GAUSS) // 2, pred.shape[0]
    total = 0.0
    for top in range(0, height, STRIP_ROWS):
        bottom = min(top + STRIP_ROWS, height)
        rows = slice(max(0, top - reach), min(height, bottom + reach))
        keep = slice(top - rows.start, bottom - rows.start)
        pred_amp = _gradient_magnitude(pred[rows], tables[0])[keep]
        gt_amp = _gradient_magnitude(gt[rows], tables[1])[keep]
        # (single(pred_amp) - single(target_amp)).^2 in single, as the official code
        error = np.square(pred_amp - gt_amp)
        total += float(np.sum(error, where=mask[top:bottom], dtype=np.float64))
    return total / SCALE


def _label(binary: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected labels of ``binary`` (0 is the background) and their count.

    Labels go into the uint16 buffer ``labels`` (half the memory traffic of int32); an image with more
    than 65535 components gets a fresh int32 array instead.
    """
    try:
        count, _ = cv2.connectedComponents(binary.view(np.uint8), labels, 4, cv2.CV_16U)
    except cv2.error:
        count, wide = cv2.connectedComponents(binary.view(np.uint8), connectivity=4)
        return wide, count
    return labels, count


def _areas(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels per label.  OpenCV's histogram counts uint16 labels fastest, but in float32, exact only up to
    2**24, so it counts bands of rows below that."""
    if labels.dtype != np.uint16:
        return np.bincount(labels.ravel(), minlength=count)
    band = max(1, 2**24 // max(1, labels.shape[1]))
    areas = np.zeros(count, dtype=np.int64)
    for top in range(0, labels.shape[0], band):
        histogram = cv2.calcHist([labels[top : top + band]], [0], None, [count], [0, count])
        areas += histogram.ravel().astype(np.int64)
    return areas


def _keep_largest_component(binary: np.ndarray, labels: np.ndarray) -> None:
    """Reduce the boolean ``binary`` to its largest 4-connected component, in place (all False if none).

    Like ``bwconncomp`` + ``max``: of components of equal size, the one met first in column-major order
    (MATLAB's order) wins.  ``labels`` is a uint16 buffer of the same shape, reused across thresholds: at
    36 MP, fresh label arrays cost more in page faults than the labelling.
    """
    total = cv2.countNonZero(binary.view(np.uint8))
    found, count = _label(binary, labels)
    if count <= 1:
        binary.fill(False)
        return
    # One component usually holds most of the set: guess it from a sparse sample of pixels; holding more
    # than half of the set proves it the largest (and untied) without counting every component's area.
    sample = np.bincount(found[::16, ::16].ravel(), minlength=count)
    sample[0] = 0
    np.equal(found, int(sample.argmax()) or 1, out=binary)
    if 2 * cv2.countNonZero(binary.view(np.uint8)) > total:
        return
    areas = _areas(found, count)
    areas[0] = 0
    tied = np.flatnonzero(areas == areas.max())
    best = tied[0]
    if len(tied) > 1:
        column_major = found.T.ravel()
        best = column_major[np.argmax(np.isin(column_major, tied))]
    np.equal(found, best, out=binary)


#: Sets of at least this many pixels are labelled two thresholds at a time, one per core (a 6000x6000
#: matte spends most of its scoring time labelling); smaller ones are scored images in parallel instead.
PARALLEL_PIXELS = 1 << 22


def _largest_components(both: np.ndarray, codes: np.ndarray) -> Iterator[np.ndarray]:
    """For each code in turn, the largest 4-connected component of ``both >= code`` as a boolean mask.

    Each mask is valid until the next one is asked for: two buffer sets are reused in turn, so that a
    large matte is labelled at two thresholds at once without fresh memory for every threshold.
    """
    jobs = 2 if both.size >= PARALLEL_PIXELS and (os.cpu_count() or 1) > 1 else 1
    buffers = [(np.empty(both.shape, dtype=bool), np.empty(both.shape, dtype=np.uint16)) for _ in range(jobs)]

    def largest(index: int) -> np.ndarray:
        omega, labels = buffers[index % jobs]
        np.greater_equal(both, codes[index], out=omega)
        _keep_largest_component(omega, labels)
        return omega

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {index: pool.submit(largest, index) for index in range(min(jobs, len(codes)))}
        for index in range(len(codes)):
            yield pending.pop(index).result()
            # the caller is done with this buffer set: reuse it for the threshold after the next
            if index + jobs < len(codes):
                pending[index + jobs] = pool.submit(largest, index + jobs)


def _threshold_levels(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, step: float) -> np.ndarray:
    """``l_map(mask)`` of ``compute_connectivity_error.m`` for 8-bit mattes: for each pixel, the threshold
    before the first one at which it falls outside the largest 4-connected component of both mattes
    thresholded at ``single(alpha) / 255 >= threshold``, or 1 if it never does.  (The ``bwdist`` maps
    computed there are never used, so they are left out.)"""
    if not 0.0 < step <= 1.0:
        raise ValueError(f"threshold step must lie in (0, 1], not {step}")
    steps = int(np.floor(1.0 / step + 1e-10)) + 1
    # MATLAB's range 0:step:1 is base + i * step, like this.
    thresholds = np.arange(steps) * step
    # A pixel passes threshold t in both mattes iff min(pred, gt) >= the first code whose single-precision
    # unit value reaches t; comparing codes is exact and touches a quarter of the memory of floats.
    codes_unit = np.arange(256, dtype=np.float32) / np.float32(255)
    first_code = np.searchsorted(codes_unit.astype(np.float64), thresholds, side="left")
    both = np.minimum(pred, gt)
    # kept: for how many thresholds in a row, from the second, a pixel stays in the largest component.
    kept = np.zeros(pred.shape, dtype=np.uint8)
    # Every thresholded set lies inside the first one; outside its bounding box kept stays 0.  Cropping
    # keeps MATLAB's column-major order of components, so ties are broken alike.
    x, y, w, h = cv2.boundingRect((both >= first_code[1]).view(np.uint8))
    crop, kept_crop = both[y : y + h, x : x + w], kept[y : y + h, x : x + w]
    inside = np.ones(crop.shape, dtype=bool)
    for omega in _largest_components(crop, first_code[1:]):
        np.logical_and(inside, omega, out=inside)
        np.add(kept_crop, inside, out=kept_crop, casting="unsafe")
        if not inside.any():
            break  # no pixel can be kept any longer
    # First out at threshold index kept + 1, so l = thresholds[kept]; never out, l = 1.
    lookup = np.append(thresholds[:-1], 1.0)
    return lookup[kept[mask]]


def connectivity_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, step: float = CONN_STEP) -> float:
    """``compute_connectivity_error.m`` / 1000 on 8-bit mattes: ``phi = 1 - d * (d >= 0.15)`` with ``d`` the
    alpha minus the threshold map, and ``|phi_pred - phi_gt|`` summed over the mask."""
    levels = _threshold_levels(pred, gt, mask, step)
    return float(np.abs(_phi(pred[mask], levels) - _phi(gt[mask], levels)).sum()) / SCALE


def _phi(alpha: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``1 - d .* (d >= 0.15)`` with ``d = single(alpha) / 255 - l_map``."""
    d = alpha.astype(np.float32) / np.float32(255) - levels
    return 1.0 - d * (d >= CONN_CUTOFF)


def check_shapes(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, name: str = "prediction") -> None:
    """A one-line user error naming ``name`` unless the three maps have the same height and width."""
    if not pred.shape == gt.shape == trimap.shape:
        sizes = ", ".join(f"{what} {a.shape[1]}x{a.shape[0]}" for what, a in
                          (("prediction", pred), ("ground truth", gt), ("trimap", trimap)))
        raise MattekitError(f"{name}: sizes differ ({sizes})")


def score(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, region: str = "unknown", name: str = "prediction"
) -> Scores:
    """All four metrics of a predicted matte against the ground truth, as the official ``evaluate.m``.

    ``pred`` and ``gt`` are (H, W) mattes in any dtype :func:`to_uint8` accepts; ``trimap`` is canonical
    (uint8 0/128/255, see :func:`mattekit.trimap.read_trimap`); ``region`` is ``"unknown"`` (the official
    ``trimap == 128``) or ``"full"``.  ``name`` is used in error messages.
    """
    pred8, gt8 = to_uint8(pred), to_uint8(gt)
    check_shapes(pred8, gt8, trimap, name)
    mask = region_mask(trimap, region)
    return Scores(
        sad=sad(pred8, gt8, mask),
        mse=mse(pred8, gt8, mask),
        grad=gradient_error(pred8, gt8, mask),
        conn=connectivity_error(pred8, gt8, mask),
    )


# --- Trimap metrics (SPAMattNet §IV-C1, Table I) ---------------------------------------------------------

#: Side of the square kernel that turns a ground-truth alpha into TGN's ground-truth trimap (§IV-B1).
TRIMAP_KERNEL = 15
#: Trimap classes in the order of Table I's columns.
TRIMAP_CLASSES = ("background", "unknown", "foreground")


@dataclass(frozen=True)
class TrimapScores:
    """Pixel accuracy and per-class IoU of a predicted trimap (Table I: pixAcc, mIoU-Bg/Unk/Fg, mIoU)."""

    pixel_accuracy: float
    iou_background: float
    iou_unknown: float
    iou_foreground: float

    @property
    def mean_iou(self) -> float:
        return (self.iou_background + self.iou_unknown + self.iou_foreground) / 3

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {"mean_iou": self.mean_iou}


def ground_truth_trimap(alpha: np.ndarray, kernel: int = TRIMAP_KERNEL) -> np.ndarray:
    """TGN's ground-truth trimap of an 8-bit alpha (§IV-B1, NOTES.md §6 REC): unknown is the ``kernel`` x
    ``kernel`` dilation of alpha > 0 minus the erosion of alpha == 255."""
    square = np.ones((kernel, kernel), np.uint8)
    touched = cv2.dilate((alpha > 0).astype(np.uint8), square)
    solid = cv2.erode((alpha == 255).astype(np.uint8), square)
    trimap = np.full(alpha.shape, UNKNOWN, np.uint8)
    trimap[touched == 0] = 0
    trimap[solid == 1] = 255
    return trimap


def trimap_confusion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """3x3 counts (ground-truth class, predicted class) of two canonical trimaps (0 / 128 / 255)."""
    if pred.shape != gt.shape:
        sizes = f"{pred.shape[1]}x{pred.shape[0]}, ground truth {gt.shape[1]}x{gt.shape[0]}"
        raise MattekitError(f"trimap is {sizes}")
    lookup = np.zeros(256, np.int64)  # 0 background, 1 unknown, 2 foreground
    lookup[UNKNOWN], lookup[255] = 1, 2
    pairs = lookup[gt].ravel() * 3 + lookup[pred].ravel()
    return np.bincount(pairs, minlength=9).reshape(3, 3)


def trimap_scores(confusion: np.ndarray) -> TrimapScores:
    """Scores of a confusion matrix (one image's, or the sum over a dataset: pooled, as segmentation
    benchmarks count).  A class absent from both trimaps has IoU 1 (nothing to get wrong)."""
    hits = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - hits
    iou = np.where(union > 0, hits / np.maximum(union, 1), 1.0)
    return TrimapScores(float(hits.sum() / max(confusion.sum(), 1)), *(float(v) for v in iou))
