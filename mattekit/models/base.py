"""What every matting model declares and implements, whatever its family (classical solver or network)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from mattekit.engine.context import ContextRequest, TileContext

#: A window solver (:meth:`MattingModel.window_solver`): (window box, previous pass's alpha or None) -> alpha.
WindowSolver = Callable[[tuple[int, int, int, int], "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Requirements:
    """What a model needs from its input; the predictor and the tiling engine honour it.

    - ``trimap``: a trimap is required (trimap-free models may still accept one to fix known regions).
    - ``coarse_mask``: a rough binary mask is required (TGN).
    - ``weights``: a checkpoint is required (classical solvers need none).
    - ``pad_multiple``: the network input must be a multiple of this in height and width.
    - ``pad_border``: reflect-pad this many pixels on every side before rounding up to ``pad_multiple``
      (the official GCA / HOP demo pads 32).
    - ``min_size``: the padded input must be at least this tall and wide (HOP's global block).
    """

    trimap: bool = True
    coarse_mask: bool = False
    weights: bool = False
    pad_multiple: int = 1
    pad_border: int = 0
    min_size: int = 1

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) reflection padding for an input of this size.

        ``pad_border`` on every side, then the bottom and right grow to a multiple of ``pad_multiple`` and
        to at least ``min_size`` (the layout of the official GCA / HOP demo code).
        """
        border, multiple = self.pad_border, self.pad_multiple

        def after(size: int) -> int:
            padded = size + 2 * border + (-(size + 2 * border)) % multiple
            if padded < self.min_size:
                padded += -(-(self.min_size - padded) // multiple) * multiple
            return padded - size - border

        return border, after(height), border, after(width)


class MattingModel(ABC):
    """A model that turns images and trimaps into alpha mattes.

    Inputs and outputs are batches of numpy arrays in mattekit's conventions: ``images`` float32
    (B, H, W, 3) RGB in [0, 1]; ``trimaps`` uint8 (B, H, W) with values 0/128/255 (or None for a
    trimap-free model run without one); the result is float32 (B, H, W) in [0, 1], or a little past it
    for models that set ``held_ring`` (their raw solution, see there).  The caller has already padded
    the inputs as ``requirements`` asks, overwrites known regions and clips afterwards, so ``infer``
    returns the model's raw output.
    """

    requirements: ClassVar[Requirements] = Requirements()

    @abstractmethod
    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        """Raw alpha (B, H, W) for a batch of padded images and trimaps."""

    # --- What the high-resolution engine (mattekit.engine) asks of a model; defaults suit most. ---

    #: Where ``infer`` runs ("cpu", "cuda", "cuda:1"): the engine budgets GPU memory on a GPU, RAM on the CPU.
    device: str = "cpu"

    #: Set by models that matt each tile together with patches from elsewhere in the image (HDMatt's
    #: cross-patch context); the engine then always tiles and calls :meth:`infer_context`.
    context: ClassVar[ContextRequest | None] = None

    #: Whether a tile's window grows until it holds known foreground and background (docs/engine.md,
    #: "Context").  Solvers need it: without both known classes they propagate or sample one value only.
    #: Networks do not take that shortcut and were trained on crops; theirs stay the unknown box plus the
    #: overlap, as their global attention makes every extra pixel cost quadratically.
    grow_context: ClassVar[bool] = True

    #: Whether :meth:`window_solver` solves windows with the whole image at hand; their windows are then
    #: the unknown box plus the overlap, which needs to cover only what the model looks at around a pixel.
    whole_image_windows: ClassVar[bool] = False
    #: How many times the engine solves every window, each pass after the first given the previous pass's
    #: stitched alpha (block Jacobi: what a window holds fixed outside it gets better): with
    #: :meth:`window_solver`, or with :meth:`infer_held` for models that set ``held_ring``.
    window_passes: int = 1
    #: For solvers with local affinities: the width of the ring of pixels around a window that the passes
    #: after the first hold at the previous pass's alpha (:meth:`infer_held`), at least how far the
    #: model's affinities reach, so that the window's rows are those of the whole image's system.
    #: Such models return their solution unclipped from :meth:`infer` and :meth:`infer_held`: where it
    #: overshoots [0, 1], the whole image's system couples a window to the overshooting values, and a
    #: ring held at clipped ones moved a closed-form tile by up to 13/255 (docs/engine.md, "Held rings").
    #: 0: the model has no such passes.
    held_ring: int = 0

    def bytes_per_pixel(self, unknown: float = 1.0) -> float:
        """Peak bytes per input pixel of one ``infer`` call, when that grows linearly with the area.

        ``unknown`` is the share of the input's pixels that the trimap marks unknown (1.0 when there is
        no trimap).  This default is above what every weight-free solver was measured to need
        (docs/engine.md); every model of the zoo overrides it with its own measured figure.
        """
        return 4096.0

    def estimate_memory(self, height: int, width: int, batch: int = 1, unknown: float = 1.0) -> int:
        """Peak bytes one ``infer`` call takes on a padded batch of ``batch`` x ``height`` x ``width``
        whose trimaps mark the share ``unknown`` of the pixels unknown (the largest share in the batch).

        Override this instead of :meth:`bytes_per_pixel` when the cost is not linear in the area (global
        attention grows with its square).
        """
        return round(batch * height * width * self.bytes_per_pixel(unknown))

    def window_solver(self, image: np.ndarray, trimap: np.ndarray) -> WindowSolver | None:
        """A function that mattes any window ``(top, bottom, left, right)`` of this ``image`` (H, W, 3) and
        ``trimap`` (H, W) with the whole of them at hand, given the previous pass's stitched alpha of the
        whole image (None on the first, see ``window_passes``), returning the window's raw alpha; or None
        (the default), and the engine cuts windows out for :meth:`infer_window`.

        For models without padding whose context reaches across the image in a way that a window cannot
        hold but that is cheap to look up in the whole image: shared sampling casts its rays from a
        window's pixels across the whole photo.  The engine then neither guides windows short of context
        nor takes the coarse alpha for them: the model has all the context the whole-image pass has.
        """
        return None

    def window_solver_bytes_per_pixel(self, unknown: float = 1.0) -> float:
        """Peak bytes per image pixel that :meth:`window_solver` takes of the whole image besides the
        engine's own arrays, while it is built and while the tiles run (the planner counts them when it
        tiles); ``unknown`` is the image's unknown share, as for :meth:`bytes_per_pixel`."""
        return 0.0

    def infer_held(self, image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Raw alpha (H, W) of one unpadded ``image`` (H, W, 3) whose ``known`` pixels (H, W) bool are held
        at ``value`` (H, W), fractional ones included (and, unclipped, a little past [0, 1]): the engine
        holds a window's surrounding ring at the previous pass's alpha this way (``held_ring``)."""
        raise NotImplementedError(f"{type(self).__name__} sets `held_ring` but not infer_held")

    def infer_context(
        self, images: np.ndarray, trimaps: np.ndarray | None, context: TileContext
    ) -> np.ndarray:
        """Raw alpha for a batch of tiles, given the candidate patches ``context`` asked for."""
        raise NotImplementedError(f"{type(self).__name__} sets `context` but not infer_context")


class TrimapModel(ABC):
    """A model that turns images and coarse foreground masks into trimaps (TGN, SPAMattNet §III-A).

    ``images`` float32 (B, H, W, 3) RGB in [0, 1] and ``masks`` float32 (B, H, W) in [0, 1], already
    padded as ``requirements`` asks; the result is float32 (B, 3, H, W): the probabilities of
    background, unknown and foreground at every pixel.
    """

    requirements: ClassVar[Requirements] = Requirements(trimap=False, coarse_mask=True, weights=True)

    #: Where ``probabilities`` runs ("cpu", "cuda", "cuda:1").
    device: str = "cpu"

    @abstractmethod
    def probabilities(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Class probabilities (B, 3, H, W) for a batch of padded images and coarse masks."""
