"""Training benchmarks: GCA learns on real composited data, overfits one image, and its speed.

    python benchmarks/train.py learn   --work /tmp/mk-train [--steps 200]   # validation curve on held-out
    python benchmarks/train.py overfit --work /tmp/mk-train [--steps 60]    # one crop, SAD against steps
    python benchmarks/train.py data    --work /tmp/mk-train [--official DIR] # data pipeline samples/s
    python benchmarks/train.py trainer --work /tmp/mk-train [--official DIR] # training images/s (CPU)
    python benchmarks/train.py step    --work /tmp/mk-train [--modes eager,channels_last,compile]

Data (built once under --work): foregrounds estimated (pymatting, via ``extract_foregrounds``) from the
alphamatting.com dev photos and their ground-truth alpha, at most 320 px, composited on the fly over the
alphamatting.com *test* photos (other real pictures).  GT01-GT07 train; GT08 and GT09, over two
backgrounds no training sample uses and with the benchmark's own Trimap1, are the held-out validation
set.  Results go to docs/benchmarks.md ("Training"), with `uptime` load beside every timing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(os.environ.get("MATTEKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEV = SHARED / "data" / "alphamatting-dev"
TEST = SHARED / "data" / "alphamatting-test"
TRAIN_NAMES = [f"GT0{i}" for i in range(1, 8)]
VAL_NAMES = ["GT08", "GT09"]
MAX_SIDE = 320


def load() -> str:
    return os.getloadavg().__repr__()


def build_data(work: Path) -> tuple[Path, Path]:
    """``work/train`` (fg/ alpha/ bg/) and ``work/val`` (image/ alpha/ trimap/); built once."""
    from mattekit.compose import estimate_foreground
    from mattekit.io import read_gray, read_image, write_png
    from mattekit.train.data import extract_foregrounds

    train, val = work / "train", work / "val"
    backgrounds = sorted((TEST / "input_lowres").glob("*.png"))
    if not (train / "fg").is_dir():
        names = TRAIN_NAMES
        extract_foregrounds(
            [DEV / "input_training_lowres" / f"{n}.png" for n in names],
            [DEV / "gt_training_lowres" / f"{n}.png" for n in names], train, MAX_SIDE,
        )
        (train / "bg").mkdir(parents=True, exist_ok=True)
        for path in backgrounds[:6]:
            image = cv2.imread(str(path))
            ratio = MAX_SIDE / max(image.shape[:2])
            size = (round(image.shape[1] * ratio), round(image.shape[0] * ratio))
            cv2.imwrite(str(train / "bg" / path.name), cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    if not (val / "image").is_dir():
        for name, bg_path in zip(VAL_NAMES, backgrounds[6:8], strict=True):
            image, alpha = read_image(DEV / "input_training_lowres" / f"{name}.png")[0], read_gray(
                DEV / "gt_training_lowres" / f"{name}.png")
            trimap = cv2.imread(str(DEV / "trimap_training_lowres" / "Trimap1" / f"{name}.png"), 0)
            ratio = MAX_SIDE / max(alpha.shape)
            size = (round(alpha.shape[1] * ratio), round(alpha.shape[0] * ratio))
            image = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_AREA), 0, 1)
            alpha = np.clip(cv2.resize(alpha, size, interpolation=cv2.INTER_AREA), 0, 1)
            trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
            fg = estimate_foreground(image, alpha)
            bg = np.clip(cv2.resize(read_image(bg_path)[0], size, interpolation=cv2.INTER_CUBIC), 0, 1)
            composite = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
            write_png(val / "image" / f"{name}.png", composite)
            write_png(val / "alpha" / f"{name}.png", alpha)
            write_png(val / "trimap" / f"{name}.png", trimap / 255.0)
    return train, val


def baseline_sad(val: Path) -> float:
    """Mean SAD of the best trimap-only answer: 0.5 everywhere unknown (what an untrained net is near)."""
    from mattekit.evaluate import find_cases, read_alpha, read_scoring_trimap
    from mattekit.metrics import score

    sads = []
    for case in find_cases(val).cases:
        trimap = read_scoring_trimap(case.trimap)
        pred = np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5))
        sads.append(score(pred, read_alpha(case.gt), trimap).sad)
    return float(np.mean(sads))


def untrained_sad(val: Path) -> float:
    """Mean SAD of GCA at its random initialisation (seed 0): where the validation curve starts."""
    import torch

    from mattekit.evaluate import find_cases, predict_and_score
    from mattekit.models import create_model

    torch.manual_seed(0)
    rows, _ = predict_and_score(find_cases(val).cases, create_model("gca", device="cpu"))
    return float(np.mean([row.scores.sad for row in rows]))


def learn(args: argparse.Namespace) -> None:
    from mattekit.train import load_recipe
    from mattekit.train.trainer import train

    train_dir, val_dir = build_data(args.work)
    run = args.work / f"learn-{args.steps}"
    settings = [
        f"steps={args.steps}", f"warmup_steps={max(1, args.steps // 20)}", f"crop_size={args.crop}",
        f"batch_size={args.batch}", f"workers={args.workers}", f"val_every={args.val_every}",
        f"save_every={args.val_every}", "log_every=5",
    ]
    recipe = load_recipe("gca", settings)
    print(f"learn: {' '.join(settings)}; load {load()}", flush=True)
    begin = time.perf_counter()
    result = train(recipe, train_dir, run, val=val_dir, resume=(run / "checkpoints" / "last.pt").exists(),
                   device="cpu")
    print(f"learn: {result.step} steps in {time.perf_counter() - begin:.0f} s; load {load()}")
    print(f"baseline (0.5 in the unknown region) SAD {baseline_sad(val_dir):.3f}")
    print(f"untrained GCA SAD {untrained_sad(val_dir):.3f}")
    with (run / "metrics.csv").open() as stream:
        for row in csv.DictReader(stream):
            if row["val_sad"]:
                sad, mse = float(row["val_sad"]), float(row["val_mse"])
                print(f"step {row['step']}: val SAD {sad:.3f} MSE {mse:.5f}")


def overfit(args: argparse.Namespace) -> None:
    """One fixed crop, the GCA recipe's optimiser at a constant lr: loss and SAD against steps."""
    import torch

    from mattekit.metrics import score
    from mattekit.models.gca import GCAMatting
    from mattekit.train import load_recipe
    from mattekit.train.data import TrainingSet, find_source
    from mattekit.train.losses import normalize, one_hot, unknown_mask, weighted_l1
    from mattekit.train.optim import make_optimizer
    from mattekit.train.task import get_task

    train_dir, _ = build_data(args.work)
    torch.manual_seed(0)
    recipe = load_recipe("gca", [f"crop_size={args.crop}"])
    dataset = TrainingSet(find_source(train_dir, recipe.data), recipe, get_task("gca")(recipe))
    sample = {key: torch.from_numpy(value)[None] for key, value in dataset[(0, 0)].items()}
    net = GCAMatting().train()
    optimizer = make_optimizer(net.parameters(), recipe)
    trimap = sample["trimap"][0, 0].numpy()
    unknown = int((trimap == 128).sum())
    print(f"overfit: crop {args.crop}, {unknown} unknown pixels; load {load()}", flush=True)
    begin = time.perf_counter()
    for step in range(1, args.steps + 1):
        pred = net(normalize(sample["image"]), one_hot(sample["trimap"]))
        loss = weighted_l1(pred, sample["alpha"], unknown_mask(sample["trimap"]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == 1:
            sad = score(pred[0, 0].detach().numpy(), sample["alpha"][0, 0].numpy(), trimap).sad
            print(f"step {step}: loss {loss.item():.4f} SAD {sad:.4f} ({time.perf_counter() - begin:.0f} s)",
                  flush=True)


def _mattekit_dataset(train_dir: Path, crop: int):  # noqa: ANN202  (a TrainingSet)
    from mattekit.train import load_recipe
    from mattekit.train.data import TrainingSet, find_source
    from mattekit.train.task import get_task

    recipe = load_recipe("gca", [f"crop_size={crop}"])
    return TrainingSet(find_source(train_dir, recipe.data), recipe, get_task("gca")(recipe))


def _official_dataset(official: Path, train_dir: Path, crop: int):  # noqa: ANN202  (a DataGenerator)
    """The official ``DataGenerator`` on the same files, at the same crop.

    ``official`` is a scratch copy of Yaoyi-Li/GCA-Matting (never this repository) with its pure-Python
    requirements installed beside it: ``pip install --target OFFICIAL/_deps --no-deps easydict tensorboardX
    toml``.  Two shims make it import on today's stack without changing what it computes: ``np.int`` (gone
    from NumPy 1.24) is ``int``, and torchvision, used only for ``transforms.Compose``, is a stand-in.
    """
    import types

    sys.path[:0] = [str(official), str(official / "_deps")]
    np.int = int  # type: ignore[attr-defined]
    torchvision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")

    class Compose:
        def __init__(self, steps: list) -> None:
            self.steps = steps

        def __call__(self, sample: dict) -> dict:
            for step in self.steps:
                sample = step(sample)
            return sample

    transforms.Compose = Compose  # type: ignore[attr-defined]
    torchvision.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms})
    from dataloader.data_generator import DataGenerator  # the official generator
    from dataloader.image_file import ImageFileTrain
    from utils import CONFIG

    CONFIG.data.crop_size = crop
    files = ImageFileTrain(str(train_dir / "alpha"), str(train_dir / "fg"), str(train_dir / "bg"),
                           alpha_ext=".png", fg_ext=".png", bg_ext=".png")
    return DataGenerator(files, phase="train")


