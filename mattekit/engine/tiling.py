"""Where tiles go, which of them need the model, and how their alphas are blended back together.

HDMatt ("Patch Cropping and Stitching") crops image and trimap into overlapping patches, fills whatever a
patch needs beyond the image border by reflection, and merges overlaps with "a linear blending function
[...] proportional to its distance to the patch boundaries".  Here:

- Tiles along an axis are spread evenly so that the image is covered with at least the requested overlap
  and no tile sticks out of the image (a regular grid would waste the part beyond the border).  The
  model's own padding (:meth:`Requirements.padding`) is gathered around each
  tile from the real image, and only beyond the image border by reflection, as the whole-image path does.
- A tile that runs contributes its *focus*, the box of its core's unknown pixels (the rest of the core is
  known and its alpha is the trimap's anyway), and the model sees a *window* around it with enough
  context: for a weight-free solver, grown until it holds known foreground and background, since a
  solver that sees only one known class propagates or samples that class alone (docs/engine.md).
- Blending is separable: a tile's weight is the product of two 1-D ramps, each proportional to the
  distance (plus one) to the nearest tile edge that has a neighbour, normalised per axis so that the ramps
  of all tiles sum to one at every coordinate.  Products of two partitions of unity are again one, so
  the 2-D weights sum to one at every pixel (borders and corners included) without a full-size weight
  buffer.  Edges on the image border do not ramp: nothing else covers the pixels there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mattekit.models.base import Requirements
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN


@dataclass(frozen=True)
class Axis:
    """Tile positions along one axis: ``starts`` of tiles of ``size`` pixels on a ``length``-pixel axis."""

    length: int
    size: int
    starts: tuple[int, ...]

    @cached_property
    def ramps(self) -> np.ndarray:
        """(n, size) float32 blending weights of each tile; columns of the scattered ramps sum to one."""
        n, size = len(self.starts), self.size
        if n == 1:
            return np.ones((1, size), dtype=np.float32)
        position = np.arange(size, dtype=np.float64)
        raw = np.full((n, size), np.inf)
        raw[1:] = np.minimum(raw[1:], position + 1)  # a neighbour before: ramp up from the leading edge
        raw[:-1] = np.minimum(raw[:-1], size - position)  # a neighbour after: ramp down to the trailing edge
        total = np.zeros(self.length)
        for i, start in enumerate(self.starts):
            total[start : start + size] += raw[i]
        return np.stack([raw[i] / total[s : s + size] for i, s in enumerate(self.starts)]).astype(np.float32)


def axis(length: int, tile: int, overlap: int) -> Axis:
    """The fewest tiles of ``tile`` px (at most ``length``) covering ``length`` px with ``overlap`` px or
    more between neighbours, spread evenly."""
    size = min(tile, length)
    if size == length:
        return Axis(length, size, (0,))
    stride = tile - overlap
    count = 1 + -(-(length - tile) // stride)
    span = length - size
    return Axis(length, size, tuple(round(i * span / (count - 1)) for i in range(count)))


#: ``(top, bottom, left, right)`` of a box in image coordinates.
Box = tuple[int, int, int, int]

#: A tile's window holds at least this share of its pixels as known foreground, and as known background
#: (or half the image's own share of a class, when that is less): a propagation solver then has both
#: boundary values to interpolate between, and a sampling solver finds both kinds of samples
#: (docs/engine.md, "Context").
MIN_KNOWN_SHARE = 0.05
#: A tile's window grows until at most this share of its edge pixels (those inside the image) are unknown,
#: so that the solve meets known boundary values where the whole image's would (docs/engine.md).
MAX_OPEN_BORDER = 0.1
#: The open-edge rule grows a window at most this share of the tile size around its focus.  Past that an
#: unknown region is wider than a tile; growing on made windows balloon to the memory cap (information
#: flow, GT03 Trimap1 at 3x: 11 of 15 windows capped, 9x the model pixels) and capped windows took the
#: coarse guide.  Measured at 3x with 512 px tiles (docs/engine.md, "Open window edges").
EDGE_REACH = 0.75
#: Growth factor of a window still short of a known class past ``max_side`` (see _context_window).
BEYOND_CAP_STEP = 1.25
#: Windows start on multiples of this in both axes, as the whole image does at 0: strided networks then
#: see the same grid of cells (GCA's is 32 px) and pymatting's shared sampling the same ray angles (its
#: start angles repeat every 8 px), so a tile computes what the whole image would with that context.
WINDOW_ALIGN = 32
#: Windows are at least this many pixels on a side when the image is: pymatting's large-kernel solver
#: box-filters with a 21 px kernel and refuses anything narrower.
MIN_WINDOW = 32


@dataclass(frozen=True)
class Tile:
    """One tile: its core box in image coordinates, its index on each axis (for the blending ramps), the
    ``focus`` it contributes to the stitched alpha (the bounding box of the core's unknown pixels, or the
    core) and the ``window`` around it that the model runs on, which may reach beyond the core for
    context (see :func:`grid`); ``unknown`` is the share of the window's pixels that are unknown."""

    top: int
    bottom: int
    left: int
    right: int
    row: int
    col: int
    window: Box
    focus: Box
    unknown: float = 1.0


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image, split into those the model must run and those the trimap already decides.

    ``short`` lists the tiles that run whose window holds less of a known class than ``MIN_KNOWN_SHARE``
    asks, because it reached ``max_side``; the runner gives them a coarse whole-image guide (runner.py)."""

    rows: Axis
    cols: Axis
    run: tuple[Tile, ...]
    skipped: tuple[Tile, ...]
    short: tuple[Tile, ...] = ()

    @cached_property
    def solves(self) -> dict[Tile, tuple[Tile, ...]]:
        """The tiles that run, grouped under the tile whose window the model solves for them, largest
        windows first: a tile whose window lies inside another group's window reads its focus from that
        solve, which sees all the context its own window would and more.  A tile short of context is
        its own group, as its window's trimap is guided at its own focus (runner.py)."""
        short = set(self.short)
        groups: dict[Tile, list[Tile]] = {}
        owners: list[Tile] = []  # the tiles whose windows are solved, and their windows below
        boxes = np.empty((len(self.run), 4), dtype=np.int64)
        for tile in sorted(self.run, key=lambda t: (t in short, -_area(t.window))):
            if tile not in short:
                inside = _inside(tile.window, boxes[: len(owners)])
                if inside.any():
                    groups[owners[int(np.argmax(inside))]].append(tile)
                    continue
                boxes[len(owners)] = tile.window
                owners.append(tile)
            groups[tile] = [tile]
        return {first: tuple(tiles) for first, tiles in groups.items()}

    def weights(self, tile: Tile, box: Box | None = None) -> np.ndarray:
        """(h, w) float32 blending weights of ``tile`` over ``box`` (a part of its core; default the core)."""
        top, bottom, left, right = box or (tile.top, tile.bottom, tile.left, tile.right)
        rows = self.rows.ramps[tile.row][top - tile.top : bottom - tile.top]
        cols = self.cols.ramps[tile.col][left - tile.left : right - tile.left]
        return np.outer(rows, cols)


