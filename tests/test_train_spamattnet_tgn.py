"""Training recipes ``spamattnet`` and ``tgn`` (issue 13): the coarse-mask synthesis of §IV-B1, and a few
CPU steps of each task on samples cut from the alphamatting.com training photos, through the tasks' own
``make_sample`` / ``configure_optimizers`` / ``training_step``."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mattekit.metrics import ground_truth_trimap
from mattekit.models import create_model
from mattekit.train import get_task, load_recipe
from mattekit.train.data import Sample, random_trimap
from mattekit.train.tgn import TGNOptions, coarse_mask
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN


class _Context:
    """The trainer's side of a step (mattekit.train.task.StepContext), on the CPU in float32."""

    def __init__(self, models: dict[str, torch.nn.Module], optimizations: dict) -> None:
        self.models, self.optimizations = models, optimizations
        self.device, self.step = torch.device("cpu"), 0

    def autocast(self) -> nullcontext:
        return nullcontext()

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        optimization = self.optimizations[name]
        optimization.optimizer.zero_grad()
        loss.backward()
        optimization.optimizer.step()
        if optimization.scheduler is not None:
            optimization.scheduler.step()


def _dev_samples(dev_dir: Path, names: tuple[str, ...], scale: float = 0.25) -> list[Sample]:
    """Photos and ground-truth alphas of the dev set, shrunk, as composited training samples."""
    samples = []
    for name in names:
        photo = Image.open(dev_dir / "input_training_lowres" / f"{name}.png").convert("RGB")
        size = (round(photo.width * scale), round(photo.height * scale))
        gt = Image.open(dev_dir / "gt_training_lowres" / f"{name}.png").convert("L")
        gt = gt.resize(size, Image.BILINEAR)
        image = np.asarray(photo.resize(size, Image.LANCZOS), np.float32) / 255
        samples.append(Sample(alpha=np.asarray(gt, np.float32) / 255, image=image, name=name))
    return samples


def test_coarse_mask_synthesis_follows_section_iv_b1() -> None:
    trimap = np.zeros((80, 80), np.uint8)
    trimap[20:60, 20:60] = UNKNOWN
    trimap[30:50, 30:50] = FOREGROUND
    initial = (trimap != BACKGROUND).astype(np.float32)  # unknown + foreground: the 40x40 square
    fixed = TGNOptions(mask_kernel=(11, 11), blur_sigma=(0.0, 0.0))
    masks = [coarse_mask(trimap, fixed, np.random.default_rng(seed)) for seed in range(8)]
    areas = sorted({int(m.sum()) for m in masks})
    # An 11 px ellipse erodes or dilates the square by 5 px: 30x30 or about 50x50 (rounded corners).
    assert areas[0] == 30 * 30 and 2300 < areas[-1] < 50 * 50 and len(areas) == 2
    for m in masks:
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert (m >= initial).all() or (m <= initial).all()  # a pure erosion or a pure dilation
    blur_only = TGNOptions(mask_kernel=(1, 1), blur_sigma=(3.0, 3.0))
    blurred = coarse_mask(trimap, blur_only, np.random.default_rng(0))
    assert 0 < blurred[20, 40] < 1 and blurred[40, 40] == pytest.approx(1, abs=1e-3)  # soft edge, solid core
    assert abs(blurred.sum() - initial.sum()) < 1  # a blur keeps the mass
    # The ground-truth trimap: 15x15 square dilation of alpha > 0 minus erosion of alpha == 255.
    alpha = np.zeros((40, 40), np.uint8)
    alpha[10:30, 10:30] = 255
    alpha[10, 10:30] = 100
    truth = ground_truth_trimap(alpha)
    assert truth[3, 20] == UNKNOWN and truth[2, 20] == BACKGROUND  # 7 px out of the soft row 10
    assert truth[18, 20] == FOREGROUND and truth[17, 20] == UNKNOWN  # 7 px in from the first solid row 11


@pytest.mark.parametrize(("recipe_name", "settings"), [
    ("spamattnet", ["crop_size=32", "batch_size=2"]),
    ("tgn", ["crop_size=32", "batch_size=2"]),
])
def test_a_task_learns_on_dev_photos(recipe_name: str, settings: list[str], dev_dir: Path) -> None:
    # One intra-op thread: with two threads' float summation the spamattnet loss once rose over three
    # steps (1.772 -> 1.797 measured, on a8cbb4b too); the path is deterministic with one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _learns(recipe_name, settings, dev_dir)
    finally:
        torch.set_num_threads(threads)


#: Steps on one batch.  Three were too few: with the packages installed on 2026-12-01 (opencv 4.14,
#: pillow 12.3, rich 15) spamattnet's loss rose over them (1.771 -> 1.778); over 30 its first five
#: average 1.774 and its last five 1.696.
STEPS = 30


def _learns(recipe_name: str, settings: list[str], dev_dir: Path) -> None:
    torch.manual_seed(0)
    recipe = load_recipe(recipe_name, settings)
    task = get_task(recipe.task)(recipe)
    rng = np.random.default_rng(0)
    samples = [random_trimap(s, recipe.data.erosion, rng) for s in _dev_samples(dev_dir, ("GT01", "GT05"))]
    fields = [task.make_sample(sample, rng) for sample in samples]
    batch = {key: torch.from_numpy(np.stack([f[key] for f in fields])) for key in fields[0]}
    if recipe_name == "tgn":
        assert batch["mask"].shape == (2, 1, 32, 32) and set(np.unique(batch["trimap"])) <= {0, 128, 255}
    modules = task.build_modules()
    context = _Context(modules, task.configure_optimizers(modules))
    before = {k: v.clone() for k, v in modules[task.export].state_dict().items()}
    losses = []
    for step in range(STEPS):  # the same batch: the loss must come down
        context.step = step
        losses.append(float(task.training_step(batch, context)["loss"].detach()))
    # Step to step the loss wanders by about 1 %: compare the first five steps with the last five.
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    after = modules[task.export].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if recipe_name == "spamattnet":  # the gradients reach the attention: LSPA's and GPA's weights moved
        for block in ("lspa", "gpa"):
            weights = [k for k in before if f".{block}." in k and k.endswith("weight")]
            assert weights and all(not torch.equal(before[k], after[k]) for k in weights), block
    # The exported weights load strictly into the registered architecture.
    create_model(task.architecture, device="cpu").net.load_state_dict(after, strict=True)
