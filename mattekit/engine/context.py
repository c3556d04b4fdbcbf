"""Cross-patch context: how a model asks the engine for patches from elsewhere in the image.

HDMatt ("Context Patch Sampling", "Cross-Patch Contextual Module") matts each query patch together with the
K patches of the same image most similar to it.  Choosing those K needs the model's own learned embeddings
(Eq. 1-2), so the split of work is: the engine gathers a pool of at most ``pool`` candidate patches (the
paper caps the pool at N = 30 for ultra-high-resolution images) and hands it, with the position of every
query tile, to :meth:`MattingModel.infer_context`; the model ranks the pool and keeps its top K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContextRequest:
    """What a model declares (``MattingModel.context``) to be run tile by tile with a context pool.

    ``pool`` caps the number of candidate patches (HDMatt's N).  Candidates are tiles of the running plan
    that contain unknown pixels, spread evenly over the image when there are more than ``pool``.
    ``tile_size`` and ``overlap`` are the patch size the model was trained for and the overlap it blends
    with; the engine tiles with them unless the user sets others, and never shrinks the tile to save
    memory (only the batch).
    """

    pool: int = 30
    tile_size: int = 320
    overlap: int = 64


@dataclass(frozen=True)
class TileContext:
    """The candidate pool passed with one batch of query tiles.

    ``images`` (N, h, w, 3) float32 and ``trimaps`` (N, h, w) uint8 are padded exactly like the query
    tiles (``trimaps`` is None for a model run without one); ``boxes`` (N, 4) and ``query_boxes`` (B, 4)
    hold ``(top, bottom, left, right)`` of each tile's core in image coordinates, so that a model can tell
    a query tile's own patch from the others.
    """

    images: np.ndarray
    trimaps: np.ndarray | None
    boxes: np.ndarray
    query_boxes: np.ndarray