def grid(
    height: int,
    width: int,
    tile: int,
    overlap: int,
    trimap: np.ndarray | None,
    margin: int | None = None,
    max_side: int | None = None,
    grow: bool = True,
    fits: Callable[[int, int, float], bool] | None = None,
) -> TileGrid:
    """Tile an image (``0 <= overlap < tile``, see :func:`mattekit.engine.planner.check`).

    Tiles whose core holds no unknown trimap pixel are not run (their alpha is the trimap's), so the cost
    follows the unknown area.  Without a trimap every tile runs on its core.

    With a ``margin`` (and a trimap), a tile contributes only its ``focus``, the bounding box of its
    unknown pixels, and the model sees a ``window`` around it: the focus grown by ``margin`` px, then
    grown further (doubling the growth) until it holds enough known foreground and background pixels
    (``MIN_KNOWN_SHARE``), reaches the image, or would exceed ``max_side`` px on a side.  Without ``grow``
    (networks, and solvers that see the whole image) the window is the focus grown by ``margin``.
    Without a ``margin`` (models that compare whole patches) window and focus are the core.
    """
    rows, cols = axis(height, tile, overlap), axis(width, tile, overlap)
    need = None if trimap is None or margin is None else _needed_shares(trimap)
    run, skipped, short = [], [], []
    for r, top in enumerate(rows.starts):
        for c, left in enumerate(cols.starts):
            core = (top, top + rows.size, left, left + cols.size)
            unknown = None if trimap is None else trimap[core[0] : core[1], core[2] : core[3]] == UNKNOWN
            if unknown is not None and not unknown.any():
                skipped.append(Tile(*core, r, c, core, core, 0.0))
                continue
            if trimap is None:
                run.append(Tile(*core, r, c, core, core))
                continue
            if need is None or margin is None:
                run.append(Tile(*core, r, c, core, core, float(unknown.mean())))
                continue
            focus = _bounding_box(core, unknown)
            if not grow:
                # The focus plus a margin, past the core: a window cut to its core gave the network no
                # context beyond it, and GCA's tiles differed from its whole pass 32x more (docs/engine.md).
                window = _grown(focus, margin, trimap.shape, max(height, width))
                run.append(Tile(*core, r, c, window, focus, _unknown_share(trimap, window)))
                continue
            window, enough = _context_window(
                trimap, focus, margin, max_side or max(height, width), need, round(EDGE_REACH * tile), fits
            )
            run.append(Tile(*core, r, c, window, focus, _unknown_share(trimap, window)))
            if not enough:
                short.append(run[-1])
    return TileGrid(rows, cols, tuple(run), tuple(skipped), tuple(short))


