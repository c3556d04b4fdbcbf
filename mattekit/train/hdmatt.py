"""Training HDMatt (Yu et al., AAAI 2021, "Dataset", "Implementation"): recipes/hdmatt.toml.

Each sample is one query patch with its context candidates (NOTES.md §4 REC): the composite is made
whole (foreground over background, a random horizontal flip), the query is a square of 640, 480 or 320 px
centred on an unknown pixel and resized to 320, and ``candidates`` (8) squares of the same side from random
places of the same composite are resized alike.  The network embeds the candidates under ``no_grad``, keeps
each query's top K (Eq. 1-2) and encodes those again with gradients.  The loss is Eq. 4 (DIM's alpha and
composition terms) over the unknown pixels times the blending mask; on a composited dataset without
foreground and background only the alpha term is taken.

Table 3's ablations are ``[options]``: ``cpc = "none"`` (model A), ``cpc = "nonlocal"`` (model B),
``k = 1``, ``every_patch = true`` (every candidate is context).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models.backbones import adapt_state_dict
from mattekit.models.base import MattingModel
from mattekit.models.hdmatt import (
    CANDIDATES,
    CROP_SIDES,
    EPSILON,
    TOP_K,
    HDMattModel,
    HDMattNet,
    blending_mask,
    hdmatt_loss,
    sample_training_patches,
)
from mattekit.train.data import Resampler, Sample, composite, resize
from mattekit.train.losses import normalize, one_hot, unknown_mask
from mattekit.train.task import StepContext, Task, register_task


@dataclass(frozen=True)
class HDMattOptions:
    """``[options]`` of the hdmatt task."""

    #: "tgnl" (the paper's model C), "nonlocal" (model B) or "none" (model A, no cross-patch context).
    cpc: Literal["tgnl", "nonlocal", "none"] = "tgnl"
    #: Context patches per query (K); ``every_patch`` takes every candidate instead (Table 3, "All").
    k: int = TOP_K
    every_patch: bool = False
    #: Context candidates per query (REC N = 8) and the query crop sides before resizing to ``crop_size``.
    candidates: int = CANDIDATES
    crop_sides: tuple[int, int, int] = CROP_SIDES
    #: Probability of flipping the composite horizontally ("Dataset").
    flip_prob: float = 0.5

    def check(self, where: str) -> None:
        if self.k < 1:
            raise MattekitError(f"{where}: 'k' must be at least 1 (or set every_patch = true), not {self.k}")
        if self.cpc != "none" and self.candidates < (1 if self.every_patch else self.k):
            raise MattekitError(f"{where}: 'candidates' ({self.candidates}) must be at least 'k' ({self.k})")
        if min(self.crop_sides) < 1:
            raise MattekitError(f"{where}: 'crop_sides' must be positive, not {self.crop_sides}")


@register_task("hdmatt")
class HDMattTask(Task):
    """HDMatt: one generator, Adam with cosine decay, Eq. 4 weighted by the blending mask."""

    architecture = "hdmatt"
    Options = HDMattOptions

    def build_modules(self) -> dict[str, nn.Module]:
        options: HDMattOptions = self.options
        return {"generator": HDMattNet(options.cpc, None if options.every_patch else options.k)}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        """An ImageNet ResNet-34 (torchvision / timm names) into the encoder; trimap channels start at 0."""
        backbone = modules["generator"].encoder.backbone
        adapted = adapt_state_dict(state_dict, backbone)
        try:
            backbone.load_state_dict(adapted, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise MattekitError(f"backbone_weights: not a ResNet-34 checkpoint ({first})") from None
        return [f"encoder.backbone.{key}" for key in adapted]

    def make_sample(self, sample: Sample, rng: np.random.Generator) -> dict[str, np.ndarray]:
        options: HDMattOptions = self.options
        assert sample.trimap is not None
        height, width = sample.trimap.shape
        if sample.bg is not None:  # the background is fitted to the foreground, as in the GCA chain
            interp = Resampler(self.recipe.data.interpolation, rng)
            sample = replace(sample, bg=resize(sample.bg, width, height, interp(cv2.INTER_CUBIC)))
        sample = composite(sample)
        assert sample.image is not None
        extra = {"alpha": sample.alpha}
        if sample.fg is not None and sample.bg is not None:
            extra |= {"fg": sample.fg, "bg": sample.bg}
        flip = rng.random() < options.flip_prob
        arrays = {"image": sample.image, "trimap": sample.trimap, **extra}
        if flip:
            arrays = {name: np.ascontiguousarray(array[:, ::-1]) for name, array in arrays.items()}
        image, trimap = arrays.pop("image"), arrays.pop("trimap")
        count = options.candidates if options.cpc != "none" else 0
        patches = sample_training_patches(image, trimap, rng, self.recipe.crop_size, options.crop_sides,
                                          count, arrays)
        return channels_first(patches)

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        net = ctx.models[self.export]
        query = torch.cat([normalize(batch["image"]), one_hot(batch["trimap"])], dim=1)
        allowed, candidates = None, None
        if "candidates" in batch:
            size, count = len(query), batch["candidates"].shape[1]
            candidates = torch.cat([normalize(batch["candidates"].flatten(0, 1)),
                                    one_hot(batch["candidate_trimaps"].flatten(0, 1))], dim=1)
            # Each query chooses among its own candidates only.
            allowed = np.kron(np.eye(size, dtype=bool), np.ones((1, count), dtype=bool))
        with ctx.autocast():
            alpha = net(query, allowed=allowed, candidates=candidates)
        weight = unknown_mask(batch["trimap"]) * torch.from_numpy(blending_mask(query.shape[-1])).to(query)
        loss = self.loss(alpha.float(), batch, weight)
        ctx.optimize("generator", loss)
        return {"loss": loss}

    @staticmethod
    def loss(alpha: Tensor, batch: Mapping[str, Tensor], weight: Tensor) -> Tensor:
        """Eq. 4 with the composition term when the batch has foregrounds and backgrounds, else L_alpha."""
        if "fg" in batch and "bg" in batch:
            return hdmatt_loss(alpha, batch["alpha"], batch["image"], batch["fg"], batch["bg"], weight)
        per_pixel = torch.sqrt((batch["alpha"] - alpha).square() + EPSILON)
        return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)

    def inference_model(self, module: nn.Module, device: torch.device) -> MattingModel:
        """Validation runs as predict does: tiled in 320 px patches, each with its context pool."""
        assert isinstance(module, HDMattNet)
        return HDMattModel(module, device)


def channels_first(patches: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch fields of :func:`sample_training_patches`' arrays: (C, H, W), candidates (N, C, H, W)."""
    out = {}
    for name, array in patches.items():
        if name in ("candidates", "candidate_trimaps"):
            array = array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)
        else:
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        out[name] = np.ascontiguousarray(array)
    return out
