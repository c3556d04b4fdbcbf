"""What every matting model declares and implements, whatever its family (classical solver or network)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


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


class MattingModel(ABC):
    """A model that turns images and trimaps into alpha mattes.

    Inputs and outputs are batches of numpy arrays in mattekit's conventions: ``images`` float32
    (B, H, W, 3) RGB in [0, 1]; ``trimaps`` uint8 (B, H, W) with values 0/128/255 (or None for a
    trimap-free model run without one); the result is float32 (B, H, W) in [0, 1].  The caller has
    already padded the inputs as ``requirements`` asks and overwrites known regions afterwards, so
    ``infer`` returns the model's raw output.
    """

    requirements: ClassVar[Requirements] = Requirements()

    @abstractmethod
    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        """Raw alpha (B, H, W) for a batch of padded images and trimaps."""
