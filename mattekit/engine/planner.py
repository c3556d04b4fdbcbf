"""Whether an image runs in one pass or in tiles, with which tile size and batch, within which memory.

The budget is peak accelerator memory when the model runs on a GPU and peak resident memory on the CPU
(there the engine also counts the full-size host arrays it holds: image, trimap and result).  Each model
estimates what one ``infer`` call needs (:meth:`MattingModel.estimate_memory`); the planner runs the
whole image when that fits and tiles otherwise, shrinking tile and batch until one batch fits.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mattekit.engine.tiling import Box, Tile, TileGrid, grid, padded_size
from mattekit.errors import MattekitError
from mattekit.models.base import MattingModel
from mattekit.trimap import UNKNOWN

TileMode = Literal["auto", "on", "off"]

#: Tile core size and overlap in pixels when not given, chosen by measurement (docs/engine.md); small
#: tiles overlap by a quarter of their size at most.
DEFAULT_TILE_SIZE = 512
DEFAULT_OVERLAP = 32
#: Tiles are never shrunk below this when the memory budget is tight.
MIN_TILE_SIZE = 64
#: Largest automatic batch.  On the CPU a few tiles per call amortise what a network pays per call
#: whatever its input size (GCA re-normalises its spectral-norm weights on every forward: 0.2 s of 0.6 s
#: for a 64 px input on one core, docs/engine.md).
MAX_BATCH = {"cpu": 4, "cuda": 16}
#: Without --max-memory, use this share of the memory that is free now.
DEFAULT_SHARE = {"cpu": 0.5, "cuda": 0.9}
#: Host bytes per image pixel the engine holds on the CPU besides the model: the float32 RGB image (12),
#: the trimap (1), the float32 result (4), and the clip / cast copies and masks of finish_alpha (10).
HOST_BYTES_PER_PIXEL = 27
#: Bytes per model-input pixel of one batch of gathered tiles: float32 RGB (12), trimap (1), alpha (4).
TILE_BUFFER_BYTES_PER_PIXEL = 17

_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*")


def parse_memory(text: str | int) -> int:
    """Bytes from ``6GB`` (10^9), ``6GiB`` or ``6g`` (2^30), ``512MB``, ``1.5 GB`` or a plain byte count."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = _MEMORY.fullmatch(text.lower())
        if match is None or match.group(2) not in _UNITS:
            raise MattekitError(f"--max-memory {text!r} is not a size; write e.g. 6GB, 6GiB or 512MB")
        value, unit = float(match.group(1)), match.group(2)
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise MattekitError(f"--max-memory must be more than 0 bytes, not {text!r}")
    return size


def device_kind(model: MattingModel) -> str:
    """``cuda`` if the model runs on an NVIDIA GPU, else ``cpu``."""
    return "cuda" if str(model.device).startswith("cuda") else "cpu"


def free_memory(model: MattingModel) -> int:
    """Bytes free now where the model runs: GPU memory, or the host's available RAM."""
    if device_kind(model) == "cuda":
        import torch  # only GPU models get here, and they have torch loaded already

        return int(torch.cuda.mem_get_info(torch.device(model.device))[0])
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError):  # not Linux: the physical memory is the best figure at hand
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class TileOptions:
    """What the user may set (``predict(..., tile=...)``, ``mattekit predict --tile ...``); None = auto."""

    tile: TileMode = "auto"
    tile_size: int | None = None
    overlap: int | None = None
    batch: int | None = None
    max_memory: int | str | None = None


