"""The high-resolution engine: whole-image or tiled inference within a memory budget (docs/engine.md).

:func:`check` validates the options, :func:`plan` decides how an image runs, :func:`run_tiled` runs a
tiled plan; :func:`mattekit.predictor.run_model` uses them, so every model gets them.  Models declare what
they need on :class:`~mattekit.models.base.MattingModel` (``requirements``, ``estimate_memory``,
``context``).
"""

from mattekit.engine.context import ContextRequest, TileContext
from mattekit.engine.planner import Plan, TileOptions, check, parse_memory, plan
from mattekit.engine.runner import Progress, run_tiled, run_whole

__all__ = [
    "ContextRequest", "Plan", "Progress", "TileContext", "TileOptions", "check", "parse_memory", "plan",
    "run_tiled", "run_whole",
]
