"""Training HAttMatting (issue 14, item 2): the recipe, the samples, and the adversarial step on the CPU.

The steps run through a minimal stand-in for the trainer's step context (backward, optimiser step,
schedule), on crops of a real alphamatting.com image with its ground truth.  The generator is the reduced
one of the ``resnet34`` backbone key (0.34 s of one core per step; side by side under load, a generator
step took 1.4 s against 3.3 s with ResNeXt-50); the loop is the same whatever the backbone.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from train_tiny import make_composition

from mattekit.cli import main
from mattekit.io import read_gray
from mattekit.models.backbones import create_backbone
from mattekit.train import load_recipe
from mattekit.train.data import Sample
from mattekit.train.hattmatting import HAttMattingTask
from mattekit.train.task import Optimization
from mattekit.train.trainer import train

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


def test_adversarial_steps_lower_the_generator_loss(dev_dir: Path) -> None:
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


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_trainer_resumes_both_networks_and_exports(dev_dir: Path, tmp_path: Path) -> None:
    """Through the trainer: a run stopped and resumed ends bit for bit where an uninterrupted one does, both
    optimisers are in the checkpoint, and the export mattes without a trimap through ``mattekit predict``."""
    data = make_composition(dev_dir, tmp_path / "data")
    keys = ["steps=4", "batch_size=2", "workers=0", "log_every=1", "save_every=100"]
    recipe = load_recipe("hattmatting", [*keys, "crop_size=64", *(f"options.{item}" for item in SMALL)])
    whole = train(recipe, data, tmp_path / "whole", device="cpu", quiet=True)
    assert whole.step == 4
    assert train(recipe, data, tmp_path / "split", device="cpu", stop_at=2, quiet=True).step == 2
    assert train(recipe, data, tmp_path / "split", device="cpu", resume=True, quiet=True).step == 4
    a, b = (
        torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)
        for run in ("whole", "split")
    )
    for network in ("generator", "discriminator"):
        for key, value in a["modules"][network].items():
            assert torch.equal(value, b["modules"][network][key]), f"{network}.{key}"
        assert a["optimizers"][network]["optimizer"]["state"]  # momentum / Adam moments saved
    image = dev_dir / "input_training_lowres" / "GT03.png"
    out = tmp_path / "alpha.png"
    weights = ["--model", "hattmatting", "--weights", str(tmp_path / "whole" / "model.safetensors")]
    assert main(["predict", str(image), *weights, "-o", str(out), "--device", "cpu"]) == 0
    assert read_gray(out).shape == Image.open(image).size[::-1]


def test_imagenet_backbone_weights_load_into_the_generator() -> None:
    task = HAttMattingTask(_recipe(*SMALL))
    modules = task.build_modules()
    imagenet = create_backbone("resnet34", num_classes=1000).state_dict()  # torchvision's key layout
    filled = task.load_backbone(modules, imagenet)
    assert len(filled) == len(imagenet) - 2  # everything but fc.weight and fc.bias
    loaded = modules["generator"].backbone.state_dict()
    assert all(torch.equal(loaded[key], imagenet[key]) for key in ("conv1.weight", "layer4.2.conv2.weight"))
