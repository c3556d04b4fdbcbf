"""Training GCA-Matting (Li & Lu, AAAI 2020): the official ``gca-dist`` recipe (recipes/gca.toml).

Loss: L1 over the unknown region only (GCA Eq. 2; composition, gradient and Gabor losses did not help,
Table 1).  Initialisation: the encoder trunk from ImageNet weights when ``backbone_weights`` is given,
with the trimap input channels of the first convolution at zero (official ``load_imagenet_pretrain``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mattekit.models.gca import GCAMatting
from mattekit.train.backbone import load_resnet34_encoder
from mattekit.train.losses import normalize, one_hot, unknown_mask, weighted_l1
from mattekit.train.task import StepContext, Task, register_task


def alpha_step(task: Task, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
    """One step of a network ``net(image, one-hot trimap) -> alpha`` trained by unknown-region L1."""
    with ctx.autocast():
        pred = ctx.models[task.export](normalize(batch["image"]), one_hot(batch["trimap"]))
    loss = weighted_l1(pred, batch["alpha"], unknown_mask(batch["trimap"]))
    ctx.optimize("generator", loss)
    return {"loss": loss}


@register_task("gca")
class GCATask(Task):
    """GCA-Matting: one generator, Adam, unknown-region L1."""

    architecture = "gca"

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": GCAMatting()}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        return load_resnet34_encoder(modules["generator"].encoder, state_dict)

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        return alpha_step(self, batch, ctx)
