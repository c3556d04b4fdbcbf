"""Information-flow matting (Aksoy, Aydın & Pollefeys, "Designing Effective Inter-Pixel Information Flow for
Natural Image Matting", CVPR 2017; extended version arXiv 1707.05055), weight-free.

One sparse linear system in the opacities of the unknown pixels, the sum of four "information flows"
(section numbers of the CVPR paper; the extended version keeps the same terms and values).

**Where each value comes from.**  No parameter is cited to an equation number read in the papers, because
no stored copy of either paper reaches past the introduction.  Sessions up to 2026-11-30 found the search
tool's copies of the CVPR paper, of arXiv 1707.05055 and of its HTML renderings ending there.  On
2026-12-01 a dozen targeted queries of its web-page store (colour-mixture K_CM, K-to-U confidence η,
intra-U K_U, local flow, σ weights and λ, patch trimming) came back with the openings of those pages
only: arxiv-vanity's rendering of 1707.05055, vdocuments/dokumen copies of the CVPR and extended PDFs,
deepai and the project pages.  Each excerpt (about 2,000 characters) ends in the abstract or the
introduction: that store answers with a page's opening.  The authors' MATLAB toolbox
(yaksoy/AffinityBasedMattingToolbox) and OpenCV's alphamat module (code, README, tutorials) name no
equations.  The § numbers are those recorded when the model was written, not re-checked against the
text.  Every value below equals the default of the authors' toolbox (``getMattingParams('IFM')``:
``cm_K = 20, cm_xyw = 1, cm_mult = 1, ku_K = 7, ku_xyw = 10, ku_mult = 0.05, iu_K = 5, iu_xyw = 0.05,
iu_mult = 0.01, loc_win = 1, loc_eps = 1e-6, loc_mult = 1, lambda = 100``), read for its parameter
values only (academic-use licence; no code was taken).

One lead, unverified: the comments of moiling/IFMatting (a Python re-implementation whose header cites
the CVPR paper) number the equations it implements: (1) the LLE weights, (6) the weighted foreground and
background colours F̄_p, B̄_p, (7) the confidence η_p, (15) the sum of the flows' Laplacians, (16) the
system with the K-to-U flow (E_1) and (19) the one without (E_2).  They are quoted in the list below as
"moiling (n)"; whether they follow the CVPR or the extended version, and whether they are right, could
not be checked.

- **Color-mixture flow** (§3.1, energy E_CM): every unknown pixel p is written as an affine combination
  of its K_CM = 20 nearest neighbours in the feature space [r, g, b, x̃, ỹ] (x̃, ỹ the pixel position
  divided by the image width and height); the weights solve the local linear embedding problem
  min ‖c_p − Σ_q w_pq c_q‖² subject to Σ_q w_pq = 1, on the colours only (moiling (1)).  E_CM = Σ_{p∈U}
  (α_p − Σ_q w_pq α_q)², i.e. the Laplacian (I − W_CM)ᵀ(I − W_CM); weight 1.
- **K-to-U flow** (§3.2, E_KU): K_KU = 7 nearest foreground and 7 nearest background pixels of each
  unknown pixel in [r, g, b, 10x̃, 10ỹ]; local-linear-embedding weights over those 14 colours; the sum of
  the foreground weights, w^F_p, is a direct estimate of α_p.  Its confidence η_p = ‖F̄_p − B̄_p‖² / 3
  (F̄, B̄ the weighted foreground / background colours; moiling (6), (7)) weights
  E_KU = Σ_{p∈U} η_p (α_p − w^F_p)²; σ_KU = 0.05.
- **Intra-U flow** (§3.3, E_UU): K_UU = 5 nearest unknown neighbours of each unknown pixel in
  [r, g, b, x̃/20, ỹ/20], affinity w_pq = max(1 − ‖f_p − f_q‖₁, 0), symmetrised; σ_UU = 0.01.
- **Local flow** (§3.4, E_L): the matting Laplacian of Levin et al. (3×3 windows) on the windows that
  touch the unknown region; σ_L = 1.

The minimiser of E_CM + σ_KU E_KU + σ_UU E_UU + σ_L E_L with the known pixels fixed (§3.5; moiling (15),
(16), and (19) without the K-to-U flow) is found with a preconditioned conjugate gradient.  The engine's
tiles solve windows that keep the whole image's K-to-U and intra-U flows (:class:`WholeImageFlows`).

Before the solve, each trimap is trimmed with the known-unknown-edge trimming of Shahrian et al. 2013
(:func:`mattekit.trimap.trim_edges`), whose labels become K-to-U estimates with confidence 1 (the
toolbox's use; ``InformationFlowMatting(edges=...)``), on by measurement: mean SAD 5.03 → 4.41 over the
18 alphamatting-dev cases, and lower MSE, Grad and Conn (docs/benchmarks.md).

Choices the papers leave open or that mattekit makes differently (REC; only the solver was chosen by
measurement, the others are not tuned).  Where the authors' toolbox differs, it is said; none of these
differences could be checked against the papers' equations:

- Known pixels are **hard constraints** (the paper's trimap term λ E_T with λ = 100 taken to its limit):
  the system has one unknown per unknown pixel and known neighbours move to the right-hand side, so it
  spans only the unknown region (the known pixels it touches enter through the right-hand side).
- The local-linear-embedding Gram matrices are conditioned by adding 1e-3 to their diagonal (colours in
  [0, 1]; OpenCV's alphamat uses 1e-3, the toolbox 1e-10), solved in closed form through their rank-3
  structure (Woodbury) instead of a K×K solve.
- w^F_p is clipped to [0, 1] and η_p to [0, 1]; F̄ and B̄ are the weight-normalised means Σ w c / Σ w of
  the foreground (background) neighbours' colours (as OpenCV's alphamat; the toolbox uses the sums Σ w c
  without dividing); where those weights sum to almost nothing, the plain mean of the colours.
- Intra-U affinity: 1 − ‖f_p − f_q‖₁ over the five features.  The toolbox divides that L1 distance by
  the number of features (5) and adds one more neighbour per pixel searched with the position weight
  divided by 100, which its comments say comes from KNN matting's public code, not from this paper.
- The K-to-U flow is computed on the trimap as given.  The toolbox computes it on a patch-trimmed trimap
  and sets w^F to 0 or 1 with confidence 1 where its known-unknown-edge trimming (Shahrian et al. 2013)
  labels a pixel, then sets those pixels to their labels after the solve, and chooses E_1 or E_2
  automatically with a colour-histogram test.  mattekit uses the edge trimming's labels as those
  estimates but does not set them afterwards: setting them (mean SAD 4.33 against 4.41) cut hard steps
  where a label is wrong, as making them known does (docs/benchmarks.md).
- The matting Laplacian's ε is 1e-6 (Levin et al.'s default is 1e-7); not tuned.
- A tiny pull (1e-6) towards the K-to-U estimate keeps the system positive definite when an unknown
  component reaches no known pixel through any flow.
- The K-to-U flow is always on (the paper's E_1); ``known_to_unknown=False`` gives its E_2, which the
  CVPR paper used for highly transparent objects (net, plastic bag).
- Solver: conjugate gradient preconditioned by pymatting's thresholded incomplete Cholesky (entries
  below 1e-2 dropped), chosen over pyamg's smoothed-aggregation multigrid and Jacobi by measurement
  (``benchmarks/information_flow.py solvers``, docs/benchmarks.md); ``preconditioner="jacobi"`` needs
  no factorisation memory.  Neighbours come from pykdtree's KD-tree (exact; ties at the K-th distance may
  be broken otherwise than by scipy's).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pykdtree.kdtree import KDTree
from scipy.sparse.linalg import LinearOperator, cg
from threadpoolctl import threadpool_limits

from mattekit.errors import MattekitError
from mattekit.jit import import_pymatting
from mattekit.models.base import MattingModel, Requirements, WindowSolver
from mattekit.models.classical import degenerate_alpha, degenerate_windows
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, trim_edges

Preconditioner = Literal["ichol", "jacobi"]
#: How edge-trimmed labels enter the solve (:class:`InformationFlowMatting`).
EdgeUse = Literal["hints", "known", "off"]

#: Added to the diagonal of every local-linear-embedding Gram matrix (colours in [0, 1]).
LLE_CONDITIONING = 1e-3
#: Weight of the pull towards the K-to-U estimate that keeps the system positive definite.
ANCHOR = 1e-6
#: Incomplete-Cholesky entries below this are dropped (see _preconditioner).
ICHOL_DISCARD = 1e-2
#: Diagonal shifts the incomplete Cholesky factorisation tries, in order, until one gives a positive pivot
#: everywhere (see _preconditioner).
ICHOL_SHIFTS = (0.1, 0.5, 1.0, 10.0, 100.0)
#: Unknown pixels whose local linear embeddings are computed at once (see _in_blocks).
BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class FlowParameters:
    """Neighbour counts, feature weights and energy weights: the CVPR paper's section (equation numbers
    could not be traced, see the module docstring) and the authors' toolbox parameter with that value."""

    cm_neighbors: int = 20  # K_CM, §3.1; toolbox cm_K
    cm_position: float = 1.0  # [r, g, b, x̃, ỹ], §3.1; toolbox cm_xyw
    ku_neighbors: int = 7  # K_KU per known class, §3.2; toolbox ku_K
    ku_position: float = 10.0  # [r, g, b, 10x̃, 10ỹ], §3.2; toolbox ku_xyw
    ku_weight: float = 0.05  # σ_KU, §3.5; toolbox ku_mult
    uu_neighbors: int = 5  # K_UU, §3.3; toolbox iu_K
    uu_position: float = 0.05  # [r, g, b, x̃/20, ỹ/20], §3.3; toolbox iu_xyw
    uu_weight: float = 0.01  # σ_UU, §3.5; toolbox iu_mult
    local_weight: float = 1.0  # σ_L, §3.5; toolbox loc_mult
    local_epsilon: float = 1e-6  # ε of the matting Laplacian, §3.4; toolbox loc_eps (3×3: loc_win = 1)
    known_to_unknown: bool = True  # E_1 (True) or E_2 (False), §3.5; toolbox useKnownToUnknown


