"""Training TGN, the trimap generation network (Zhou et al., IEEE TCSVT 2023, §III-A, §IV-B1): recipe
``tgn``.

Each sample gets (§IV-B1):

1. a random trimap from the data chain: alpha eroded / dilated with a random kernel in [1, 29] (the
   chain's ``erosion`` range, GCA's generator);
2. the initial segmentation: that trimap's unknown and foreground pixels;
3. the coarse mask: the initial segmentation eroded or dilated (even odds) with a random elliptic kernel in
   ``mask_kernel`` = [1, 59] px, then blurred by a Gaussian with sigma drawn uniformly from ``blur_sigma``
   = [0, 5] px (REC: the paper names no blur parameters; 0 means no blur);
4. the ground-truth trimap: unknown = alpha > 0 dilated minus alpha = 1 eroded with a 15x15 square
   (:func:`mattekit.metrics.ground_truth_trimap`, NOTES.md §6 REC).

Crops: GCA's ``crop_size`` crop centred on an unknown pixel (REC: the paper's "random crops resized to
512x512" gives no crop sizes).  Loss: cross-entropy over the three classes (§III-B4).  Optimiser: SGD
momentum 0.9, weight decay 1e-4, lr 1e-3 with poly decay (power 0.9) every iteration, 129,300 iterations
at batch 10 (§IV-B1; the optimiser is NOTES.md §6 REC, the DeepLab default).  ``backbone_weights``: a
torchvision/timm ResNet-50 ImageNet state_dict, the two mask channels of conv1 starting at zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.metrics import TRIMAP_KERNEL, ground_truth_trimap, to_uint8
from mattekit.models import MattingModel
from mattekit.models.backbones import adapt_state_dict
from mattekit.models.tgn import TGN
from mattekit.train.data import Resampler, Sample, composite, crop_around_unknown, jitter, to_arrays
from mattekit.train.losses import normalize, one_hot
from mattekit.train.task import StepContext, Task, register_task
from mattekit.trimap import BACKGROUND


@dataclass(frozen=True)
class TGNOptions:
    """``[options]`` of the tgn task: the coarse-mask synthesis of §IV-B1."""

    #: Range (px, inclusive) of the elliptic kernel that erodes or dilates the initial segmentation.
    mask_kernel: tuple[int, int] = (1, 59)
    #: Range of the Gaussian blur's sigma in px (REC; 0 means no blur).
    blur_sigma: tuple[float, float] = (0.0, 5.0)
    #: Side of the square kernel of the ground-truth trimap.
    gt_kernel: int = TRIMAP_KERNEL

    def check(self, where: str) -> None:
        low, high = self.mask_kernel
        if not 1 <= low <= high:
            raise MattekitError(f"{where}: 'mask_kernel' must be [low, high] with 1 <= low <= high")
        if not 0 <= self.blur_sigma[0] <= self.blur_sigma[1]:
            raise MattekitError(f"{where}: 'blur_sigma' must be [low, high] with 0 <= low <= high")
        if self.gt_kernel < 1:
            raise MattekitError(f"{where}: 'gt_kernel' must be at least 1")


def coarse_mask(trimap: np.ndarray, options: TGNOptions, rng: np.random.Generator) -> np.ndarray:
    """A synthetic coarse mask (H, W) float32 in [0, 1] from a random trimap (§IV-B1 steps 2-3)."""
    initial = (trimap != BACKGROUND).astype(np.uint8)
    size = int(rng.integers(options.mask_kernel[0], options.mask_kernel[1] + 1))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    morph = cv2.erode if rng.random() < 0.5 else cv2.dilate
    mask = morph(initial, kernel).astype(np.float32)
    sigma = float(rng.uniform(*options.blur_sigma))
    return cv2.GaussianBlur(mask, (0, 0), sigma) if sigma > 0 else mask


@register_task("tgn")
class TGNTask(Task):
    """TGN: one network, SGD with poly decay, cross-entropy on the 15x15 ground-truth trimap."""

    architecture = "tgn"
    Options = TGNOptions

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": TGN()}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        backbone = modules["generator"].backbone
        adapted = adapt_state_dict(state_dict, backbone)
        backbone.load_state_dict(adapted, strict=True)
        return sorted(f"backbone.{key}" for key in adapted)

    def make_sample(self, sample: Sample, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """GCA's crop, jitter and composition, then the coarse mask (from the chain's random trimap) and
        the ground-truth trimap replacing it: fields ``image``, ``alpha``, ``trimap``, ``mask``."""
        interp = Resampler(self.recipe.data.interpolation, rng)
        sample = crop_around_unknown(sample, self.recipe.crop_size, rng, interp)
        sample = composite(jitter(sample, self.recipe.data.hue, rng))
        assert sample.trimap is not None
        arrays = {key: value for key, value in to_arrays(sample).items() if key in ("image", "alpha")}
        arrays["mask"] = coarse_mask(sample.trimap, self.options, rng)[None]
        arrays["trimap"] = ground_truth_trimap(to_uint8(sample.alpha), self.options.gt_kernel)[None]
        return arrays

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        with ctx.autocast():
            logits = ctx.models["generator"](normalize(batch["image"]), batch["mask"])
        classes = one_hot(batch["trimap"]).argmax(dim=1)
        loss = F.cross_entropy(logits.float(), classes)
        ctx.optimize("generator", loss)
        accuracy = (logits.detach().argmax(dim=1) == classes).float().mean()
        return {"loss": loss, "pixel_accuracy": accuracy}

    def inference_model(self, module: nn.Module, device: torch.device) -> MattingModel:
        raise MattekitError(
            "TGN makes trimaps, not mattes: score its trimaps with `mattekit eval --trimaps DIR --gt DIR`"
        )
