"""KNN matting (Chen, Li & Tang, "KNN Matting", TPAMI 2013), weight-free, with pymatting's settings.

Each pixel is linked to its nearest neighbours in the feature space [r, g, b, w·x̃, w·ỹ] (x̃, ỹ the pixel
position divided by the image's width and height less one) in two searches, pymatting's ``knn_laplacian``
defaults: 20 neighbours with w = 2, then 10 with w = 0.1, each link of weight 1 (pymatting's binary
kernel).  S = W + Wᵀ, D its row sums; the alpha minimises the energy of L = I − D⁻¹S, which
``estimate_alpha_knn`` solves with the known pixels held by a penalty, (L + λC) α = λ C m, λ = 100.

Here the known pixels are eliminated instead (the penalty's λ → ∞ limit, as information flow and
learning-based do): rows of the unknown pixels only, scaled by D, (D − S)_UU α_U = S_UK α_K.  That system
is symmetric positive definite, where pymatting runs conjugate gradient on the non-symmetric L + λC, and
it spans the unknown pixels only, so the neighbour graph is kept for them alone, built from searches over
the whole image in chunks.  Measured on the 18 alphamatting-dev cases (docs/engine.md, "KNN matting in
one system"): no alpha more than 0.007 from pymatting's, total SAD 108.79 both ways, 2-4x faster; at 3x
(GT01 Trimap1) a peak of 1.00 GB in 21.7 s instead of 13.12 GB in 80.8 s.

Its second search weighs position 0.1 against colour, so neighbours come from anywhere in the image: a
window cut out of it loses them (one tile 7.35x the image's mean difference on GT01 at 3x, with a quarter
of the image in every window).  Tiles therefore read their part of one whole-image solve
(:meth:`KnnMatting.window_solver`); they cost what one pass costs, which ``--tile auto`` runs whenever it
fits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from mattekit.jit import import_pymatting
from mattekit.models.base import WindowSolver
from mattekit.models.classical import ClassicalSolver

#: pymatting's KNN matting settings (``knn_laplacian``'s defaults): (neighbours, position weight) of each
#: search.
KNN_NEIGHBORS = ((20, 2.0), (10, 0.1))
#: The neighbours of a sixteenth of the image are searched at once, of at most this many pixels: the
#: search's (chunk, k) arrays then take about 40 bytes per image pixel, and 100 MB at most.
SEARCH_CHUNK = 1 << 18
#: Peak memory growth of one pass, (bytes per pixel, bytes more per unknown share): see KnnMatting.
KNN_MEMORY = (60.0, 1600.0)


class KnnSystem:
    """The system (D − S)_UU α_U = S_UK α_K of one image, built from boolean masks (H, W) of its known and
    known-foreground pixels."""

    def __init__(self, image: np.ndarray, known: np.ndarray, foreground: np.ndarray) -> None:
        self.known, self.foreground = known, foreground
        unknown = ~known.ravel()
        self.unknown_pixels = np.flatnonzero(unknown)
        # Index of each pixel among the unknown ones (-1 for known pixels).
        index = np.full(known.size, -1, dtype=np.int64)
        index[self.unknown_pixels] = np.arange(self.unknown_pixels.size)
        value = foreground.ravel().astype(np.float64)
        rows, cols = [], []
        pull, degree = np.zeros(self.unknown_pixels.size), np.zeros(self.unknown_pixels.size)
        for p, q in _links(image):
            # Each link p -> q is an entry of W at (p, q) and of Wᵀ at (q, p): the rows of unknown pixels
            # take it, among the unknowns (S_UU) or towards a known value (S_UK α_K).
            for row, col in ((p, q), (q, p)):
                mine = unknown[row]
                row, col = row[mine], col[mine]
                degree += np.bincount(index[row], minlength=degree.size)
                among = unknown[col]
                rows.append(index[row[among]].astype(np.int32))
                cols.append(index[col[among]].astype(np.int32))
                pull += np.bincount(index[row[~among]], weights=value[col[~among]], minlength=pull.size)
        self.rhs = pull
        row, col = np.concatenate(rows), np.concatenate(cols)
        del rows, cols
        # D − S_UU; float32 holds its small integer counts exactly.
        links = sp.csr_matrix((np.full(row.size, -1.0, dtype=np.float32), (row, col)), (degree.size,) * 2)
        self.matrix = (links + sp.diags(degree.astype(np.float32))).tocsr()

    def alpha(self) -> np.ndarray:
        """Alpha (H, W) of the whole image: conjugate gradient, Jacobi-preconditioned, as pymatting solves
        its KNN system (relative residual 1e-7)."""
        pymatting = import_pymatting()
        solution = pymatting.cg(self.matrix, self.rhs, M=pymatting.jacobi(self.matrix))
        alpha = self.foreground.astype(np.float64).ravel()
        alpha[self.unknown_pixels] = solution
        return alpha.reshape(self.known.shape)


def _links(image: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pixel's links to its nearest neighbours in each search, as (from, to) flat pixel indices,
    chunk by chunk (a pixel is its own nearest neighbour, as in pymatting)."""
    from pymatting.util.kdtree import KDTree  # with pymatting, already imported by the caller's model

    height, width = image.shape[:2]
    pixels = height * width
    for count, position in KNN_NEIGHBORS:
        features = np.empty((pixels, 5), dtype=np.float32)
        features[:, :3] = image.reshape(-1, 3)
        features[:, 3] = np.tile(position * np.arange(width) / max(width - 1, 1), height)
        features[:, 4] = np.repeat(position * np.arange(height) / max(height - 1, 1), width)
        tree = KDTree(features)
        chunk = min(SEARCH_CHUNK, -(-pixels // 16))
        for start in range(0, pixels, chunk):
            stop = min(start + chunk, pixels)
            _, neighbors = tree.query(features[start:stop], count)
            yield np.repeat(np.arange(start, stop), count), neighbors.ravel()
        del tree, features


def knn_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Alpha (H, W) of an image (H, W, 3) in [0, 1] with a trimap (H, W) in pymatting's [0, 1] form."""
    is_foreground, _, is_known, _ = import_pymatting().trimap_split(trimap, flatten=False)
    return KnnSystem(image, is_known, is_foreground).alpha()


class KnnMatting(ClassicalSolver):
    """KNN matting image by image; the windows of a tiled image read the whole image's solve."""

    whole_image_windows = True

    def __init__(self) -> None:
        # Measured peak growth (``python benchmarks/highres.py memory --models knn --scales 0.25 1 2 3``):
        # 209-215 B/px at 9.7 % unknown, 731-827 at 48.6 %: the search's features and tree (about 60 B/px)
        # and the unknown pixels' links.
        super().__init__(knn_alpha, KNN_MEMORY)

    def window_solver_bytes_per_pixel(self, unknown: float = 1.0) -> float:
        # Building the system is the peak, as in one pass (measured 198-205 and 778-841 B/px), and the
        # solved alpha (float32) stays while the tiles run.
        return KNN_MEMORY[0] + 4 + unknown * KNN_MEMORY[1]

    def window_solver(self, image: np.ndarray, trimap: np.ndarray) -> WindowSolver:
        # A window's rows couple to neighbours anywhere in the image, so its share of the system is all of
        # it: the tiles read one whole-image solve (docs/engine.md, "KNN matting in one system").
        alpha = self._infer_one(image, trimap)
        return lambda box, _: alpha[box[0] : box[1], box[2] : box[3]]


def knn(**_: object) -> KnnMatting:
    import_pymatting()  # now, not mid-batch: a first run compiles its kernels and says so (mattekit.jit)
    return KnnMatting()
