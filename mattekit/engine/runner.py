"""Running a tiled plan: gather tiles in batches, run the model, blend the results into one alpha."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mattekit.engine.context import TileContext
from mattekit.engine.planner import Plan
from mattekit.engine.tiling import Tile, gather
from mattekit.models.base import MattingModel, Requirements

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

    Pixels outside the windows of the tiles that run stay 0 here: every such pixel is known, and the
    caller sets known pixels from the trimap (:func:`mattekit.predictor.finish_alpha`).  Every unknown
    pixel lies in the window of every tile that covers it, and those tiles' weights sum to one there.
    """
    tile_grid = tile_plan.grid
    assert tile_grid is not None, "run_tiled needs a tiled plan"
    requirements = model.requirements
    pool = None
    if model.context is not None and tile_grid.run:
        pool = _context_pool(model, image, trimap, tile_grid.run)
    alpha = np.zeros(image.shape[:2], dtype=np.float32)
    done = 0
    for chunk in _batches(tile_grid.run, tile_plan.batch):
        images, trimaps = _gather(image, trimap, chunk, requirements)
        if pool is None:
            raw = model.infer(images, trimaps)
        else:
            context = TileContext(pool.images, pool.trimaps, pool.boxes, _boxes(chunk))
            raw = model.infer_context(images, trimaps, context)
        for tile, tile_alpha in zip(chunk, raw, strict=True):
            top, bottom, left, right = tile.window
            pad_top, _, pad_left, _ = requirements.padding(bottom - top, right - left)
            window = tile_alpha[pad_top : pad_top + bottom - top, pad_left : pad_left + right - left]
            alpha[top:bottom, left:right] += tile_grid.weights(tile, tile.window) * window
        done += len(chunk)
        if progress is not None:
            progress(done, len(tile_grid.run))
    return alpha


def _batches(tiles: Sequence[Tile], batch: int) -> list[list[Tile]]:
    """Batches of at most ``batch`` tiles whose windows have the same size (so they stack)."""
    by_size: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        top, bottom, left, right = tile.window
        by_size.setdefault((bottom - top, right - left), []).append(tile)
    return [group[i : i + batch] for group in by_size.values() for i in range(0, len(group), batch)]


def _boxes(tiles: Sequence[Tile]) -> np.ndarray:
    return np.array([t.window for t in tiles], dtype=np.int64).reshape(-1, 4)


def _context_pool(
    model: MattingModel, image: np.ndarray, trimap: np.ndarray | None, tiles: Sequence[Tile]
) -> TileContext:
    """Candidate context patches for a model that asks for them: the tiles that run, evenly thinned to
    the model's pool size (HDMatt caps its candidate pool, "Context Patch Sampling")."""
    assert model.context is not None
    if len(tiles) > model.context.pool:
        picks = np.linspace(0, len(tiles) - 1, model.context.pool).round().astype(int)
        tiles = tuple(tiles[i] for i in picks)
    images, trimaps = _gather(image, trimap, tiles, model.requirements)
    return TileContext(images, trimaps, _boxes(tiles), _boxes(()))


def _gather(
    image: np.ndarray, trimap: np.ndarray | None, tiles: Sequence[Tile], requirements: Requirements
) -> tuple[np.ndarray, np.ndarray | None]:
    """The padded windows of ``tiles`` stacked into a batch of images and trimaps."""
    images = np.stack([gather(image, tile.window, requirements) for tile in tiles])
    if trimap is None:
        return images, None
    return images, np.stack([gather(trimap, tile.window, requirements) for tile in tiles])