def _area(box: Box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _inside(box: Box, boxes: np.ndarray) -> np.ndarray:
    """Whether ``box`` lies inside each of ``boxes`` (n, 4)."""
    top, bottom, left, right = box
    return (boxes[:, 0] <= top) & (bottom <= boxes[:, 1]) & (boxes[:, 2] <= left) & (right <= boxes[:, 3])


def _unknown_share(trimap: np.ndarray, window: Box) -> float:
    return float((trimap[window[0] : window[1], window[2] : window[3]] == UNKNOWN).mean())


def _needed_shares(trimap: np.ndarray) -> tuple[float, float]:
    """The least share of a window that must be known foreground and known background."""
    foreground, background = (trimap == FOREGROUND).mean(), (trimap == BACKGROUND).mean()
    return min(MIN_KNOWN_SHARE, foreground / 2), min(MIN_KNOWN_SHARE, background / 2)


def _bounding_box(core: Box, unknown: np.ndarray) -> Box:
    """The box of the ``unknown`` pixels of ``core`` (a mask over the core), in image coordinates."""
    top, _, left, _ = core
    ys, xs = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    return top + ys[0], top + ys[-1] + 1, left + xs[0], left + xs[-1] + 1


def _context_window(
    trimap: np.ndarray,
    focus: Box,
    margin: int,
    max_side: int,
    need: tuple[float, float],
    reach: int = 0,
    fits: Callable[[int, int, float], bool] | None = None,
) -> tuple[Box, bool]:
    """``focus`` grown by ``margin``, then by doubling amounts until the window holds the ``need``ed shares
    of known foreground and background; whether it does (it may stop at
    ``max_side`` or the image).  Then it grows on while its edge is open (``MAX_OPEN_BORDER``), to at most
    ``reach`` px around the focus: past that the unknown region is wider than a tile, and the window keeps
    its open edge (it is not short of context for that: the coarse guide is for missing known classes)."""
    growth = margin
    window = _grown(focus, growth, trimap.shape, max_side)
    # Grown until no growth changes it: one step may not (the window's start is aligned down, its end at
    # the image's), while a bigger one still would.
    largest = _grown(focus, max(trimap.shape), trimap.shape, max_side)
    while not (enough := _holds(trimap, window, need)) and window != largest:
        growth = max(2 * growth, 16)
        window = _grown(focus, growth, trimap.shape, max_side)
    # ``max_side`` holds a window of unknown pixels only; one still short of a known class grows on while
    # the model's estimate for its own unknown share fits (``fits(height, width, unknown)``), in steps of
    # a quarter: doubling from a capped window jumped to the whole image, which did not fit, and left
    # windows short that a window between the two would have served (GT01 at 6000², 5 short windows).
    whole = (0, trimap.shape[0], 0, trimap.shape[1])
    while not enough and fits is not None and window != whole:
        growth = max(round(growth * BEYOND_CAP_STEP), growth + 1)  # a margin of 0 or 2 must grow too
        bigger = _grown(focus, growth, trimap.shape, max(trimap.shape))
        if not fits(*_size(bigger), _unknown_share(trimap, bigger)):
            break
        window = bigger
        enough = _holds(trimap, window, need)
    while _open_border(trimap, window) > MAX_OPEN_BORDER and growth < reach and window != largest:
        growth = min(max(2 * growth, 16), reach)
        window = _grown(focus, growth, trimap.shape, max_side)
    return window, enough


def _open_border(trimap: np.ndarray, window: Box) -> float:
    """The share of the window's edge pixels inside the image (not on its border) that are unknown:
    there a window solve has no boundary value where the whole-image solve had the rest of the image."""
    top, bottom, left, right = window
    height, width = trimap.shape
    edges = []
    if top > 0:
        edges.append(trimap[top, left:right])
    if bottom < height:
        edges.append(trimap[bottom - 1, left:right])
    if left > 0:
        edges.append(trimap[top:bottom, left])
    if right < width:
        edges.append(trimap[top:bottom, right - 1])
    if not edges:
        return 0.0
    return float((np.concatenate(edges) == UNKNOWN).mean())


def _size(box: Box) -> tuple[int, int]:
    return box[1] - box[0], box[3] - box[2]


def _grown(focus: Box, growth: int, shape: tuple[int, ...], max_side: int) -> Box:
    """``focus`` grown by ``growth`` px on every side, within the image and (beyond the focus itself)
    within ``max_side`` px per axis, its start aligned down to ``WINDOW_ALIGN``."""
    top, bottom = _span(focus[0], focus[1], growth, shape[0], max_side)
    left, right = _span(focus[2], focus[3], growth, shape[1], max_side)
    return top, bottom, left, right


def _span(start: int, stop: int, growth: int, length: int, max_side: int) -> tuple[int, int]:
    """``start..stop`` grown by up to ``growth`` on each side within ``0..length``, at most ``max_side``
    long unless the span itself is longer; what one side cannot take (the image ends) the other may."""
    room = max(0, max_side - (stop - start))
    before, after = min(growth, start), min(growth, length - stop)
    if before + after > room:
        before = min(before, max(room - after, room // 2))
        after = min(after, room - before)
    low, high = start - before, stop + after
    if high - low < MIN_WINDOW:  # a thin focus at the image border: widen into the image
        high = min(length, low + MIN_WINDOW)
        low = max(0, high - MIN_WINDOW)
    low -= low % WINDOW_ALIGN
    if stop - low > max_side:  # aligning down pushed a capped window past the cap: the next aligned start
        least = stop - max_side
        low = min(least + -least % WINDOW_ALIGN, start - start % WINDOW_ALIGN)
    return low, max(stop, min(high, low + max_side))  # the alignment must not break the cap


def _holds(trimap: np.ndarray, window: Box, need: tuple[float, float]) -> bool:
    """Whether ``window`` holds at least the ``need``ed shares of known foreground and background."""
    part = trimap[window[0] : window[1], window[2] : window[3]]
    foreground, background = (part == FOREGROUND).mean(), (part == BACKGROUND).mean()
    return foreground >= need[0] and background >= need[1]


def reflect_index(start: int, stop: int, length: int) -> np.ndarray:
    """Indices ``start..stop-1`` of an axis of ``length`` reflected into range like numpy's ``reflect``
    padding (the edge is not repeated; a 1-pixel axis repeats its only pixel)."""
    index = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def padded_size(requirements: Requirements, tile_height: int, tile_width: int) -> tuple[int, int]:
    """Height and width of the model input for a tile core of the given size."""
    top, bottom, left, right = requirements.padding(tile_height, tile_width)
    return tile_height + top + bottom, tile_width + left + right


def gather(array: np.ndarray, box: Box, requirements: Requirements) -> np.ndarray:
    """``box`` of ``array`` (H, W[, C]) with the padding the model asks for, taken from the surrounding
    image and reflected beyond its border."""
    box_top, box_bottom, box_left, box_right = box
    top, bottom, left, right = requirements.padding(box_bottom - box_top, box_right - box_left)
    rows = reflect_index(box_top - top, box_bottom + bottom, array.shape[0])
    cols = reflect_index(box_left - left, box_right + right, array.shape[1])
    return array[rows[:, None], cols[None, :]]
