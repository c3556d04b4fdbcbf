"""Training HAttMatting (Qiao et al., CVPR 2020) adversarially, §3.3-3.4 (recipes/hattmatting.toml).

Two networks and two optimisers: the generator (SGD, momentum 0.9, weight decay 5e-4, lr 0.007 with
"poly" decay of power 0.9) and the PatchGAN discriminator (REC: Adam 2e-4, betas (0.5, 0.999), constant;
the paper names no optimiser for it).  Each step first trains the discriminator on (image, ground truth)
against (image, prediction), then the generator on Eq. 2 against the updated discriminator (pix2pix's
order), with the lambdas of the current epoch (§3.4).  Samples: a random 512, 640 or 800 crop resized to
512 and a random horizontal flip (§3.4); the rest of GCA's chain (merge, affine, jitter) is off in the
recipe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models.backbones import BACKBONES, adapt_state_dict
from mattekit.models.hattmatting import (
    DEFAULT_BACKBONE,
    HAttMatting,
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
    loss_weights,
)
from mattekit.train.data import Resampler, Sample, composite, resize, to_arrays
from mattekit.train.losses import normalize
from mattekit.train.task import Optimization, StepContext, Task, register_task


@dataclass(frozen=True)
class HAttMattingOptions:
    """``[options]`` of the hattmatting task."""

    #: The generator's backbone: ResNeXt-101 32x8d (REC), or a lighter one (resnext50_32x4d) on small GPUs.
    backbone: str = DEFAULT_BACKBONE
    #: Side lengths of the random square crops, each resized to the recipe's ``crop_size`` (§3.4).
    crop_sizes: tuple[int, int, int] = (512, 640, 800)
    #: Probability of a horizontal flip (§3.4).
    flip_prob: float = 0.5
    #: Steps in one epoch, for the loss schedule: epoch 1 weighs SSIM 0.1, later epochs 0.025 (§3.4).
    #: REC: 43,100 composites (§4.1) / batch 4 = 10,775.
    epoch_steps: int = 10_775
    #: The discriminator's Adam (REC, NOTES.md §3: pix2pix's settings).
    d_lr: float = 2e-4
    d_betas: tuple[float, float] = (0.5, 0.999)

    def check(self, where: str) -> None:
        if self.backbone not in BACKBONES:
            raise MattekitError(
                f"{where}: 'backbone' must be one of {', '.join(BACKBONES)}, not {self.backbone!r}"
            )
        if min(self.crop_sizes) < 1 or self.epoch_steps < 1 or self.d_lr <= 0:
            raise MattekitError(f"{where}: 'crop_sizes', 'epoch_steps' and 'd_lr' must be positive")


def random_crop(sample: Sample, side: int, rng: np.random.Generator, interp: Resampler) -> Sample:
    """A ``side`` x ``side`` crop at a uniformly random place (§3.4: "randomly cropped").

    Every image-sized field (alpha, trimap, image, fg and bg, bg first resized to the foreground) is cut at
    the same place; a sample smaller than ``side`` is first enlarged so that its short side is ``side``.
    """
    height, width = sample.alpha.shape
    fields = {key: getattr(sample, key) for key in ("alpha", "trimap", "image", "fg", "bg")}
    if sample.bg is not None:
        fields["bg"] = resize(sample.bg, width, height, interp(cv2.INTER_CUBIC))
    if min(height, width) < side:
        ratio = side / min(height, width)
        height, width = max(side, round(height * ratio)), max(side, round(width * ratio))
        fields = {key: _resize(key, value, width, height, interp) for key, value in fields.items()}
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    window = np.s_[top : top + side, left : left + side]
    return replace(sample, **{key: None if value is None else value[window] for key, value in fields.items()})


def _resize(
    key: str, value: np.ndarray | None, width: int, height: int, interp: Resampler
) -> np.ndarray | None:
    if value is None:
        return None
    return resize(value, width, height, cv2.INTER_NEAREST if key == "trimap" else interp(cv2.INTER_LINEAR))


def flip(sample: Sample) -> Sample:
    """The sample mirrored left to right."""
    fields = {key: getattr(sample, key) for key in ("alpha", "trimap", "image", "fg", "bg")}
    return replace(
        sample, **{key: None if v is None else np.ascontiguousarray(v[:, ::-1]) for key, v in fields.items()}
    )


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` with its parameters out of autograd: gradients reach its input but not its weights."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


@register_task("hattmatting")
class HAttMattingTask(Task):
    """HAttMatting: generator and PatchGAN discriminator, MSE + SSIM + adversarial losses (Eq. 2)."""

    architecture = "hattmatting"
    Options = HAttMattingOptions

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": HAttMatting(self.options.backbone), "discriminator": PatchDiscriminator()}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        """An ImageNet ResNeXt of torchvision or timm (§3.4: "pre-trained ResNeXt-101"), its fc dropped."""
        backbone = modules["generator"].backbone
        adapted = adapt_state_dict(state_dict, backbone)
        backbone.load_state_dict(adapted, strict=True)
        return [f"backbone.{key}" for key in adapted]

    def configure_optimizers(self, modules: Mapping[str, nn.Module]) -> dict[str, Optimization]:
        optimizations = super().configure_optimizers(modules)
        parameters = modules["discriminator"].parameters()
        discriminator = torch.optim.Adam(parameters, lr=self.options.d_lr, betas=self.options.d_betas)
        return optimizations | {"discriminator": Optimization(discriminator)}

    def make_sample(self, sample: Sample, rng: np.random.Generator) -> dict[str, np.ndarray]:
        interp = Resampler(self.recipe.data.interpolation, rng)
        side = int(rng.choice(self.options.crop_sizes))
        sample = random_crop(sample, side, rng, interp)
        size = self.recipe.crop_size
        if side != size:
            sample = replace(
                sample,
                **{
                    key: _resize(key, getattr(sample, key), size, size, interp)
                    for key in ("alpha", "trimap", "image", "fg", "bg")
                },
            )
        if rng.random() < self.options.flip_prob:
            sample = flip(sample)
        return to_arrays(composite(sample))

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        generator, discriminator = ctx.models["generator"], ctx.models["discriminator"]
        image, target = normalize(batch["image"]), batch["alpha"]
        with ctx.autocast():
            pred = generator(image)
            real_logits = discriminator(image, target)
            fake_logits = discriminator(image, pred.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        ctx.optimize("discriminator", d_loss)
        # The generator's adversarial term flows through the discriminator into the prediction only; the
        # unwrapped module is called so that DDP does not wait for discriminator gradients.
        with frozen(getattr(discriminator, "module", discriminator)) as judge, ctx.autocast():
            judged = judge(image, pred)
        g_loss, parts = generator_loss(
            judged, pred, target, loss_weights(ctx.step // self.options.epoch_steps)
        )
        ctx.optimize("generator", g_loss)
        return {
            "loss": g_loss,
            "d_loss": d_loss,
            "d_real": real_logits.mean(),
            "d_fake": fake_logits.mean(),
        } | {f"g_{name}": value for name, value in parts.items()}
