"""Training HAttMatting (issue 14, item 2): the recipe, the samples, and the adversarial step on the CPU.

The steps run through a minimal stand-in for the trainer's step context (backward, optimiser step,
schedule), on crops of a real alphamatting.com image with its ground truth.  The generator is the reduced
one of the ``resnet34`` backbone key (0.34 s of one core per step; side by side under load, a generator
step took 1.4 s against 3.3 s with ResNeXt-50); the loop is the same whatever the backbone.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mattekit.models import create_model
from mattekit.train import load_recipe
from mattekit.train.data import Sample
from mattekit.train.hattmatting import HAttMattingTask
from mattekit.train.task import Optimization

#: Recipe options of the CPU runs: the reduced generator and crops of 64 to 100 px resized to 64.
SMALL = ['backbone="resnet34"', "crop_sizes=[64, 80, 100]"]


class _Context:
    """The trainer's StepContext reduced to what one CPU process needs."""

    def __init__(self, models: dict[str, torch.nn.Module], optimizations: dict[str, Optimization]) -> None:
        self.models, self.optimizations = models, optimizations
        self.step, self.device = 0, torch.device("cpu")

    def autocast(self) -> nullcontext[None]:
        return nullcontext()

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        optimization = self.optimizations[name]
        optimization.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimization.optimizer.step()
        if optimization.scheduler is not None:
            optimization.scheduler.step()


def _recipe(*options: str):  # noqa: ANN202 - a Recipe
    return load_recipe("hattmatting", ["crop_size=64", *(f"options.{item}" for item in options)])


def _dev_sample(dev_dir: Path, name: str = "GT04") -> Sample:
    image = np.asarray(Image.open(dev_dir / "input_training_lowres" / f"{name}.png").convert("RGB"))
    alpha = np.asarray(Image.open(dev_dir / "gt_training_lowres" / f"{name}.png").convert("L"))
    trimap = np.asarray(Image.open(dev_dir / "trimap_training_lowres" / "Trimap1" / f"{name}.png"))
    # A quarter-size copy keeps the crops on the object at 64 px.
    small = (image.shape[1] // 4, image.shape[0] // 4)
    return Sample(
        alpha=cv2.resize(alpha, small, interpolation=cv2.INTER_AREA).astype(np.float32) / 255,
        image=cv2.resize(image, small, interpolation=cv2.INTER_AREA).astype(np.float32) / 255,
        trimap=cv2.resize(trimap, small, interpolation=cv2.INTER_NEAREST),
    )


def test_recipe_is_the_papers() -> None:
    recipe = load_recipe("hattmatting")
    assert (recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay) == ("sgd", 0.007, 0.9, 5e-4)
    assert (recipe.schedule, recipe.poly_power, recipe.batch_size, recipe.crop_size) == ("poly", 0.9, 4, 512)
    assert recipe.options.crop_sizes == (512, 640, 800) and recipe.options.backbone == "resnext101_32x8d"
    with pytest.raises(Exception, match="backbone"):
        _recipe('backbone="vgg16"')


def test_sample_is_a_flipped_crop_of_the_image(dev_dir: Path) -> None:
    source = _dev_sample(dev_dir)
    task = HAttMattingTask(_recipe("crop_sizes=[64, 64, 64]", "flip_prob=1.0"))
    fields = task.make_sample(source, np.random.default_rng(0))
    assert fields["image"].shape == (3, 64, 64) and fields["alpha"].shape == (1, 64, 64)
    # Unflipped, the alpha is an exact window of the source alpha.
    window = np.ascontiguousarray(fields["alpha"][0, :, ::-1])
    match = cv2.matchTemplate(source.alpha, window, cv2.TM_SQDIFF)
    top, left = np.unravel_index(np.argmin(match), match.shape)
    assert np.array_equal(source.alpha[top : top + 64, left : left + 64], window)
    assert window.std() > 0.1  # on the object's edge, so the match is not trivial
    # Larger crops are resized to the recipe's crop size.
    task = HAttMattingTask(_recipe("crop_sizes=[100, 100, 100]"))
    assert task.make_sample(source, np.random.default_rng(1))["image"].shape == (3, 64, 64)


def test_adversarial_steps_lower_the_generator_loss(dev_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = HAttMattingTask(_recipe(*SMALL))
    source, rng = _dev_sample(dev_dir), np.random.default_rng(0)
    samples = [task.make_sample(source, rng) for _ in range(2)]
    batch = {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in ("image", "alpha")}
    modules = task.build_modules()
    for module in modules.values():
        module.train()
    optimizations = task.configure_optimizers(modules)
    assert isinstance(optimizations["generator"].optimizer, torch.optim.SGD)
    assert isinstance(optimizations["discriminator"].optimizer, torch.optim.Adam)
    context = _Context(modules, optimizations)
    losses = []
    for step in range(6):
        context.step = step
        logged = task.training_step(batch, context)
        assert all(torch.isfinite(value) for value in logged.values())
        losses.append(float(logged["loss"].detach()))
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    # Resuming from the state of both networks and both optimisers takes the very same next step.
    saved = copy.deepcopy(
        {
            "modules": {name: m.state_dict() for name, m in modules.items()},
            "optim": {name: o.optimizer.state_dict() for name, o in optimizations.items()},
            "sched": {name: o.scheduler.state_dict() for name, o in optimizations.items() if o.scheduler},
        }
    )
    assert saved["optim"]["generator"]["state"] and saved["optim"]["discriminator"]["state"]
    context.step = 6
    task.training_step(batch, context)
    resumed = task.build_modules()
    for name, module in resumed.items():
        module.load_state_dict(saved["modules"][name])
        module.train()
    resumed_optimizations = task.configure_optimizers(resumed)
    for name, optimization in resumed_optimizations.items():
        optimization.optimizer.load_state_dict(saved["optim"][name])
        if optimization.scheduler is not None:
            optimization.scheduler.load_state_dict(saved["sched"][name])
    again = _Context(resumed, resumed_optimizations)
    again.step = 6
    task.training_step(batch, again)
    for name in modules:
        for key, value in modules[name].state_dict().items():
            torch.testing.assert_close(resumed[name].state_dict()[key], value, msg=f"{name}.{key}")
    # The exported generator loads strictly into the registered architecture.
    save_file(modules["generator"].state_dict(), str(tmp_path / "model.safetensors"))
    model = create_model("hattmatting", weights=tmp_path / "model.safetensors", device="cpu")
    assert model.net.backbone.channels == (64, 128, 256, 512)