class _Problem:
    """Image features and the index of every unknown pixel in the list of unknowns; positions in the
    features are relative to ``frame`` = (height, width), the whole image a window was cut from."""

    def __init__(self, image: np.ndarray, trimap: np.ndarray, frame: tuple[int, int] | None = None) -> None:
        self.height, self.width = trimap.shape
        self.frame = frame or (self.height, self.width)
        self.colors = image.reshape(-1, 3).astype(np.float64)
        self.unknown = np.flatnonzero(trimap.ravel() == UNKNOWN)
        self.foreground = np.flatnonzero(trimap.ravel() == FOREGROUND)
        self.background = np.flatnonzero(trimap.ravel() == BACKGROUND)
        self.position = np.full(self.height * self.width, -1, dtype=np.int64)
        self.position[self.unknown] = np.arange(self.unknown.size)
        self.known_alpha = (trimap.ravel() == FOREGROUND).astype(np.float64)

    def features(self, pixels: np.ndarray, position_weight: float) -> np.ndarray:
        """[r, g, b, w·x̃, w·ỹ] of ``pixels`` (flat indices), positions divided by the frame's size."""
        rows, cols = np.divmod(pixels, self.width)
        return np.column_stack([
            self.colors[pixels],
            position_weight * cols / self.frame[1],
            position_weight * rows / self.frame[0],
        ])


