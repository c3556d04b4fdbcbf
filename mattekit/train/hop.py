"""Training HOP-Matting (Li, Xu & Lu, arXiv 2004.03249): ``HOP-9x9-RI`` (recipes/hop.toml).

The HOP repository ships no trainer; its ``config/HOP-9x9-RI.toml`` and the paper (§3.3: "augmented as
in GCA", L1 over the unknown region, Eq. 5; random interpolation, §4.1) are the record, so the step is
GCA's.  BatchNorm eps 1e-3 as in the released network (raised for FP16 stability).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from mattekit.errors import MattekitError
from mattekit.models.hop import DEFAULT_GLOBAL_RATE, EPS_HOP_9X9_RI, HOPMatting
from mattekit.train.backbone import load_resnet34_encoder
from mattekit.train.gca import alpha_step
from mattekit.train.task import StepContext, Task, register_task


@dataclass(frozen=True)
class HOPOptions:
    """``[options]`` of the hop task."""

    #: BatchNorm eps: 1e-3 (HOP-9x9-RI) or 1e-5 (the -all-data variant, registry name ``hop-all-data``).
    bn_eps: float = EPS_HOP_9X9_RI
    #: Downsampling of the global block's grid (2 as released).
    global_rate: int = DEFAULT_GLOBAL_RATE

    def check(self, where: str) -> None:
        if self.bn_eps not in (1e-3, 1e-5):
            raise MattekitError(f"{where}: 'bn_eps' must be 1e-3 (hop) or 1e-5 (hop-all-data)")
        if self.global_rate != DEFAULT_GLOBAL_RATE:
            raise MattekitError(f"{where}: 'global_rate' must be {DEFAULT_GLOBAL_RATE}, as released")


@register_task("hop")
class HOPTask(Task):
    """HOP-Matting: one generator, Adam, unknown-region L1, random interpolation in the data chain."""

    architecture = "hop"
    Options = HOPOptions

    def __init__(self, recipe) -> None:  # noqa: ANN001  (Recipe; see Task)
        super().__init__(recipe)
        # The two released variants differ only in BatchNorm eps: export to the matching registry name.
        if self.options.bn_eps != EPS_HOP_9X9_RI:
            self.architecture = "hop-all-data"

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": HOPMatting(self.options.bn_eps, self.options.global_rate)}

    def load_backbone(self, modules: Mapping[str, nn.Module], state_dict: Mapping[str, Tensor]) -> list[str]:
        return load_resnet34_encoder(modules["generator"].encoder, state_dict)

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        return alpha_step(self, batch, ctx)
