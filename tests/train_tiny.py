"""A tiny task for trainer tests: the trainer's machinery at a fraction of GCA's cost on the CPU.

Imported by tests/test_train.py and by the torchrun scripts it launches (it registers the task).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mattekit.train.gca import alpha_step
from mattekit.train.task import StepContext, Task, get_task, list_tasks, register_task

NAME = "tiny-test"


class TinyNet(nn.Module):
    """conv-BN-ReLU-conv-sigmoid on (image, one-hot trimap): BatchNorm so SyncBN is exercised.  No bias
    before BN: its gradient is rounding noise, which Adam would turn into full-size steps."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(6, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 1, 3, padding=1),
        )

    def forward(self, image: Tensor, trimap: Tensor) -> Tensor:
        from torch import cat

        return self.body(cat([image, trimap], dim=1)).sigmoid()


class TinyTask(Task):
    architecture = "gca"  # its Requirements (padding) serve validation; never exported to predict

    def build_modules(self) -> dict[str, nn.Module]:
        return {"generator": TinyNet()}

    def training_step(self, batch: Mapping[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        return alpha_step(self, batch, ctx)


if NAME not in list_tasks():
    register_task(NAME)(TinyTask)
assert get_task(NAME) is not None


def make_composition(
    dev_dir, root, names=("GT01", "GT02", "GT04", "GT05"), backgrounds=("GT06", "GT07", "GT08")
):
    """fg/ alpha/ bg/ from the dev photos at 1/4 size: the photo itself stands in for its foreground (the
    chain does not care), and other photos are the backgrounds.  Returns ``root``."""
    import cv2

    for folder in ("fg", "alpha", "bg"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in names:
        image = cv2.imread(str(dev_dir / "input_training_lowres" / f"{name}.png"))
        alpha = cv2.imread(str(dev_dir / "gt_training_lowres" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        small = (image.shape[1] // 4, image.shape[0] // 4)
        cv2.imwrite(str(root / "fg" / f"{name}.png"), cv2.resize(image, small, interpolation=cv2.INTER_AREA))
        cv2.imwrite(
            str(root / "alpha" / f"{name}.png"), cv2.resize(alpha, small, interpolation=cv2.INTER_AREA)
        )
    for name in backgrounds:
        image = cv2.imread(str(dev_dir / "input_training_lowres" / f"{name}.png"))
        cv2.imwrite(str(root / "bg" / f"{name}.png"), cv2.resize(image, (150, 120)))
    return root


def make_validation(dev_dir, root, names=("GT03",), size=(64, 48)):
    """A plain-layout (image/ alpha/ trimap/) validation set of dev photos shrunk to ``size``."""
    import cv2

    for folder in ("image", "alpha", "trimap"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in names:
        image = cv2.imread(str(dev_dir / "input_training_lowres" / f"{name}.png"))
        alpha = cv2.imread(str(dev_dir / "gt_training_lowres" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        trimap = cv2.imread(
            str(dev_dir / "trimap_training_lowres" / "Trimap1" / f"{name}.png"), cv2.IMREAD_GRAYSCALE
        )
        cv2.imwrite(
            str(root / "image" / f"{name}.png"), cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        )
        cv2.imwrite(
            str(root / "alpha" / f"{name}.png"), cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        )
        cv2.imwrite(
            str(root / "trimap" / f"{name}.png"), cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
        )
    return root


def tiny_recipe_file(path, **keys):
    """A recipe file for the tiny task starting from gca, with ``keys`` changed."""
    settings = {
        "task": NAME,
        "crop_size": 32,
        "batch_size": 2,
        "workers": 0,
        "warmup_steps": 1,
        "log_every": 1,
    }
    settings.update(keys)
    lines = ['base = "gca"'] + [f"{key} = {value!r}".replace("'", '"') for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