@dataclass(frozen=True)
class Plan:
    """How one image will run: ``grid`` is None for a single whole-image pass; ``model_pixels`` counts
    the padded pixels the model will see, which is what the run costs."""

    height: int
    width: int
    device: str
    budget: int
    estimated_peak: int
    model_pixels: int
    grid: TileGrid | None = None
    tile_size: int = 0
    overlap: int = 0
    batch: int = 1
    #: The largest window side one model call can take within the budget (how far context may grow).
    max_side: int = 0

    def describe(self) -> list[str]:
        """Human-readable lines for ``mattekit predict --dry-run``."""
        lines = [f"image {self.width}x{self.height} on {self.device}, memory budget {_gb(self.budget)}"]
        if self.grid is None:
            lines.append("one whole-image pass")
        else:
            tiles = len(self.grid.rows.starts) * len(self.grid.cols.starts)
            lines.append(
                f"tiles of {self.tile_size} px, overlap {self.overlap} px, batch {self.batch}: "
                f"{len(self.grid.run)} of {tiles} to run, {len(self.grid.skipped)} skipped (no unknown pixel)"
            )
        share = self.model_pixels / (self.height * self.width)
        lines.append(f"model input {self.model_pixels / 1e6:.1f} MP ({share:.0%} of the image)")
        lines.append(f"estimated peak memory {_gb(self.estimated_peak)}")
        return lines


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def check(options: TileOptions) -> None:
    """A one-line user error for options that cannot work, before any image is read."""
    if options.tile not in ("auto", "on", "off"):
        raise MattekitError(f"--tile must be auto, on or off, not {options.tile!r}")
    if options.tile_size is not None and options.tile_size < 1:
        raise MattekitError(f"--tile-size must be at least 1 pixel, not {options.tile_size}")
    tile_size = DEFAULT_TILE_SIZE if options.tile_size is None else options.tile_size
    if options.overlap is not None and not 0 <= options.overlap < tile_size:
        raise MattekitError(
            f"--overlap must be at least 0 and less than the tile size ({tile_size}), not {options.overlap}"
        )
    if options.batch is not None and options.batch < 1:
        raise MattekitError(f"--batch must be at least 1, not {options.batch}")
    if options.max_memory is not None:
        parse_memory(options.max_memory)