def _in_process(datasets: dict, count: int, rounds: int) -> dict[str, float]:
    """Samples/s of each dataset's ``__getitem__`` in this process, interleaved in ``rounds`` chunks so
    that a change of load hits both alike."""
    keys = {"mattekit": lambda i, n: (i // n, i % n), "official": lambda i, n: i % n}
    seconds = dict.fromkeys(datasets, 0.0)
    for name, dataset in datasets.items():  # warm up: imports, OpenCV kernels, the allocator
        dataset[keys[name](0, len(dataset))]
    for round_ in range(rounds):
        for name, dataset in datasets.items():
            begin = time.perf_counter()
            for index in range(round_ * count, (round_ + 1) * count):
                dataset[keys[name](index, len(dataset))]
            seconds[name] += time.perf_counter() - begin
    return {name: rounds * count / value for name, value in seconds.items()}


def _through_loaders(datasets: dict, batches: int, batch: int, workers: int, rounds: int) -> dict[str, float]:
    """Samples/s through a DataLoader with ``workers`` processes, each set up as its own trainer sets it up
    (mattekit: ``StreamSampler``, ``seed_worker``, serial OpenCV; official ``main.py``: a shuffling sampler,
    default workers), the clock started once the first two batches are out; loaders alternate per round."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from mattekit.train.data import StreamSampler, seed_worker, serial_opencv

    serial_opencv()

    def loader(name: str, dataset) -> DataLoader:  # noqa: ANN001
        if name == "mattekit":
            return DataLoader(dataset, batch_size=batch, sampler=StreamSampler(len(dataset), 0),
                              num_workers=workers, worker_init_fn=seed_worker)
        return DataLoader(dataset, batch_size=batch, sampler=RandomSampler(dataset, True, 10**9),
                          num_workers=workers, drop_last=True)

    seconds = dict.fromkeys(datasets, 0.0)
    torch.manual_seed(0)
    for _ in range(rounds):
        for name, dataset in datasets.items():
            stream = iter(loader(name, dataset))
            next(stream), next(stream)
            begin = time.perf_counter()
            for _ in range(batches):
                next(stream)
            seconds[name] += time.perf_counter() - begin
            del stream
    return {name: rounds * batches * batch / value for name, value in seconds.items()}


def data_speed(args: argparse.Namespace) -> None:
    """Samples/s of the data chain at the GCA recipe: mattekit and, side by side in the same run, the
    official generator on the same files -- in this process, and through DataLoader workers."""
    train_dir, _ = build_data(args.work)
    datasets = {"mattekit": _mattekit_dataset(train_dir, args.crop)}
    if args.official is not None:
        datasets["official"] = _official_dataset(args.official, train_dir, args.crop)
    print(f"crop {args.crop}; load before {load()}", flush=True)
    rates = _in_process(datasets, args.samples // 4, 4)
    print("in process:", ", ".join(f"{k} {v:.1f} samples/s" for k, v in rates.items()), end="")
    print(f"; ratio {rates['mattekit'] / rates['official']:.2f}x" if "official" in rates else "", flush=True)
    if args.loader_workers:
        batches = args.samples // (4 * args.batch)
        rates = _through_loaders(datasets, batches, args.batch, args.loader_workers, 2)
        print(f"DataLoader, {args.loader_workers} worker(s), batch {args.batch}:",
              ", ".join(f"{k} {v:.1f} samples/s" for k, v in rates.items()), end="")
        print(f"; ratio {rates['mattekit'] / rates['official']:.2f}x" if "official" in rates else "")
    print(f"load after {load()}")


class _Clock:
    """A DataLoader that notes the time each batch is asked for: the official trainer's step boundaries."""

    def __init__(self, loader) -> None:  # noqa: ANN001
        self.loader, self.times = loader, []

    def __iter__(self):  # noqa: ANN204
        for batch in self.loader:
            self.times.append(time.perf_counter())
            yield batch


def _official_trainer_rate(args: argparse.Namespace, train_dir: Path, val_dir: Path) -> float:
    """Images/s of the official ``Trainer.train`` (trainer.py, config/gca-dist.toml, one process) on the CPU.

    Shims only, none in its files: ``.cuda()`` of tensors and modules is the identity (its only CUDA calls
    on the training path; ``dist = false`` wraps the network in ``nn.DataParallel``, which on a CPU calls
    it directly); its ``Prefetcher`` (a CUDA-stream copier) is left out, a CPU has nothing to copy; the
    loader samples with replacement (``main.py`` shuffles, and restarts its workers each epoch: every step
    on this 6-background set).  No ImageNet weights (none here).  The clock runs from the third batch
    request to the last, so start-up and its step-0 and final validations are not counted.
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, RandomSampler

    _official_dataset(args.official, train_dir, args.crop)  # the import shims
    torch.Tensor.cuda = lambda self, *_, **__: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *_, **__: self  # type: ignore[method-assign]
    import toml
    import utils
    from dataloader.data_generator import DataGenerator
    from dataloader.image_file import ImageFileTest, ImageFileTrain
    from trainer import Trainer  # the official trainer
    from utils import CONFIG

    utils.load_config(toml.load(args.official / "config" / "gca-dist.toml"))
    logs = args.work / "official-logs"
    CONFIG.dist, CONFIG.model.imagenet_pretrain = False, False
    CONFIG.model.batch_size, CONFIG.data.workers, CONFIG.data.crop_size = args.batch, args.workers, args.crop
    CONFIG.train.total_step = args.steps
    CONFIG.log.logging_path, CONFIG.log.tensorboard_path = str(logs / "stdout"), str(logs / "tb")
    CONFIG.log.checkpoint_path = str(logs / "checkpoints")
    for folder in (CONFIG.log.logging_path, CONFIG.log.tensorboard_path, CONFIG.log.checkpoint_path):
        Path(folder).mkdir(parents=True, exist_ok=True)
    logger, tb_logger = utils.get_logger(CONFIG.log.logging_path, CONFIG.log.tensorboard_path, "WARNING")
    files = ImageFileTrain(str(train_dir / "alpha"), str(train_dir / "fg"), str(train_dir / "bg"),
                           alpha_ext=".png", fg_ext=".png", bg_ext=".png")
    dataset = DataGenerator(files, phase="train")
    loader = _Clock(DataLoader(dataset, batch_size=args.batch, sampler=RandomSampler(dataset, True, 10**9),
                               num_workers=args.workers, drop_last=True))
    tests = ImageFileTest(str(val_dir / "alpha"), str(val_dir / "image"), str(val_dir / "trimap"),
                          alpha_ext=".png", merged_ext=".png", trimap_ext=".png")
    test_loader = DataLoader(DataGenerator(tests, phase="val"), batch_size=1)
    Trainer(loader, test_loader, logger, tb_logger).train()
    times = loader.times[2:]
    return args.batch * (len(times) - 1) / (times[-1] - times[0])


def _mattekit_trainer_rate(args: argparse.Namespace, train_dir: Path) -> float:
    """Images/s of ``mattekit train gca`` at the same crop, batch and workers, without validation: from
    ``metrics.csv``, windows of ``log_every`` steps after the first (which holds the start-up)."""
    import shutil

    from mattekit.train import load_recipe
    from mattekit.train.trainer import train

    every = max(1, (args.steps - 2) // 3)
    run = args.work / "trainer-speed"
    shutil.rmtree(run, ignore_errors=True)
    recipe = load_recipe("gca", [f"steps={args.steps}", f"crop_size={args.crop}", f"batch_size={args.batch}",
                                 f"workers={args.workers}", f"log_every={every}", f"save_every={args.steps}",
                                 f"warmup_steps={args.steps}"])  # the official 5k warmup: all steps
    train(recipe, train_dir, run, device="cpu")
    with (run / "metrics.csv").open() as stream:
        rows = [row for row in csv.DictReader(stream) if row["images_per_s"]][1:]
    images = [int(row["step"]) for row in rows]
    steps = np.diff([every, *images])
    seconds = sum(n * args.batch / float(row["images_per_s"]) for n, row in zip(steps, rows, strict=True))
    return args.batch * int(steps.sum()) / seconds


def trainer_speed(args: argparse.Namespace) -> None:
    """Training images/s of mattekit's trainer and the official one, same crop, batch, workers and threads,
    alternating in one process for ``--rounds`` rounds, on the CPU; the ratio is of the summed times."""
    import torch

    torch.set_num_threads(args.threads)
    train_dir, val_dir = build_data(args.work)
    print(f"trainer: crop {args.crop}, batch {args.batch}, {args.workers} worker(s), {args.threads} "
          f"thread(s), {args.steps} steps; load {load()}", flush=True)
    seconds = {"mattekit": 0.0, "official": 0.0}
    for _ in range(args.rounds):
        rate = _mattekit_trainer_rate(args, train_dir)
        seconds["mattekit"] += 1 / rate
        print(f"mattekit train gca: {rate:.2f} images/s; load {load()}", flush=True)
        if args.official is not None:
            rate = _official_trainer_rate(args, train_dir, val_dir)
            seconds["official"] += 1 / rate
            print(f"official Trainer: {rate:.2f} images/s; load {load()}", flush=True)
    if args.official is not None:
        print(f"ratio (mattekit / official images/s over {args.rounds} rounds): "
              f"{seconds['official'] / seconds['mattekit']:.2f}x")


def step_modes(args: argparse.Namespace) -> None:
    """One GCA training step on the CPU (forward, unknown-region L1, backward, Adam) in the layouts the
    recipe offers: eager, ``channels_last``, ``torch.compile`` (inductor; needs a C++ compiler) -- median
    seconds per step after warm-up, the modes alternating, on one real batch from the data chain."""
    import statistics

    import torch

    from mattekit.models.gca import GCAMatting
    from mattekit.train.losses import normalize, one_hot, unknown_mask, weighted_l1

    torch.set_num_threads(args.threads)
    train_dir, _ = build_data(args.work)
    dataset = _mattekit_dataset(train_dir, args.crop)
    samples = [dataset[(0, i % len(dataset))] for i in range(args.batch)]
    batch = {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
    image, trimap = normalize(batch["image"]), one_hot(batch["trimap"])
    weight = unknown_mask(batch["trimap"])

    def make(mode: str):  # noqa: ANN202
        torch.manual_seed(0)
        net = GCAMatting().train()
        x, t = image, trimap
        if mode == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x, t = (v.contiguous(memory_format=torch.channels_last) for v in (x, t))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-5)
        forward = torch.compile(net) if mode == "compile" else net

        def step() -> float:
            begin = time.perf_counter()
            loss = weighted_l1(forward(x, t), batch["alpha"], weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return time.perf_counter() - begin

        return step

    modes = args.modes.split(",")
    steps, times = {}, {mode: [] for mode in modes}
    print(f"step: crop {args.crop}, batch {args.batch}, {args.threads} thread(s); load {load()}", flush=True)
    for mode in modes:
        steps[mode] = make(mode)
        first = steps[mode]()  # compiles, for torch.compile
        print(f"{mode}: first step {first:.1f} s; load {load()}", flush=True)
    for _ in range(args.steps):
        for mode in modes:
            times[mode].append(steps[mode]())
    base = statistics.median(times[modes[0]])
    for mode in modes:
        median = statistics.median(times[mode])
        print(f"{mode}: median {median:.3f} s/step over {args.steps} ({base / median:.2f}x {modes[0]})")
    print(f"load {load()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("learn", "overfit", "data", "trainer", "step"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/mattekit-train-bench"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--val-every", type=int, default=25)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--official", type=Path, help="scratch copy of Yaoyi-Li/GCA-Matting (data)")
    parser.add_argument("--loader-workers", type=int, default=1,
                        help="data: also through DataLoaders with this many workers (0: not)")
    parser.add_argument("--threads", type=int, default=1, help="trainer: torch intra-op threads")
    parser.add_argument("--rounds", type=int, default=2, help="trainer: alternations of the two trainers")
    parser.add_argument("--modes", default="eager,channels_last,compile", help="step: layouts to compare")
    args = parser.parse_args(argv)
    commands = {"learn": learn, "overfit": overfit, "data": data_speed, "trainer": trainer_speed}
    (commands | {"step": step_modes})[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
