"""The training loop every task shares: processes, data, precision, checkpoints, logging, validation.

One process per device.  ``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; the trainer then joins
the process group (NCCL on GPUs, gloo on the CPU), converts BatchNorm to SyncBatchNorm (``sync_bn``),
wraps each trained module in DistributedDataParallel, and gives each process its shard of every epoch
(:class:`mattekit.train.data.StreamSampler`).  Only rank 0 logs, validates and writes files.

A run directory holds::

    recipe.toml                 the resolved recipe (a resume must match it)
    checkpoints/last.pt         full state: every module, optimiser, scheduler, clipper, grad scaler,
                                RNG states, the data position and the best validation so far
    checkpoints/best.pt         the state with the lowest validation SAD
    metrics.csv                 one row per logged step (step, loss, the task's losses, lr, images_per_s)
                                and per validation (step, val_sad, val_mse, val_grad, val_conn)
    tensorboard/                the same scalars, when tensorboard is installed (extra ``train``)
    model.safetensors(.sha256)  the exported weights (best by SAD if validated, else the last step)
    summary.json                architecture, step, validation metrics and sha256 of the export

Checkpoints are written to a temporary file and renamed into place, so a crash never leaves a half
file; SIGTERM / SIGINT save at the end of the current step and stop; a non-finite loss stops before the
step is applied, naming it, and leaves the last good checkpoint as it was.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mattekit.errors import MattekitError
from mattekit.evaluate import find_cases, predict_and_score
from mattekit.io import atomic_save
from mattekit.train.data import (
    StreamSampler,
    TrainingSet,
    find_source,
    keep_freed_memory,
    seed_worker,
    serial_opencv,
)
from mattekit.train.recipe import Recipe, dumps, load_recipe
from mattekit.train.syncbn import CPUSyncBatchNorm
from mattekit.train.task import Optimization, Task, get_task

CHECKPOINT_VERSION = 1
VAL_COLUMNS = ("val_sad", "val_mse", "val_grad", "val_conn")


class NonFiniteLoss(MattekitError):
    """A loss became NaN or infinite; raised before the step that would apply it."""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived; the state was saved."""


# --------------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Distributed:
    """This process's place: rank, number of processes, device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup_processes(device: str = "auto") -> Distributed:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise MattekitError(f"--device {device}: CUDA is not available")
    chosen = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(rank, world, local_rank, chosen)


def _all_true(flag: bool, procs: Distributed) -> bool:
    """Whether any process raised ``flag`` (so every process stops at the same step)."""
    if not procs.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=procs.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


# --------------------------------------------------------------------------------------------------------
# The step context handed to Task.training_step


class _Context:
    """:class:`mattekit.train.task.StepContext` for one run; ``step`` advances with the loop."""

    def __init__(
        self,
        models: Mapping[str, nn.Module],
        optimizations: Mapping[str, Optimization],
        device: torch.device,
        precision: torch.dtype | None,
        scaler: torch.amp.GradScaler,
        procs: Distributed,
    ) -> None:
        self.procs = procs
        self.models = models
        self.optimizations = optimizations
        self.device = device
        self.precision = precision
        self.scaler = scaler
        self.step = 0
        self.grad_norms: dict[str, float] = {}

    def autocast(self) -> AbstractContextManager[object]:
        if self.precision is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.precision)

    def optimize(self, name: str, loss: Tensor) -> None:
        if name not in self.optimizations:
            raise KeyError(
                f"no optimiser named {name!r} (configure_optimizers gave {sorted(self.optimizations)})"
            )
        # Every process must agree, or the others would wait forever in the gradient all-reduce.
        if _all_true(not bool(torch.isfinite(loss.detach()).all()), self.procs):
            raise NonFiniteLoss(
                f"step {self.step}: the {name} loss is {float(loss.detach())}; stopped before applying it "
                f'(the last checkpoint is kept; lower lr, or use amp = "off" / "bf16")'
            )
        job = self.optimizations[name]
        self.scaler.scale(loss).backward()
        if job.clipper is not None:
            self.scaler.unscale_(job.optimizer)
            params = [p for group in job.optimizer.param_groups for p in group["params"]]
            self.grad_norms[name] = job.clipper(params)
        self.scaler.step(job.optimizer)
        if job.scheduler is not None:
            job.scheduler.step()
        job.optimizer.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------------------
# State


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Best:
    """The lowest validation SAD so far and its step (``inf`` / -1 before any validation)."""

    sad: float = math.inf
    step: int = -1
    metrics: dict[str, float] = field(default_factory=dict)


def _save(path: Path, state: dict[str, Any]) -> None:
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one, not a traceback
        raise MattekitError(f"{path}: not a readable training checkpoint ({type(error).__name__})") from None


# --------------------------------------------------------------------------------------------------------
# Logging


class MetricsLog:
    """``metrics.csv`` (rank 0): appended row by row and flushed; a resumed run drops rows past its step."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if resume_step is not None and path.is_file():
            with path.open(newline="") as stream:
                rows = list(csv.DictReader(stream))
            with path.open(newline="") as stream:
                self.columns = next(csv.reader(stream), None)
            kept = [row for row in rows if int(row["step"]) <= resume_step]
            atomic_save(path, lambda tmp: self._write_all(tmp, kept))
        elif path.exists():
            path.unlink()

    def _write_all(self, tmp: Path, rows: list[dict[str, str]]) -> None:
        with tmp.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=self.columns or ["step"])
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: Mapping[str, float | int]) -> None:
        if self.columns is None:
            losses = [key for key in row if key not in ("step", "lr", "images_per_s")]
            self.columns = ["step", *losses, "lr", "images_per_s", *VAL_COLUMNS]
            with self.path.open("w", newline="") as stream:
                csv.writer(stream).writerow(self.columns)
        unknown = set(row) - set(self.columns)
        if unknown:
            raise RuntimeError(f"metrics.csv: new column(s) {sorted(unknown)} after the header was written")
        with self.path.open("a", newline="") as stream:
            csv.DictWriter(stream, fieldnames=self.columns).writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


