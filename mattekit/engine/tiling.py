"""Where tiles go, which of them need the model, and how their alphas are blended back together.

HDMatt ("Patch Cropping and Stitching") crops image and trimap into overlapping patches, fills whatever a
patch needs beyond the image border by reflection, and merges overlaps with "a linear blending function
[...] proportional to its distance to the patch boundaries".  Here:

- Tiles along an axis are spread evenly so that the image is covered with at least the requested overlap
  and no tile sticks out of the image (a regular grid would waste the part beyond the border).  The
  model's own padding (:meth:`Requirements.padding`) is gathered around each
  tile from the real image, and only beyond the image border by reflection, as the whole-image path does.
- A tile that runs may give the model only the window of its core around its unknown pixels (plus a
  margin of context): the rest of the core is known and its alpha is the trimap's anyway.
- Blending is separable: a tile's weight is the product of two 1-D ramps, each proportional to the
  distance (plus one) to the nearest tile edge that has a neighbour, normalised per axis so that the ramps
  of all tiles sum to one at every coordinate.  Products of two partitions of unity are again one, so
  the 2-D weights sum to one at every pixel (borders and corners included) without a full-size weight
  buffer.  Edges on the image border do not ramp: nothing else covers the pixels there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mattekit.models.base import Requirements
from mattekit.trimap import UNKNOWN


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


@dataclass(frozen=True)
class Tile:
    """One tile: its core box in image coordinates, its index on each axis (for the blending ramps), and
    the ``window`` of the core the model runs on (the whole core unless shrunk, see :func:`grid`)."""

    top: int
    bottom: int
    left: int
    right: int
    row: int
    col: int
    window: Box


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image, split into those the model must run and those the trimap already decides."""

    rows: Axis
    cols: Axis
    run: tuple[Tile, ...]
    skipped: tuple[Tile, ...]

    def weights(self, tile: Tile, box: Box | None = None) -> np.ndarray:
        """(h, w) float32 blending weights of ``tile`` over ``box`` (a part of its core; default the core)."""
        top, bottom, left, right = box or (tile.top, tile.bottom, tile.left, tile.right)
        rows = self.rows.ramps[tile.row][top - tile.top : bottom - tile.top]
        cols = self.cols.ramps[tile.col][left - tile.left : right - tile.left]
        return np.outer(rows, cols)


def grid(
    height: int, width: int, tile: int, overlap: int, trimap: np.ndarray | None, margin: int | None = None
) -> TileGrid:
    """Tile an image (``0 <= overlap < tile``, see :func:`mattekit.engine.planner.check`).

    Tiles whose core holds no unknown trimap pixel are not run (their alpha is the trimap's), so the cost
    follows the unknown area.  Without a trimap every tile runs.

    With a ``margin``, a tile's window shrinks to the bounding box of its unknown pixels grown by
    ``margin`` px (within the core): the rest of the core is known, so only the context would be lost,
    and on band-shaped trimaps this saves about 40 % of the model's pixels (docs/engine.md).
    """
    rows, cols = axis(height, tile, overlap), axis(width, tile, overlap)
    run, skipped = [], []
    for r, top in enumerate(rows.starts):
        for c, left in enumerate(cols.starts):
            core = (top, top + rows.size, left, left + cols.size)
            unknown = None if trimap is None else trimap[core[0] : core[1], core[2] : core[3]] == UNKNOWN
            if unknown is not None and not unknown.any():
                skipped.append(Tile(*core, r, c, core))
                continue
            window = core if unknown is None or margin is None else _shrink(core, unknown, margin)
            run.append(Tile(*core, r, c, window))
    return TileGrid(rows, cols, tuple(run), tuple(skipped))


def _shrink(core: Box, unknown: np.ndarray, margin: int) -> Box:
    """The box of the ``unknown`` pixels of ``core``, grown by ``margin`` and kept inside the core."""
    top, bottom, left, right = core
    ys, xs = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    return (
        max(top, top + ys[0] - margin), min(bottom, top + ys[-1] + 1 + margin),
        max(left, left + xs[0] - margin), min(right, left + xs[-1] + 1 + margin),
    )


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