def _neighbors(data: np.ndarray, queries: np.ndarray, k: int, skip_self: bool = False) -> np.ndarray:
    """Indices into ``data`` of the ``k`` nearest neighbours of each query (KD-tree); fewer if there are
    not that many points."""
    k = min(k + skip_self, data.shape[0])
    if k <= skip_self:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    # pykdtree, not scipy's cKDTree: the same neighbours (only ties at the K-th distance may be broken the
    # other way), in about half the time on alphamatting-dev (docs/benchmarks.md); OpenMP threads are set
    # by mattekit.threads.apply (--threads).
    _, index = KDTree(data, leafsize=16).query(queries, k=k)
    index = index.reshape(queries.shape[0], k).astype(np.int64)
    return index[:, 1:] if skip_self else index


def lle_weights(center: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """Local-linear-embedding weights (n, K) that rebuild each colour ``center`` (n, 3) from its
    ``neighbors`` (n, K, 3) with weights summing to one (§3.1).

    The Gram matrix G = Z Zᵀ + δI (Z the K×3 colour differences) has rank 3 plus δ, so G⁻¹1 comes from a
    3×3 solve per pixel: G⁻¹1 ∝ 1 − Z (δI₃ + ZᵀZ)⁻¹ Zᵀ1.
    """
    z = neighbors - center[:, None, :]
    small = z.transpose(0, 2, 1) @ z
    small[:, [0, 1, 2], [0, 1, 2]] += LLE_CONDITIONING
    y = _solve_symmetric3(small, z.sum(axis=1))
    weights = 1.0 - (z @ y[:, :, None])[:, :, 0]
    return weights / weights.sum(axis=1, keepdims=True)


def _solve_symmetric3(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m⁻¹ v for symmetric positive definite 3×3 matrices m (n, 3, 3) and vectors v (n, 3), by the
    adjugate: half the time of numpy's batched LU solve for the same result to rounding."""
    a, b, c = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    d, e, f = m[:, 0, 1], m[:, 0, 2], m[:, 1, 2]
    adjugate = ((b * c - f * f, e * f - d * c, d * f - b * e),
                (e * f - d * c, a * c - e * e, d * e - a * f),
                (d * f - b * e, d * e - a * f, a * b - d * d))
    determinant = a * adjugate[0][0] + d * adjugate[0][1] + e * adjugate[0][2]
    rows = [row[0] * v[:, 0] + row[1] * v[:, 1] + row[2] * v[:, 2] for row in adjugate]
    return np.stack(rows, axis=1) / determinant[:, None]


def _in_blocks(rows: int, compute: Callable[[slice], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """``compute`` run on consecutive row slices of at most BLOCK_ROWS, its outputs concatenated: the
    per-pixel (K, 3) colour arrays of the local linear embeddings then take a block's memory, not the whole
    unknown region's (they were about 1.2 kB per unknown pixel, the largest part of the solve's peak)."""
    parts = [compute(slice(start, start + BLOCK_ROWS)) for start in range(0, rows, BLOCK_ROWS)]
    return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))


def color_mixture(problem: _Problem, params: FlowParameters) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows of I − W_CM for the unknown pixels (§3.1): the matrix over the unknowns and the part fixed by
    known neighbours (a vector), so that E_CM = ‖M α_U − m‖²."""
    unknown = problem.unknown
    everyone = np.arange(problem.colors.shape[0])
    index = _neighbors(
        problem.features(everyone, params.cm_position), problem.features(unknown, params.cm_position),
        params.cm_neighbors, skip_self=True,
    )
    n, k = index.shape
    if k == 0:
        return sp.identity(n, format="csr"), np.zeros(n)
    (weights,) = _in_blocks(
        n, lambda rows: (lle_weights(problem.colors[unknown[rows]], problem.colors[index[rows]]),)
    )
    # Unknown pixels have known_alpha 0, so this sums over the known neighbours only.
    fixed = (weights * problem.known_alpha[index]).sum(axis=1)
    # Row p of I − W_CM: 1 at p, −w_pq at each unknown neighbour q (a COO matrix and a subtraction from
    # the identity made three copies of it).
    columns = np.concatenate([np.arange(n)[:, None], problem.position[index]], axis=1)
    return _square_rows(np.concatenate([np.ones((n, 1)), -weights], axis=1), columns), fixed


def _square_rows(values: np.ndarray, columns: np.ndarray) -> sp.csr_matrix:
    """The square CSR matrix whose row p holds ``values[p]`` at ``columns[p]`` (both (n, K)), skipping the
    entries whose column is negative (known pixels), without the copies of a COO matrix."""
    inside = columns >= 0
    indptr = np.concatenate([[0], np.cumsum(inside.sum(axis=1))])
    n = columns.shape[0]
    return sp.csr_matrix((values[inside], columns[inside], indptr), shape=(n, n))


def known_to_unknown(
    problem: _Problem, params: FlowParameters, pixels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """w^F_p and its confidence η_p for each of ``pixels`` (flat indices; default every unknown pixel),
    §3.2."""
    pixels = problem.unknown if pixels is None else pixels
    if pixels.size == 0:
        return np.zeros(0), np.zeros(0)
    unknown_features = problem.features(pixels, params.ku_position)
    sides = []
    for known in (problem.foreground, problem.background):
        index = _neighbors(problem.features(known, params.ku_position), unknown_features, params.ku_neighbors)
        sides.append(known[index])
    split = sides[0].shape[1]
    index = np.concatenate(sides, axis=1)

    def estimate(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        colors = problem.colors[index[rows]]
        weights = lle_weights(problem.colors[pixels[rows]], colors)
        mean_fg = _weighted_mean(weights[:, :split], colors[:, :split])
        mean_bg = _weighted_mean(weights[:, split:], colors[:, split:])
        confidence = np.clip(((mean_fg - mean_bg) ** 2).sum(axis=1) / 3.0, 0.0, 1.0)
        return np.clip(weights[:, :split].sum(axis=1), 0.0, 1.0), confidence

    fg_weight, confidence = _in_blocks(pixels.size, estimate)
    return fg_weight, confidence


def _weighted_mean(weights: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Σ w c / Σ w, or the plain mean where the weights sum to almost nothing."""
    total = weights.sum(axis=1, keepdims=True)
    plain = colors.mean(axis=1)
    weighted = np.einsum("nk,nkc->nc", weights, colors) / np.where(np.abs(total) > 1e-3, total, 1.0)
    return np.where(np.abs(total) > 1e-3, weighted, plain)


def intra_unknown_affinities(problem: _Problem, params: FlowParameters) -> sp.csr_matrix:
    """Symmetric affinities W_UU of the intra-U flow between the unknown pixels (§3.3): each pixel's K_UU
    nearest unknown neighbours in [r, g, b, x̃/20, ỹ/20], w_pq = max(1 − ‖f_p − f_q‖₁, 0), symmetrised."""
    features = problem.features(problem.unknown, params.uu_position)
    index = _neighbors(features, features, params.uu_neighbors, skip_self=True)
    n, k = index.shape
    if k == 0:
        return sp.csr_matrix((n, n))
    affinity = np.maximum(1.0 - np.abs(features[:, None, :] - features[index]).sum(axis=2), 0.0)
    graph = sp.csr_matrix((affinity.ravel(), (np.repeat(np.arange(n), k), index.ravel())), shape=(n, n))
    return ((graph + graph.T) * 0.5).tocsr()


def intra_unknown(problem: _Problem, params: FlowParameters) -> sp.csr_matrix:
    """Graph Laplacian D − W_UU of the intra-U flow over the unknown pixels (§3.3)."""
    graph = intra_unknown_affinities(problem, params)
    return (sp.diags(np.asarray(graph.sum(axis=1)).ravel()) - graph).tocsr()


def local_laplacian(image: np.ndarray, problem: _Problem, epsilon: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """The matting Laplacian (3×3 windows, §3.4) restricted to the unknowns, and its product with the known
    alphas (the part that moves to the right-hand side).  Only the unknown pixels' rows are built
    (:func:`mattekit.kernels.matting_laplacian_rows`): about 450 bytes per unknown pixel, where building
    the Laplacian of the unknown region's bounding box took 500 bytes per pixel of the box."""
    from mattekit.kernels import matting_laplacian_rows  # numba: imported with pymatting, on first solve

    values, columns, fixed = matting_laplacian_rows(
        np.ascontiguousarray(image, dtype=np.float64), epsilon, problem.unknown, problem.position,
        problem.known_alpha,
    )
    return _square_rows(values, columns), fixed


def known_to_unknown_prior(
    problem: _Problem, params: FlowParameters, hints: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The K-to-U estimate w^F and its confidence η for every unknown pixel (§3.2).  ``hints`` (a trimap
    of the same size, e.g. edge-trimmed) override the estimate where they label an unknown pixel: w^F = 0
    or 1 there, with confidence 1, as the authors' toolbox does with its edge trimming."""
    hinted = np.full(problem.unknown.size, UNKNOWN) if hints is None else hints.ravel()[problem.unknown]
    estimate, confidence = np.zeros(problem.unknown.size), np.ones(problem.unknown.size)
    estimate[hinted == FOREGROUND], estimate[hinted == BACKGROUND] = 1.0, 0.0
    # Only the pixels without a hint need the K-to-U search (the hints label 33 % to 80 % of the unknowns
    # on alphamatting-dev, docs/benchmarks.md).
    free = hinted == UNKNOWN
    estimate[free], confidence[free] = known_to_unknown(problem, params, problem.unknown[free])
    return estimate, confidence


@dataclass(frozen=True)
class WindowFlows:
    """What a window of a bigger image takes from the whole image's flows (:class:`WholeImageFlows`), for
    its unknown pixels in raster order: their K-to-U estimate and confidence, the intra-U Laplacian's rows
    among them, and the pull of their intra-U neighbours outside the window (Σ_q w_pq α_q, those α_q held
    at their K-to-U estimates)."""

    estimate: np.ndarray
    confidence: np.ndarray
    intra: sp.csr_matrix
    intra_outside: np.ndarray


def build_system(
    image: np.ndarray,
    trimap: np.ndarray,
    params: FlowParameters,
    hints: np.ndarray | None = None,
    window: WindowFlows | None = None,
    frame: tuple[int, int] | None = None,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The system A α_U = b of §3.5 over the unknown pixels, and the K-to-U estimate w^F (a start).

    ``hints``: see :func:`known_to_unknown_prior`.  For a ``window`` of a bigger image of ``frame`` =
    (height, width) pixels, which positions are relative to, the K-to-U and intra-U flows come from the
    whole image (``hints`` are then already in its estimate)."""
    problem = _Problem(image, trimap, frame)
    mixing, mixing_fixed = color_mixture(problem, params)
    rhs = mixing.T @ mixing_fixed
    # Mᵀ made CSR first: scipy's CSC @ CSR product took 3× as long (GT08/Trimap1: 3.1 s against 1.0 s).
    product = (mixing.T.tocsr() @ mixing).tocsr()
    del mixing
    # The other terms are summed first and then added to that product, the largest matrix, once: each
    # sparse sum makes a new matrix, and summing them onto it one by one held three copies of it at once.
    local, local_fixed = local_laplacian(image, problem, params.local_epsilon)
    local.data *= params.local_weight
    rhs -= params.local_weight * local_fixed
    if window is None:
        intra = intra_unknown(problem, params)
        estimate, confidence = known_to_unknown_prior(problem, params, hints)
    else:
        intra = window.intra.copy()
        rhs += params.uu_weight * window.intra_outside
        estimate, confidence = window.estimate, window.confidence
    intra.data *= params.uu_weight
    diagonal = np.full(problem.unknown.size, ANCHOR)
    if params.known_to_unknown:
        diagonal += params.ku_weight * confidence
    rhs += diagonal * estimate
    others = (local + intra + sp.diags(diagonal)).tocsr()
    del local, intra
    return (product + others).tocsr(), rhs, estimate


def solve(
    matrix: sp.csr_matrix, rhs: np.ndarray, start: np.ndarray, preconditioner: Preconditioner = "ichol"
) -> np.ndarray:
    """Preconditioned conjugate gradient on the symmetric positive definite system, from ``start``.

    A relative residual of 1e-5 moved no alpha by more than 1e-3 against a 1e-7 solve (GT01, GT04 of
    alphamatting-dev, ``benchmarks/information_flow.py solvers``).
    """
    operator = _preconditioner(matrix, preconditioner)
    solution, info = cg(matrix, rhs, x0=start, rtol=1e-5, maxiter=3000, M=operator)
    if info < 0:
        raise MattekitError(f"information-flow: the linear solver broke down (code {info})")
    return solution


def _preconditioner(matrix: sp.csr_matrix, kind: Preconditioner) -> LinearOperator:
    if kind == "ichol":
        from pymatting import ichol

        # A discard threshold of 1e-2 (pymatting's default is 1e-4) keeps the factor sparse: the color-mixture
        # term couples every pixel with its neighbours' neighbours, and the default fills in for minutes.
        # With that threshold the factorisation fails (a non-positive pivot) at pymatting's first shifts,
        # 0 to 1e-2, on 17 of the 18 alphamatting-dev systems, and each failure costs up to the time of a
        # whole factorisation (GT08/Trimap1: 11.0 s of set-up from shift 0, 2.2 s from 0.1); shift 0.1
        # succeeded on all 18, with the same or fewer iterations.  ichol print()s a "PERFORMANCE WARNING"
        # each time it retries with a larger shift; the retry is the fix, so the note is dropped.
        # The matrix is symmetric, so its CSR arrays read as CSC are the same matrix: no CSC copy (about
        # 840 bytes per unknown pixel, the largest part of the factorisation's peak).
        symmetric = sp.csc_matrix((matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape)
        with contextlib.redirect_stdout(io.StringIO()):
            factor = ichol(symmetric, discard_threshold=ICHOL_DISCARD, shifts=list(ICHOL_SHIFTS))
        return LinearOperator(matrix.shape, matvec=factor, dtype=np.float64)
    inverse = 1.0 / matrix.diagonal()
    return LinearOperator(matrix.shape, matvec=lambda x: inverse * x, dtype=np.float64)


def information_flow_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    params: FlowParameters | None = None,
    preconditioner: Preconditioner = "ichol",
    hints: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha (H, W) float32 of one image (H, W, 3) in [0, 1] with its canonical trimap (H, W); ``hints``:
    see :func:`known_to_unknown_prior`."""
    known_fg, known_bg = (trimap == FOREGROUND).any(), (trimap == BACKGROUND).any()
    if not (trimap == UNKNOWN).any() or not (known_fg and known_bg):
        return degenerate_alpha(trimap, known_fg, known_bg)
    with _one_blas_thread():
        return _solved(trimap, build_system(image, trimap, params or FlowParameters(), hints), preconditioner)


def _one_blas_thread() -> threadpool_limits:
    # The solve's BLAS calls are the conjugate gradient's dot products of vectors of 30 k to 150 k
    # unknowns, too short to gain from threads; on two cores already busy, OpenBLAS's second thread made
    # each one wait for a time slice (GT02/Trimap1 at load 5: the CG took 0.81 s, 0.19 s with one).
    return threadpool_limits(limits=1, user_api="blas")


def _solved(
    trimap: np.ndarray, system: tuple[sp.csr_matrix, np.ndarray, np.ndarray], preconditioner: Preconditioner
) -> np.ndarray:
    """Alpha (H, W) float32: the trimap's known values, and the solution of ``system`` at its unknowns."""
    matrix, rhs, estimate = system
    alpha = (trimap == FOREGROUND).astype(np.float64).ravel()
    alpha[trimap.ravel() == UNKNOWN] = solve(matrix, rhs, estimate, preconditioner)
    return np.clip(alpha, 0.0, 1.0).reshape(trimap.shape).astype(np.float32)


class WholeImageFlows:
    """One image prepared for window solves (the engine's tiles): the flows whose neighbours may lie
    anywhere in the image are found once over the whole of it, and every window takes its share.

    The intra-U flow links each unknown pixel to its nearest unknown pixels in colour, positions weighing
    1/20 (§3.3), so they lie all over the photo.  A window searched only its own pixels: on alphamatting-dev
    photos at 3x its tiles differed from the whole pass 3-9x more than the image's mean, and with no
    intra-U flow (in both) 15x less (docs/engine.md, "Information flow in windows that keep the whole
    image's far-reaching flows").  Here a window's unknown pixels keep their whole-image intra-U
    neighbours; those outside the window are held fixed, at their K-to-U
    estimate on the engine's first pass over the tiles and at the first pass's alpha on the second (block
    Jacobi: held at the estimate, some tiles stayed 4-5x the image's mean difference, and none did after
    the second pass).  The K-to-U flow is the whole image's too (the nearest known pixels of the whole
    image).  The colour-mixture and local flows reach a few pixels and stay the window's own; windows
    still grow until they hold both known classes, which those flows propagate between (without that
    growth one tile of GT03 Trimap1 stayed 13.7x the image's mean difference after the second pass).
    """

    def __init__(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        params: FlowParameters,
        preconditioner: Preconditioner,
        hints: np.ndarray | None,
    ) -> None:
        self.image, self.trimap = image, trimap
        self.params, self.preconditioner = params, preconditioner
        problem = _Problem(image, trimap)
        self.position = problem.position.reshape(trimap.shape)
        with _one_blas_thread():
            self.estimate, self.confidence = known_to_unknown_prior(problem, params, hints)
            self.affinities = intra_unknown_affinities(problem, params)
        self.degree = np.asarray(self.affinities.sum(axis=1)).ravel()
        # The last pass's alpha and its values at the unknown pixels (see _held).
        self._pass: tuple[np.ndarray, np.ndarray] | None = None

    def solve(self, box: tuple[int, int, int, int], previous: np.ndarray | None = None) -> np.ndarray:
        """Alpha (h, w) float32 of the window ``box`` = (top, bottom, left, right); unknown pixels outside
        it are held at the ``previous`` pass's alpha (H, W), or at their K-to-U estimates on the first."""
        top, bottom, left, right = box
        image, trimap = self.image[top:bottom, left:right], self.trimap[top:bottom, left:right]
        inside = self.position[top:bottom, left:right][trimap == UNKNOWN]  # raster order, as _Problem's
        if inside.size == 0:
            return (trimap == FOREGROUND).astype(np.float32)
        window = self._window(inside, self._held(previous))
        with _one_blas_thread():
            system = build_system(image, trimap, self.params, window=window, frame=self.trimap.shape)
            return _solved(trimap, system, self.preconditioner)

    def _held(self, previous: np.ndarray | None) -> np.ndarray:
        """The values unknown pixels outside a window are held at, one per unknown pixel."""
        if previous is None:
            return self.estimate
        if self._pass is None or self._pass[0] is not previous:  # once per pass, not once per window
            self._pass = previous, previous[self.trimap == UNKNOWN].astype(np.float64)
        return self._pass[1]

    def _window(self, inside: np.ndarray, held: np.ndarray) -> WindowFlows:
        """The whole image's flows for the unknown pixels ``inside`` a window (indices among the unknowns),
        those outside it ``held`` at the given values."""
        rows = self.affinities[inside]
        within = rows[:, inside]
        intra = (sp.diags(self.degree[inside]) - within).tocsr()
        # The pull of the neighbours outside: all neighbours' held values less those inside, which are
        # the window's variables.
        outside = rows @ held - within @ held[inside]
        return WindowFlows(self.estimate[inside], self.confidence[inside], intra, outside)


class InformationFlowMatting(MattingModel):
    """Information-flow matting applied image by image (a sparse solve per image, not a batched network).

    ``edges`` says how the known-unknown-edge trimming of Shahrian et al.
    (:func:`mattekit.trimap.trim_edges`) enters the solve, as the authors' toolbox uses it inside its
    information-flow matting.  ``"hints"`` (the default, by measurement and by eye): the pixels it labels
    stay unknown and their labels become the K-to-U estimate with confidence 1, so the flows can still
    overrule a wrong label.  ``"known"``: they become known pixels (a smaller, faster system, but a wrong
    label is a hard 0 or 1: it cut a visible step into the cheek of ``docs/images/chelsea.png``).
    ``"off"``: no trimming.  Over the 18 alphamatting-dev cases (docs/benchmarks.md) mean SAD / MSE / Grad
    / Conn: hints 4.41 / 0.0061 / 2.06 / 3.88, known 4.40 / 0.0076 / 2.55 / 4.04, off 5.03 / 0.0067 /
    2.19 / 4.26.
    """

    requirements = Requirements(trimap=True)
    # Tiles: two passes of WholeImageFlows (measured in docs/engine.md, "Information flow in windows ...").
    window_passes = 2

    def __init__(
        self,
        params: FlowParameters | None = None,
        preconditioner: Preconditioner = "ichol",
        edges: EdgeUse = "hints",
    ) -> None:
        self.params = params or FlowParameters()
        self.preconditioner = preconditioner
        self.edges = edges

    def bytes_per_pixel(self, unknown: float = 1.0) -> float:
        """Peak memory growth of one solve per image pixel, measured (``python benchmarks/highres.py memory
        --models information-flow --scales 0.5 1 2 3``): 276-347 B at 9.7 % unknown (GT01/Trimap1) and
        1368-1852 B at 48.6 % (GT04/Trimap2), the smaller figures on the larger photos; GT01 at 6000² peaked
        at 10.03 GB in all (about 250 B per pixel besides the engine's 27).  64 B per pixel are the image's
        float64 copies whatever the trimap; the rest grows faster than the unknown share, since the
        colour-mixture product MᵀM couples each unknown pixel with its neighbours' unknown neighbours.  The
        curve follows the largest photos (×3 and 6000²), where the decision between one pass and tiles
        matters: 262 and 1341 B at the two shares, 0.76-0.98 of the figures at ×1 and below."""
        return 64 + 1900 * unknown + 1500 * unknown**2

    def window_solver_bytes_per_pixel(self, unknown: float = 1.0) -> float:
        """Peak growth of building :class:`WholeImageFlows` (its search trees and the whole image's
        features), which keeps less while the tiles run, per image pixel: measured (``python
        benchmarks/highres.py memory --models information-flow --scales 1 2 3``) 106-109 B at 9.7 %
        unknown (GT01/Trimap1) and 324-349 B at 48.6 % (GT04/Trimap2); a line just above both, plus the
        previous pass's alpha (the engine's float32, 4 B per pixel) and its values held at the unknown
        pixels (8 B per unknown pixel)."""
        return 64 + 608 * unknown

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        if trimaps is None:
            raise MattekitError("this solver needs a trimap (--trimap)")
        return np.stack([self._one(image, trimap) for image, trimap in zip(images, trimaps, strict=True)])

    def _one(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        trimap, hints = self._trimmed(image, trimap)
        return information_flow_alpha(image, trimap, self.params, self.preconditioner, hints)

    def window_solver(self, image: np.ndarray, trimap: np.ndarray) -> WindowSolver:
        degenerate = degenerate_windows(trimap)
        if degenerate is not None:
            return degenerate
        trimap, hints = self._trimmed(image, trimap)
        return WholeImageFlows(image, trimap, self.params, self.preconditioner, hints).solve

    def _trimmed(self, image: np.ndarray, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The trimap to solve and the K-to-U hints, as ``edges`` asks."""
        if self.edges == "off":
            return trimap, None
        trimmed = trim_edges(image, trimap)
        return (trimmed, None) if self.edges == "known" else (trimap, trimmed)


def information_flow(**_: object) -> MattingModel:
    import_pymatting()  # now, not mid-batch: a first run compiles its kernels and says so (mattekit.jit)
    return InformationFlowMatting()