def plan(
    model: MattingModel, height: int, width: int, trimap: np.ndarray | None, options: TileOptions
) -> Plan:
    """Decide how ``model`` runs on an image of ``height`` x ``width`` (with ``trimap``, if any)."""
    check(options)
    device = device_kind(model)
    budget = (
        parse_memory(options.max_memory) if options.max_memory is not None
        else int(free_memory(model) * DEFAULT_SHARE[device])
    )
    host = HOST_BYTES_PER_PIXEL * height * width if device == "cpu" else 0
    top, bottom, left, right = model.requirements.padding(height, width)
    padded_height, padded_width = height + top + bottom, width + left + right
    unknown = 1.0 if trimap is None else float((trimap == UNKNOWN).mean())
    whole = host + model.estimate_memory(padded_height, padded_width, 1, unknown=unknown)
    tile_wanted = options.tile == "on" or model.context is not None
    if options.tile == "off" or (not tile_wanted and whole <= budget):
        return Plan(height, width, device, budget, whole, padded_height * padded_width)

    # A model that solves windows with the whole image at hand keeps arrays of it while the tiles run; one
    # that solves them again with a held ring keeps the previous pass's alpha (float32).
    host += round(model.window_solver_bytes_per_pixel(unknown) * height * width)
    host += 4 * height * width if model.held_ring else 0
    if host > budget:  # no tile size helps: what every tile shares is already too much
        raise MattekitError(
            f"the memory budget of {_gb(budget)} is too small for this {width}x{height} image: its tiles "
            f"would share about {_gb(host)} of whole-image arrays, as much as one pass needs or more; "
            f"raise --max-memory"
        )
    # What the user fixed is kept; the rest shrinks (tile size, then batch) until one batch fits.  A
    # context model's patches keep the size it was trained for.
    context = model.context
    if options.tile_size is not None:
        sizes = [options.tile_size]
    elif context is not None:
        sizes = [context.tile_size]
    else:
        sizes = _shrinking(options.overlap)
    for size in sizes:
        if options.overlap is not None:
            overlap = options.overlap
        else:
            overlap = min(DEFAULT_OVERLAP, size // 4) if context is None else min(context.overlap, size - 1)
        # Windows shrink to the unknown pixels plus an overlap of context, except for context models,
        # which compare whole patches of one size (HDMatt's patches are all 320 px).
        margin = overlap if model.context is None else None
        max_side = _largest_window(model, host, budget, device, max(height, width), size + 2 * overlap)
        # A model that solves windows with the whole image at hand needs no more context than its margin.
        whole = model.whole_image_windows

        def fits(window_height: int, window_width: int, unknown: float) -> bool:
            padded = _input_size(model, window_height, window_width)
            buffers = _area(padded) * TILE_BUFFER_BYTES_PER_PIXEL if device == "cpu" else 0
            return host + buffers + model.estimate_memory(*padded, 1, unknown=unknown) <= budget

        tile_grid = grid(height, width, size, overlap, trimap, margin, max_side,
                         model.grow_context and not whole, fits=fits)
        # One batch stacks windows of one size; the largest window bounds what any batch needs per tile.
        per_tile = max((_window_peak(model, t, device) for t in tile_grid.run), default=0)
        most = min(MAX_BATCH[device], max(len(tile_grid.run), 1))
        for batch in [options.batch] if options.batch is not None else range(most, 0, -1):
            peak = host + batch * per_tile
            if peak <= budget:
                pixels = sum(_area(_input_size(model, *_size(t.window))) for t in tile_grid.solves)
                return Plan(
                    height, width, device, budget, peak, pixels, tile_grid, size, overlap, batch, max_side
                )
    fixed = " or lower --tile-size / --batch" if options.tile_size or options.batch else ""
    raise MattekitError(
        f"the memory budget of {_gb(budget)} is too small for this {width}x{height} image in tiles of "
        f"{size} px, batch {batch} (about {_gb(peak)} needed); raise --max-memory{fixed}"
    )


def _window_peak(model: MattingModel, tile: Tile, device: str) -> int:
    """Peak bytes of one tile in a batch: the model on its padded window, and on the CPU the gathered
    input and output buffers."""
    height, width = _input_size(model, *_size(tile.window))
    buffers = height * width * TILE_BUFFER_BYTES_PER_PIXEL if device == "cpu" else 0
    return buffers + model.estimate_memory(height, width, 1, unknown=tile.unknown)


def _largest_window(
    model: MattingModel, host: int, budget: int, device: str, longest: int, least: int
) -> int:
    """The side of the largest square window (at most ``longest``, at least ``least``) that one call of
    the model can run on within the budget, every pixel unknown: how far a tile's context may grow."""

    def fits(side: int) -> bool:
        height, width = _input_size(model, side, side)
        buffers = height * width * TILE_BUFFER_BYTES_PER_PIXEL if device == "cpu" else 0
        return host + buffers + model.estimate_memory(height, width, 1, unknown=1.0) <= budget

    low, high = least, max(least, longest)
    if fits(high):
        return high
    while high - low > 1:  # fits(low) or low == least; not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _input_size(model: MattingModel, height: int, width: int) -> tuple[int, int]:
    """What one call of the model gets for a window of ``height`` x ``width``: the window padded as the
    model asks, and with the ring a held pass adds on every side (``held_ring``)."""
    padded_height, padded_width = padded_size(model.requirements, height, width)
    return padded_height + 2 * model.held_ring, padded_width + 2 * model.held_ring


def _size(box: Box) -> tuple[int, int]:
    return box[1] - box[0], box[3] - box[2]


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _shrinking(overlap: int | None) -> list[int]:
    """Tile sizes to try when none is given: the default, then halves down to the minimum (and always
    more than a given overlap)."""
    sizes = [DEFAULT_TILE_SIZE]
    while sizes[-1] // 2 >= MIN_TILE_SIZE and sizes[-1] // 2 > (overlap or 0):
        sizes.append(sizes[-1] // 2)
    return sizes
