"""Running a tiled plan: gather tiles in batches, run the model, blend the results into one alpha."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mattekit.engine.context import TileContext
from mattekit.engine.planner import Plan
from mattekit.engine.tiling import Tile, gather
from mattekit.models.base import MattingModel
from mattekit.predictor import padding

#: Called after each batch with (tiles done, tiles to run).
Progress = Callable[[int, int], None]


def run_tiled(
    model: MattingModel,
    image: np.ndarray,
    trimap: np.ndarray | None,
    tile_plan: Plan,
    progress: Progress | None = None,
) -> np.ndarray:
    """Raw stitched alpha (H, W) float32 of ``image`` under a tiled plan.

    Pixels of skipped tiles stay 0 here: every such pixel is known, and the caller sets known pixels
    from the trimap (:func:`mattekit.predictor.finish_alpha`).  Every unknown pixel lies only in tiles that
    run, whose blending weights sum to one there.
    """
    tile_grid = tile_plan.grid
    assert tile_grid is not None, "run_tiled needs a tiled plan"
    requirements = model.requirements
    tiles = tile_grid.run
    pool = None if model.context is None or not tiles else _context_pool(model, image, trimap, tiles)
    alpha = np.zeros(image.shape[:2], dtype=np.float32)
    for first in range(0, len(tiles), tile_plan.batch):
        chunk = tiles[first : first + tile_plan.batch]
        images = np.stack([gather(image, tile, requirements) for tile in chunk])
        trimaps = None if trimap is None else np.stack([gather(trimap, tile, requirements) for tile in chunk])
        if pool is None:
            raw = model.infer(images, trimaps)
        else:
            context = TileContext(pool.images, pool.trimaps, pool.boxes, _boxes(chunk))
            raw = model.infer_context(images, trimaps, context)
        for tile, tile_alpha in zip(chunk, raw, strict=True):
            height, width = tile.bottom - tile.top, tile.right - tile.left
            top, _, left, _ = padding(requirements, height, width)
            core = tile_alpha[top : top + height, left : left + width]
            alpha[tile.top : tile.bottom, tile.left : tile.right] += tile_grid.weights(tile) * core
        if progress is not None:
            progress(first + len(chunk), len(tiles))
    return alpha


def _boxes(tiles: Sequence[Tile]) -> np.ndarray:
    return np.array([(t.top, t.bottom, t.left, t.right) for t in tiles], dtype=np.int64).reshape(-1, 4)


def _context_pool(
    model: MattingModel, image: np.ndarray, trimap: np.ndarray | None, tiles: Sequence[Tile]
) -> TileContext:
    """Candidate context patches for a model that asks for them: the tiles that run, evenly thinned to
    the model's pool size (HDMatt caps its candidate pool, "Context Patch Sampling")."""
    assert model.context is not None
    if len(tiles) > model.context.pool:
        picks = np.linspace(0, len(tiles) - 1, model.context.pool).round().astype(int)
        tiles = tuple(tiles[i] for i in picks)
    requirements = model.requirements
    images = np.stack([gather(image, tile, requirements) for tile in tiles])
    trimaps = None if trimap is None else np.stack([gather(trimap, tile, requirements) for tile in tiles])
    return TileContext(images, trimaps, _boxes(tiles), _boxes(()))
