"""Weight-free matting solvers from pymatting (the field's maintained implementations).

Each solver propagates the known alpha of the trimap into the unknown region through an image-dependent
affinity; none needs weights, so they are what ``mattekit predict`` runs offline on a fresh machine.
pymatting (and numba under it) takes seconds to import, and compiles its kernels on a first run, so it is
imported when a solver is first built, not when the registry is listed (see :mod:`mattekit.jit`).
Degenerate trimaps get an answer rather than a crash: with only background known the unknown region is 0,
with only foreground known it is 1 (for the propagation solvers that is the exact minimum of their energy;
sampling finds nothing else to sample).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np

from mattekit.errors import MattekitError
from mattekit.jit import import_pymatting
from mattekit.models.base import MattingModel, Requirements, WindowSolver
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN

Solver = Callable[..., np.ndarray]

_CLASSICAL = Requirements(trimap=True)


class ClassicalSolver(MattingModel):
    """A pymatting solver applied image by image (they are sparse solves, not batched networks).

    ``memory`` is its measured peak memory growth per input pixel, ``(bytes, bytes more per unknown
    share)``: an image with the share ``u`` of its pixels unknown takes ``memory[0] + u * memory[1]``
    bytes per pixel (``python benchmarks/highres.py memory``, docs/engine.md).  Until a solver is
    measured, the default is more than any was measured to take.
    """

    requirements = _CLASSICAL

    def __init__(
        self,
        solve: Solver,
        memory: tuple[float, float] = (4096.0, 0.0),
        held: tuple[Solver, int] | None = None,
    ) -> None:
        import_pymatting()  # when the solver is built, as the module says, not inside its first solve
        self._solve = solve
        self._memory = memory
        # Local affinities: a second pass of tiles holds each window's surrounding ring at the first
        # pass's alpha (docs/engine.md, "Held rings"); ``held`` is (the solver's system with fractional
        # known values, how far its affinities reach).
        self._held = None if held is None else held[0]
        self.held_ring = 0 if held is None else held[1]
        self.window_passes = 1 if held is None else 2

    def bytes_per_pixel(self, unknown: float = 1.0) -> float:
        return self._memory[0] + unknown * self._memory[1]

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        if trimaps is None:
            raise MattekitError("this solver needs a trimap (--trimap)")
        pairs = zip(images, trimaps, strict=True)
        return np.stack([self._infer_one(image, trimap) for image, trimap in pairs])

    def _infer_one(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        known_fg, known_bg = (trimap == FOREGROUND).any(), (trimap == BACKGROUND).any()
        if not (trimap == UNKNOWN).any() or not (known_fg and known_bg):
            return degenerate_alpha(trimap, known_fg, known_bg)
        # pymatting reads 0 as background, 1 as foreground, anything between as unknown.
        return self._solved(self._solve, image.astype(np.float64), trimap.astype(np.float64) / 255.0)

    def infer_held(self, image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
        assert self._held is not None, "only solvers given a held system set held_ring"
        return self._solved(self._held, image.astype(np.float64), known, value.astype(np.float64))

    def _solved(self, solve: Solver, image: np.ndarray, *args: np.ndarray) -> np.ndarray:
        """``solve(image, *args)`` as float32, clipped to [0, 1] unless the solver holds rings (they
        read each other's unclipped values, ``MattingModel.held_ring``), quietly, with its failures in
        one line.

        pymatting's incomplete Cholesky preconditioner print()s a "PERFORMANCE WARNING" when it falls back
        to a slower path (often on tiles); that is a note for pymatting's developers, and it would break
        up the CLI's progress bar and anyone's stdout pipe, so it is dropped.  A solver that cannot work on
        an input (too few pixels for its window or neighbours, no convergence) raises whatever pymatting
        raises, even a bare AssertionError: that is the input's problem, said in one line.  Its numpy
        warnings are silenced: a non-finite result is an error later anyway.
        """
        try:
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                alpha = solve(image, *args)
        except MemoryError:
            raise
        except Exception as err:
            height, width = image.shape[:2]
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            name = getattr(solve, "__name__", "the solver")
            raise MattekitError(f"{name} cannot matte this {width}x{height} input: {detail}") from None
        alpha = alpha.reshape(image.shape[:2]).astype(np.float32)
        return alpha if self._held is not None else np.clip(alpha, 0.0, 1.0)


def degenerate_alpha(trimap: np.ndarray, known_fg: bool, known_bg: bool) -> np.ndarray:
    """Alpha for trimaps without an unknown region, or missing one of the known classes."""
    if not known_fg and not known_bg:
        raise MattekitError("the trimap marks no pixel as foreground or background; nothing to propagate")
    alpha = (trimap == FOREGROUND).astype(np.float32)
    unknown = trimap == UNKNOWN
    alpha[unknown] = 1.0 if known_fg else 0.0
    return alpha


def degenerate_windows(trimap: np.ndarray) -> WindowSolver | None:
    """For a whole image without unknown pixels or without one of the known classes, a window solver that
    gives every window :func:`degenerate_alpha`; None for any other image."""
    known_fg, known_bg = bool((trimap == FOREGROUND).any()), bool((trimap == BACKGROUND).any())
    if known_fg and known_bg and (trimap == UNKNOWN).any():
        return None
    return lambda box, _: degenerate_alpha(trimap[box[0] : box[1], box[2] : box[3]], known_fg, known_bg)


# The factories the registry names (mattekit/models/__init__.py declares each with its paper).


# Each solver's own linear system with known pixels held at fractional values (``ClassicalSolver``'s
# ``held``): the same Laplacian and preconditioner as pymatting's estimate_alpha_*.

#: pymatting's ``make_linear_system`` weight of a known pixel's constraint.
CONSTRAINT_WEIGHT = 100.0


def _eliminated(laplacian: Callable[[np.ndarray, np.ndarray], Any]) -> Solver:
    """A solver on a sparse Laplacian with the known pixels eliminated: L_UU x_U = -L_UK value_K, solved as
    ``estimate_alpha_cf`` solves it (conjugate gradient, incomplete Cholesky).

    The solvers built on ``make_linear_system`` hold known pixels by a penalty instead, which moved them
    by 3e-4 at most (tests/test_highres.py), but which held a window's ring badly: learning-based on GT07
    Trimap1 at 3x, one window's ring held at the converged whole-image alpha left it 11/255 off on average
    with the penalty and 0.04/255 eliminated."""

    def held(image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
        pymatting = import_pymatting()
        matrix = laplacian(image, known).tocsr()  # a scipy sparse matrix
        is_known = known.ravel()
        alpha = value.ravel().copy()
        unknown_rows = matrix[~is_known]
        system = unknown_rows[:, ~is_known]
        rhs = -unknown_rows[:, is_known].dot(alpha[is_known])
        # Started at ``value`` (the previous pass's alpha in a held window, 0 in a whole pass as in
        # pymatting): the stopping rule is relative to the right-hand side, so the start changes only
        # how many steps it takes.
        alpha[~is_known] = pymatting.cg(system, rhs, x0=alpha[~is_known], M=pymatting.ichol(system))
        return alpha

    return held


closed_form_held = _eliminated(lambda image, known: import_pymatting().cf_laplacian(image, is_known=known))
learning_based_held = _eliminated(lambda image, _: import_pymatting().lbdm_laplacian(image))


def _on_trimap(held: Solver, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """``held`` with the known pixels of a pymatting trimap (0 background, 1 foreground, anything between
    unknown) held at 0 and 1."""
    is_foreground, _, is_known, _ = import_pymatting().trimap_split(trimap, flatten=False)
    return held(image, is_known, is_foreground.astype(np.float64))


def closed_form_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Closed-form matting (Levin et al., TPAMI 2008): ``estimate_alpha_cf``'s system and solver, its
    solution unclipped (``MattingModel.held_ring``)."""
    return _on_trimap(closed_form_held, image, trimap)


def learning_based_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Learning-based digital matting (Zheng & Kambhamettu, ICCV 2009) on pymatting's Laplacian, with the
    known pixels eliminated rather than held by pymatting's penalty: its conjugate gradient stops at a
    residual relative to a right-hand side that the penalty fills with the known pixels, so the unknown
    ones were left unconverged (GT07 Trimap1 at 3x: 7.69 SAD from the converged alpha, one pixel 254/255
    off; eliminated, tiles and whole agree with it, docs/engine.md "Held rings")."""
    return _on_trimap(learning_based_held, image, trimap)


def _penalised(
    apply_laplacian: Callable[[np.ndarray], np.ndarray], diagonal: np.ndarray, known: np.ndarray,
    value: np.ndarray, rtol: float = 1e-7,
) -> np.ndarray:
    """pymatting's ``make_linear_system`` form, (L + λC) x = λ C value, solved as its random-walk and
    large-kernel solvers solve it: conjugate gradient, Jacobi-preconditioned, to pymatting's relative
    residual unless ``rtol`` says otherwise.  Past pymatting's 10,000 iterations it keeps the last
    iterate rather than fail (pymatting raises)."""
    from scipy.sparse.linalg import LinearOperator, cg

    weight = CONSTRAINT_WEIGHT * known.ravel()
    inverse = 1.0 / (diagonal + weight)
    size = inverse.size
    system = LinearOperator((size, size), matvec=lambda x: apply_laplacian(x) + weight * x, dtype=np.float64)
    jacobi = LinearOperator((size, size), matvec=lambda x: inverse * x, dtype=np.float64)
    # Started at ``value``, as the eliminated form is (``_eliminated``).
    solution, info = cg(system, weight * value.ravel(), x0=value.ravel(), rtol=rtol, maxiter=10_000, M=jacobi)
    if info < 0:
        raise MattekitError(f"the conjugate gradient broke down (code {info})")
    return solution


#: Random walk's relative residual.  pymatting's 1e-7 leaves the pixels that its weights
#: exp(-|dI|^2 / sigma^2) nearly cut off from every neighbour unconverged, so the whole pass depended on
#: where the solver stopped, and tiles (smaller systems, nearer convergence) disagreed with it: at 3x,
#: GT06 Trimap1's whole pass was 1.99 (SAD, thousands) from the converged answer, one pixel 21.5/255
#: off, its tiles 0.70 (docs/engine.md "Random walk, converged").
RANDOM_WALK_RTOL = 1e-10


def random_walk_held(image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``estimate_alpha_rw``'s system in its penalty form (the eliminated form's incomplete Cholesky
    factor fails, docs/engine.md "Held rings"), solved to ``RANDOM_WALK_RTOL``."""
    laplacian = import_pymatting().rw_laplacian(image).tocsr()
    return _penalised(laplacian.dot, laplacian.diagonal(), known, value, rtol=RANDOM_WALK_RTOL)


def random_walk_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Random walks for interactive alpha-matting (Grady et al., VIIP 2005) as pymatting's
    ``estimate_alpha_rw`` builds it, solved to convergence (``RANDOM_WALK_RTOL``)."""
    return _on_trimap(random_walk_held, image, trimap)


def large_kernel_held(image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``estimate_alpha_lkm``'s system in its penalty form, L applied matrix-free: large kernel's known
    pixels move by up to 0.10 under it and the whole pass has them so (measured: its held ring then
    matches the whole pass, docs/engine.md "Held rings")."""
    apply_laplacian, diagonal = import_pymatting().lkm_laplacian(image)
    return _penalised(apply_laplacian, diagonal, known, value)


def large_kernel_alpha(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Fast matting using large kernel matting Laplacian matrices (He et al., CVPR 2010):
    ``estimate_alpha_lkm``'s system and solver, its solution unclipped (``MattingModel.held_ring``)."""
    return _on_trimap(large_kernel_held, image, trimap)


def closed_form(**_: object) -> MattingModel:
    # Measured peak growth: 529 B/px at 9.7 % unknown, 1407 at 49 % (the Laplacian is built only over
    # windows that touch an unknown pixel, and its incomplete Cholesky factor covers the unknown pixels).
    # Its 3x3 windows couple pixels up to 2 px apart.
    return ClassicalSolver(closed_form_alpha, (350, 2200), held=(closed_form_held, 2))


def large_kernel(**_: object) -> MattingModel:
    # Its kernel of radius 10 couples pixels up to 20 px apart.
    return ClassicalSolver(large_kernel_alpha, (480, 0), held=(large_kernel_held, 20))


def random_walk(**_: object) -> MattingModel:
    # Measured peak growth: a Laplacian of every pixel: 571 B/px at 9.7 % unknown, 573 at 49 %.
    # Its weights link each pixel with its 8 neighbours.
    return ClassicalSolver(random_walk_alpha, (600, 0), held=(random_walk_held, 1))


def learning_based(**_: object) -> MattingModel:
    # Measured peak growth: a Laplacian of every pixel: 2591 B/px at 9.7 % unknown, 2609 at 49 %.
    # Its 3x3 windows couple pixels up to 2 px apart.
    return ClassicalSolver(learning_based_alpha, (2650, 0), held=(learning_based_held, 2))


def shared_sampling(**_: object) -> MattingModel:
    from mattekit.models.shared_sampling import SharedSampling

    return SharedSampling()