class Board:
    """TensorBoard scalars under ``RUN_DIR/tensorboard`` when the ``tensorboard`` package is installed."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        self.missing = False
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.missing = True
            return
        self.writer = SummaryWriter(str(folder))

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------------------------
# The run


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: the step reached, the export and the best validation."""

    run_dir: Path
    step: int
    model: Path | None
    best: Best
    stopped: bool = False


class Trainer:
    """One training run; :func:`train` is the entry point."""

    def __init__(
        self,
        recipe: Recipe,
        data: Path,
        run_dir: Path,
        val: Path | None = None,
        resume: bool = False,
        device: str = "auto",
        quiet: bool = False,
    ) -> None:
        self.recipe, self.run_dir, self.val, self.quiet = recipe, run_dir, val, quiet
        self.procs = setup_processes(device)
        if self.procs.device.type == "cpu":
            # Every CPU step allocates and frees its activations and gradients: reusing that memory
            # instead of faulting fresh pages in made a GCA step ~20% faster (docs/benchmarks.md).
            keep_freed_memory()
        self.task: Task = get_task(recipe.task)(recipe)
        self.source = find_source(data, recipe.data)
        self.val_cases = self._val_cases(val)
        self.checkpoints = run_dir / "checkpoints"
        self._check_run_dir(resume)
        torch.manual_seed(recipe.seed)  # the same initial weights in every process
        self.modules = {
            name: module.to(self.procs.device) for name, module in self.task.build_modules().items()
        }
        if self.task.export not in self.modules:
            raise MattekitError(f"task {self.task.name!r}: build_modules gave no {self.task.export!r} module")
        self._load_backbone()
        if self.procs.active and recipe.sync_bn:
            # DDP refuses torch's SyncBatchNorm on CPU modules: gloo runs get the same semantics from ours.
            convert = (
                nn.SyncBatchNorm.convert_sync_batchnorm
                if self.procs.device.type == "cuda"
                else CPUSyncBatchNorm.convert
            )
            self.modules = {n: convert(m) for n, m in self.modules.items()}
        if recipe.channels_last:
            self.modules = {n: m.to(memory_format=torch.channels_last) for n, m in self.modules.items()}
        self.wrapped = {name: self._wrap(module) for name, module in self.modules.items()}
        if recipe.compile:
            if self.procs.device.type == "cuda":
                self.wrapped = {name: torch.compile(module) for name, module in self.wrapped.items()}
            else:
                self._say("[yellow]warning:[/] compile = true applies on GPUs only; running eagerly")
        self.optimizations = self.task.configure_optimizers(self.modules)
        cuda = self.procs.device.type == "cuda"
        self.precision = (
            {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.amp] if cuda else None
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and recipe.amp == "fp16")
        self.ctx = _Context(
            self.wrapped, self.optimizations, self.procs.device, self.precision, self.scaler, self.procs
        )
        self.step = 0
        self.best = Best()
        if resume:
            self._restore(self.checkpoints / "last.pt")
        self._stop_requested = False

    # -- setup ------------------------------------------------------------------------------------------

    def _val_cases(self, val: Path | None) -> list:
        if val is None:
            return []
        dataset = find_cases(val)
        if not dataset.cases:
            raise MattekitError(f"{val}: no validation cases ({'; '.join(dataset.problems[:1]) or 'empty'})")
        cases = dataset.cases
        return cases[: self.recipe.val_limit] if self.recipe.val_limit else cases

    def _check_run_dir(self, resume: bool) -> None:
        recorded = self.run_dir / "recipe.toml"
        text = dumps(self.recipe.to_dict())
        if resume:
            if not (self.checkpoints / "last.pt").is_file():
                raise MattekitError(f"{self.run_dir}: nothing to resume (no checkpoints/last.pt)")
            if recorded.is_file() and recorded.read_text("utf-8") != text:
                old = load_recipe(str(recorded)).to_dict()
                changed = sorted(
                    k
                    for k in set(old) | set(self.recipe.to_dict())
                    if old.get(k) != self.recipe.to_dict().get(k)
                )
                raise MattekitError(
                    f"{self.run_dir}: --resume with a different recipe (changed: {', '.join(changed)}); "
                    "resume with the recipe.toml of the run directory"
                )
        elif (self.checkpoints / "last.pt").exists():
            raise MattekitError(f"{self.run_dir}: holds a run already; --resume it or choose another -o")
        if self.procs.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_save(recorded, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _load_backbone(self) -> None:
        path = self.recipe.backbone_weights
        if not path:
            self._say(
                "[yellow]warning:[/] no backbone_weights: the encoder starts from scratch (the papers start "
                "from ImageNet; expect a gap)"
            )
            return
        from mattekit.models.checkpoint import read_state_dict

        filled = self.task.load_backbone(self.modules, read_state_dict(Path(path).expanduser()))
        if not filled:
            raise MattekitError(f"{path}: no tensor of it fits the {self.task.name} encoder")
        self._say(f"backbone_weights: {len(filled)} tensors loaded from {path}")

    def _wrap(self, module: nn.Module) -> nn.Module:
        trainable = any(p.requires_grad for p in module.parameters())
        if not (self.procs.active and trainable):
            return module
        ids = [self.procs.device.index] if self.procs.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    # -- state ------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "task": self.task.name,
            "step": self.step,
            "world": self.procs.world,
            "batch_size": self.recipe.batch_size,
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizers": {
                name: {
                    "optimizer": job.optimizer.state_dict(),
                    "scheduler": None if job.scheduler is None else job.scheduler.state_dict(),
                    "clipper": None if job.clipper is None else job.clipper.state_dict(),
                }
                for name, job in self.optimizations.items()
            },
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            # Samples each process has consumed: the data loader restarts there.
            "data_position": self.step * self.recipe.batch_size,
            "best": {"sad": self.best.sad, "step": self.best.step, "metrics": self.best.metrics},
        }

    def _restore(self, path: Path) -> None:
        state = _load(path)
        if state.get("version") != CHECKPOINT_VERSION or state.get("task") != self.task.name:
            raise MattekitError(f"{path}: a checkpoint of another task or format version")
        if state["world"] != self.procs.world:
            raise MattekitError(
                f"{path}: written by {state['world']} process(es), resumed with {self.procs.world}: "
                "the data shards would differ; resume with the same number of processes"
            )
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, job in self.optimizations.items():
            saved = state["optimizers"][name]
            job.optimizer.load_state_dict(saved["optimizer"])
            if job.scheduler is not None:
                job.scheduler.load_state_dict(saved["scheduler"])
            if job.clipper is not None:
                job.clipper.load_state_dict(saved["clipper"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        best = state["best"]
        self.best = Best(best["sad"], best["step"], dict(best["metrics"]))

    def save(self, name: str = "last.pt") -> None:
        if self.procs.main:
            _save(self.checkpoints / name, self.state())

    # -- the loop ---------------------------------------------------------------------------------------

    def loader(self) -> Iterator[dict[str, Tensor]]:
        recipe = self.recipe
        dataset = TrainingSet(self.source, recipe, self.task)
        if recipe.workers > 0:
            serial_opencv()
        sampler = StreamSampler(
            len(dataset), recipe.seed, self.procs.rank, self.procs.world, self.step * recipe.batch_size
        )
        loader = DataLoader(
            dataset,
            batch_size=recipe.batch_size,
            sampler=sampler,
            num_workers=recipe.workers,
            worker_init_fn=seed_worker,
            pin_memory=self.procs.device.type == "cuda",
            persistent_workers=recipe.workers > 0,
            prefetch_factor=4 if recipe.workers > 0 else None,
        )
        layout = torch.channels_last if recipe.channels_last else torch.contiguous_format
        for batch in loader:
            yield {
                key: value.to(self.procs.device, non_blocking=True, memory_format=layout)
                if value.dim() == 4
                else value.to(self.procs.device, non_blocking=True)
                for key, value in batch.items()
            }

    def run(self, stop_at: int | None = None) -> RunResult:
        """Train to ``recipe.steps`` (or ``stop_at``, saving there: a pre-emption at a chosen step)."""
        recipe, procs = self.recipe, self.procs
        end = min(recipe.steps, stop_at) if stop_at is not None else recipe.steps
        metrics = (
            MetricsLog(self.run_dir / "metrics.csv", self.step if self.step else None) if procs.main else None
        )
        board = Board(self.run_dir / "tensorboard", procs.main)
        if board.missing:
            self._say("tensorboard is not installed (pip install 'mattekit\\[train]'): metrics.csv only")
        stopped = False
        with self._signals(), self._progress(end) as advance:
            batches = self.loader()
            window_start, window_images = time.perf_counter(), 0
            while self.step < end:
                batch = next(batches)
                for module in self.wrapped.values():
                    module.train()
                self.ctx.step = self.step
                lr = next(iter(self.optimizations.values())).optimizer.param_groups[0]["lr"]
                losses = self.task.training_step(batch, self.ctx)
                self.scaler.update()  # once per step, after every optimiser of the step
                self.step += 1
                window_images += recipe.batch_size * procs.world
                logged = self._reduce(losses)
                if self.step % recipe.log_every == 0 or self.step == end:
                    rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                    row = {"step": self.step, **logged, "lr": lr, "images_per_s": rate}
                    if metrics is not None:
                        metrics.write(row)
                    board.scalars("train", {**logged, "lr": lr, "images_per_s": rate}, self.step)
                    window_start, window_images = time.perf_counter(), 0
                advance(self.step, logged.get("loss", math.nan), recipe.batch_size * procs.world)
                if self.val_cases and (self.step % recipe.val_every == 0 or self.step == end):
                    self._validate(metrics, board)
                if self.step % recipe.save_every == 0 or self.step == end:
                    self.save()
                if _all_true(self._stop_requested, procs):
                    self.save()
                    stopped = True
                    break
        board.close()
        model = None
        if procs.main and not stopped and self.step >= recipe.steps:
            model = self.export()
        if procs.active:
            dist.barrier()
        return RunResult(self.run_dir, self.step, model, self.best, stopped)

    def _reduce(self, losses: Mapping[str, Tensor]) -> dict[str, float]:
        """Losses averaged over processes, as floats (a loss the task returned non-finite stops the run)."""
        names = sorted(losses)
        values = torch.stack([losses[n].detach().float().reshape(()) for n in names]).to(self.procs.device)
        if self.procs.active:
            dist.all_reduce(values)
            values /= self.procs.world
        floats = dict(zip(names, values.tolist(), strict=True))
        bad = [n for n, v in floats.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(
                f"step {self.step - 1}: {', '.join(bad)} is not finite; the last checkpoint is kept"
            )
        return floats

    def _validate(self, metrics: MetricsLog | None, board: Board) -> None:
        """Rank 0 scores the export module on the validation images; the others wait."""
        if self.procs.main:
            module = self.modules[self.task.export]
            model = self.task.inference_model(module, self.procs.device)
            rows, _ = predict_and_score(self.val_cases, model)
            scores = {
                column: float(np.mean([getattr(row.scores, column[4:]) for row in rows]))
                for column in VAL_COLUMNS
            }
            if metrics is not None:
                metrics.write({"step": self.step, **scores})
            board.scalars("val", {k[4:]: v for k, v in scores.items()}, self.step)
            if scores["val_sad"] < self.best.sad:
                self.best = Best(scores["val_sad"], self.step, scores)
                self.save("best.pt")
            self._say(
                f"step {self.step}: validation SAD {scores['val_sad']:.3f} MSE {scores['val_mse']:.5f} "
                f"(best {self.best.sad:.3f} at step {self.best.step})"
            )
        if self.procs.active:
            dist.barrier()

    def export(self) -> Path:
        """``RUN_DIR/model.safetensors`` (+ ``.sha256``, ``summary.json``): the best state by validation SAD
        when validation ran, else the last; weights only, in the zoo format."""
        from mattekit.zoo import sha256_of

        source = self.checkpoints / ("best.pt" if self.best.step >= 0 else "last.pt")
        state = _load(source)["modules"][self.task.export]
        target = self.run_dir / "model.safetensors"
        tensors = {key: value.contiguous() for key, value in state.items()}
        atomic_save(target, lambda tmp: save_file(tensors, str(tmp)))
        digest = sha256_of(target)
        atomic_save(
            target.with_name(target.name + ".sha256"),
            lambda tmp: tmp.write_text(digest + "\n", encoding="ascii"),
        )
        summary = {
            "architecture": self.task.architecture,
            "task": self.task.name,
            "step": self.best.step if self.best.step >= 0 else self.step,
            "steps": self.recipe.steps,
            "sha256": digest,
            "validation": {
                "data": str(self.val) if self.val else None,
                **{k[4:]: v for k, v in self.best.metrics.items()},
            },
        }
        atomic_save(
            self.run_dir / "summary.json",
            lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8"),
        )
        return target

    # -- signals and progress ---------------------------------------------------------------------------

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def request(signum: int, frame: FrameType | None) -> None:
            self._stop_requested = True

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, request)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def _progress(self, end: int) -> Iterator[Any]:
        if not self.procs.main or self.quiet:
            yield lambda step, loss, images: None
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from mattekit.cli import err_console

        bar = Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[rate]:.1f} img/s  loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        started = time.perf_counter()
        first = self.step

        def advance(step: int, loss: float, images: int) -> None:
            seconds = max(time.perf_counter() - started, 1e-9)
            bar.update(job, completed=step, loss=loss, rate=(step - first) * images / seconds)

        with bar:
            job = bar.add_task("train", total=end, completed=self.step, loss=math.nan, rate=0.0)
            yield advance

    def _say(self, message: str) -> None:
        if self.procs.main and not self.quiet:
            from mattekit.cli import err_console

            err_console.print(message, soft_wrap=True)


def train(
    recipe: Recipe,
    data: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    val: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str = "auto",
    stop_at: int | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run ``recipe`` on the training set ``data``, validating on ``val``, into ``run_dir``."""
    trainer = Trainer(
        recipe, Path(data), Path(run_dir), None if val is None else Path(val), resume, device, quiet
    )
    return trainer.run(stop_at)


if __name__ == "__main__":  # pragma: no cover - `python -m mattekit.train.trainer` is `mattekit train`
    from mattekit.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
