"""Running a plan: one whole-image pass, or tiles gathered in batches and blended into one alpha."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mattekit.engine.context import TileContext
from mattekit.engine.planner import Plan
from mattekit.engine.tiling import Box, Tile, TileGrid, gather
from mattekit.models.base import MattingModel, Requirements, WindowSolver
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN

#: Called after each batch with (tiles done, tiles to run).
Progress = Callable[[int, int], None]

#: In the window of a tile short of context, unknown pixels outside its focus whose coarse alpha is this
#: close to 0 or 1 are given to the model as known background or foreground.
GUIDE_CONFIDENCE = 0.02
#: The coarse guide runs at this scale of the image at most (less when one window cannot hold that).
GUIDE_SCALE = 0.5


def run_whole(model: MattingModel, image: np.ndarray, trimap: np.ndarray | None) -> np.ndarray:
    """Raw alpha (H, W) of one whole-image pass: pad as the model asks, infer, crop."""
    height, width = image.shape[:2]
    top, bottom, left, right = model.requirements.padding(height, width)
    if top or bottom or left or right:
        image = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
        if trimap is not None:
            trimap = np.pad(trimap, ((top, bottom), (left, right)), mode="reflect")
    alpha = model.infer(image[None], None if trimap is None else trimap[None])[0]
    return alpha[top : top + height, left : left + width]


def run_tiled(
    model: MattingModel,
    image: np.ndarray,
    trimap: np.ndarray | None,
    tile_plan: Plan,
    progress: Progress | None = None,
) -> np.ndarray:
    """Raw stitched alpha (H, W) float32 of ``image`` under a tiled plan.

    Pixels outside the focus boxes of the tiles that run stay 0 here: every such pixel is known, and the
    caller sets known pixels from the trimap (:func:`mattekit.predictor.finish_alpha`).  Every unknown
    pixel lies in the focus of every tile that covers it, and those tiles' weights sum to one there.
    """
    tile_grid = tile_plan.grid
    assert tile_grid is not None, "run_tiled needs a tiled plan"
    requirements = model.requirements
    pool = None
    if model.context is not None and tile_grid.run:
        pool = _context_pool(model, image, trimap, tile_grid.run)
    alpha = np.zeros(image.shape[:2], dtype=np.float32)
    solver = None
    if trimap is not None and pool is None:
        solver = model.window_solver(image, trimap)
        assert solver is None or not any(requirements.padding(1, 1)), "window solvers take unpadded windows"
    if solver is not None:  # the model sees the whole image: nothing to gather, guide or pad
        return _solve_windows(solver, tile_grid, model.window_passes, alpha, requirements, progress)
    short = set(tile_grid.short)
    # Solvers with local affinities solve their windows again with a held ring (``held_ring``).
    passes = model.window_passes if model.held_ring and trimap is not None else 1
    guide = None
    if short and trimap is not None:
        guide = _coarse_guide(model, image, trimap, tile_plan.max_side)
    solves = tile_grid.solves
    done = 0
    for chunk in _batches(list(solves), tile_plan.batch):
        images, trimaps = _gather(image, trimap, chunk, requirements)
        if guide is not None and trimaps is not None:
            for i, tile in enumerate(chunk):
                if tile in short:
                    window_guide = gather(guide, tile.window, requirements)
                    trimaps[i] = _guided(trimaps[i], window_guide, tile, requirements)
        if pool is None:
            raw = model.infer(images, trimaps)
        else:
            context = TileContext(pool.images, pool.trimaps, pool.boxes, _boxes(chunk))
            raw = model.infer_context(images, trimaps, context)
        for i, solved in enumerate(chunk):
            for tile in solves[solved]:
                focus = _focus(raw[i], solved.window, tile.focus, requirements)
                if guide is not None and tile in short and trimaps is not None and not _has_both(trimaps[i]):
                    top, bottom, left, right = tile.focus
                    focus = guide[top:bottom, left:right]  # still one-sided: the coarse alpha is the answer
                _blend(alpha, tile_grid, tile, focus)
            done += len(solves[solved])
        if progress is not None:
            progress(done, passes * len(tile_grid.run))
    for index in range(1, passes):
        alpha = _held_pass(model, image, trimap, tile_grid, alpha)
        if progress is not None:
            progress((index + 1) * len(tile_grid.run), passes * len(tile_grid.run))
    return alpha


def _held_pass(
    model: MattingModel,
    image: np.ndarray,
    trimap: np.ndarray,
    tile_grid: TileGrid,
    previous: np.ndarray,
) -> np.ndarray:
    """The tiles solved again, each window with the unknown pixels in a ring of ``model.held_ring`` px
    around it held at the ``previous`` pass's stitched alpha (right at every unknown pixel), so that a
    window's edges carry what the rest of the image says (additive Schwarz, docs/engine.md "Held
    rings").  Tiles grouped under one window (``TileGrid.solves``) read its solve; a window short of a known
    class keeps its guided answer."""
    alpha = np.zeros_like(previous)
    short = set(tile_grid.short)
    for solved, tiles in tile_grid.solves.items():
        if solved in short:
            answer, (row, col) = previous, (0, 0)
        else:
            answer, (row, col) = _held_solve(model, image, trimap, solved.window, previous)
        for tile in tiles:
            top, bottom, left, right = tile.focus
            _blend(alpha, tile_grid, tile, answer[top - row : bottom - row, left - col : right - col])
    return alpha


def _held_solve(
    model: MattingModel, image: np.ndarray, trimap: np.ndarray, window: Box, previous: np.ndarray
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model's alpha of ``window`` grown by its held ring, the ring's unknown pixels held at
    ``previous``; with the image position of its first pixel."""
    ring, (height, width) = model.held_ring, trimap.shape
    outer = (max(window[0] - ring, 0), min(window[1] + ring, height),
             max(window[2] - ring, 0), min(window[3] + ring, width))
    rows, cols = slice(outer[0], outer[1]), slice(outer[2], outer[3])
    known = trimap[rows, cols] != UNKNOWN
    value = np.where(known, trimap[rows, cols] == FOREGROUND, previous[rows, cols])
    held = np.ones(known.shape, dtype=bool)  # the ring: outside the window
    held[window[0] - outer[0] : window[1] - outer[0], window[2] - outer[2] : window[3] - outer[2]] = False
    return model.infer_held(image[rows, cols], known | held, value), (outer[0], outer[2])


