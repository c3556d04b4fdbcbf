"""Training SPAMattNet (Zhou et al., IEEE TCSVT 2023, §III-B4, §IV-B2): recipe ``spamattnet``.

GCA's data processing and augmentation ("we follow the similar data processing and augmentation procedure
as GCA Matting"), 200k steps, total batch 40, Adam 4e-4 with beta (0.5, 0.999), warmup and cosine decay;
the recipe starts from ``gca`` and keeps its 5k warmup and running gradient clipping (the paper names
neither).  Loss (Eq. 10-12): L1 over the unknown region plus the hard-mining L1 over the 50% largest errors,
on the coarse and on the refined alpha (:func:`mattekit.models.spamattnet.matting_loss`).  Initialisation:
the ResNet-34-D trunk from ImageNet weights when ``backbone_weights`` is given, as GCA.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models.spamattnet import HARD_SHARE, SPAMattNet, matting_loss
from mattekit.train.backbone import load_resnet34_encoder
from mattekit.train.losses import normalize, one_hot, unknown_mask
from mattekit.train.task import StepContext, Task, register_task


@dataclass(frozen=True)
class SPAMattNetOptions:
    """``[options]`` of the spamattnet task."""

    #: Share of the unknown pixels with the largest error in L_hard (Eq. 12; p = 50%, §IV-B2).
    hard_share: float = HARD_SHARE

    def check(self, where: str) -> None:
        if not 0 < self.hard_share <= 1:
            raise MattekitError(f"{where}: 'hard_share' must be in (0, 1], not {self.hard_share}")


@register_task("spamattnet")
class SPAMattNetTask(Task):
    """SPAMattNet: one generator, Adam, L_coarse + L_refined (Eq. 10)."""

    architecture = "spamattnet"
    Options = SPAMattNetOptions

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": SPAMattNet()}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        return load_resnet34_encoder(modules["generator"].encoder, state_dict)

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        with ctx.autocast():
            coarse, refined = ctx.models["generator"](
                normalize(batch["image"]), one_hot(batch["trimap"]), with_coarse=True
            )
        unknown, share = unknown_mask(batch["trimap"]), self.options.hard_share
        terms = matting_loss(coarse.float(), refined.float(), batch["alpha"], unknown, share)
        loss = sum(terms.values())
        ctx.optimize("generator", loss)
        return {"loss": loss, **{key: value.detach() for key, value in terms.items()}}