def _solve_windows(
    solver: WindowSolver,
    tile_grid: TileGrid,
    passes: int,
    alpha: np.ndarray,
    requirements: Requirements,
    progress: Progress | None,
) -> np.ndarray:
    """``alpha`` (zeros) stitched from the windows a window solver mattes, ``passes`` times over, each pass
    given the previous one's stitched alpha (right at every unknown pixel, which is all a solver reads)."""
    previous, count, solves = None, len(tile_grid.run), tile_grid.solves
    for index in range(passes):
        if index:
            previous, alpha = alpha, np.zeros_like(alpha)
        done = 0
        for solved, tiles in solves.items():
            window = solver(solved.window, previous)
            for tile in tiles:
                _blend(alpha, tile_grid, tile, _focus(window, solved.window, tile.focus, requirements))
            done += len(tiles)
            if progress is not None:
                progress(index * count + done, passes * count)
    return alpha


def _blend(alpha: np.ndarray, tile_grid: TileGrid, tile: Tile, focus: np.ndarray) -> None:
    """Add a tile's alpha over its focus into the stitched ``alpha``, weighted for the linear blend."""
    top, bottom, left, right = tile.focus
    alpha[top:bottom, left:right] += tile_grid.weights(tile, tile.focus) * focus


def _focus(window_alpha: np.ndarray, window: Box, focus: Box, requirements: Requirements) -> np.ndarray:
    """The part of the alpha of a padded ``window`` that covers ``focus`` (a box inside the window)."""
    top, bottom, left, right = window
    pad_top, _, pad_left, _ = requirements.padding(bottom - top, right - left)
    row, col = pad_top + focus[0] - top, pad_left + focus[2] - left
    return window_alpha[row : row + focus[1] - focus[0], col : col + focus[3] - focus[2]]


def _coarse_guide(model: MattingModel, image: np.ndarray, trimap: np.ndarray, side: int) -> np.ndarray:
    """The model's alpha of the whole image scaled down to at most ``side`` x ``side`` pixels (what one
    window may hold), scaled back up: a globally consistent answer for tiles that lack context."""
    import cv2  # only plans with tiles short of context get here

    height, width = trimap.shape
    scale = min(GUIDE_SCALE, side / np.sqrt(height * width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
    small = np.clip(run_whole(model, small_image, small_trimap), 0.0, 1.0).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _guided(trimap: np.ndarray, guide: np.ndarray, tile: Tile, requirements: Requirements) -> np.ndarray:
    """A padded window trimap whose unknown pixels outside the tile's focus become known where the coarse
    ``guide`` is confident, so that the model sees both known classes."""
    outside = np.ones(trimap.shape, dtype=bool)
    _focus(outside, tile.window, tile.focus, requirements)[...] = False
    guided = trimap.copy()
    free = outside & (trimap == UNKNOWN)
    guided[free & (guide <= GUIDE_CONFIDENCE)] = BACKGROUND
    guided[free & (guide >= 1 - GUIDE_CONFIDENCE)] = FOREGROUND
    return guided


def _has_both(trimap: np.ndarray) -> bool:
    return bool((trimap == FOREGROUND).any() and (trimap == BACKGROUND).any())


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
