"""Matting files and folders: pairing images with trimaps, naming outputs, and running a batch that
survives bad files.

Output naming (documented in docs/predict.md): for an input ``<stem>.<ext>`` mattekit writes
``<stem>_alpha.png`` (always), ``<stem>_rgba.png`` (``--rgba``) and ``<stem>_composite.png``
(``--background``) into the output folder.  When ``-o`` names a ``.png`` file instead of a folder (one
input only), the main output -- the composite if asked for, else the cutout if asked for, else the
alpha -- takes that name and the others keep their standard names beside it.

Many images: :func:`run_batch` mattes them one after another in this process, or in ``workers`` worker
processes that each build the model once (for the weight-free solvers, which use one core per image);
outcomes come back in input order either way.  :func:`shard` splits a folder between independent workers
(a SLURM array, a Kubernetes indexed job) by a stable hash of each file name.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

import numpy as np

from mattekit.compose import composite, cutout, estimate_foreground, fit_background
from mattekit.engine import TileOptions
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, list_images, write_png
from mattekit.predictor import MattingInput, load_input, load_model, run_model
from mattekit.threads import apply as apply_threads

#: Name endings that mark a trimap of the image with the same stem (``photo_trimap.png``).
TRIMAP_SUFFIXES = ("_trimap", "-trimap", ".trimap", "_tri", "-tri")

#: A function that mattes one decoded input (the model and its options already bound).
Matter = Callable[[MattingInput], np.ndarray]


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input; ``background`` is a colour or picture from
    :func:`mattekit.compose.load_background`, read once for the whole run."""

    rgba: bool = False
    background: np.ndarray | None = None
    bit_depth: int = 8

    def kinds(self) -> list[str]:
        """Output kinds in order of precedence for the main output (last is main)."""
        composite_kind = ["composite"] if self.background is not None else []
        return ["alpha"] + (["rgba"] if self.rgba else []) + composite_kind


@dataclass(frozen=True)
class Job:
    """One image to matte: its trimap (if any) and where each output goes."""

    image: Path
    trimap: Path | None
    outputs: dict[str, Path]


@dataclass(frozen=True)
class Failure:
    """An input that could not be matted, with the one-line reason."""

    path: Path
    reason: str


@dataclass
class BatchReport:
    """What a batch did: inputs written, skipped as already done, and failed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


def trimap_stem(path: Path) -> str:
    """The image stem a trimap file belongs to: ``photo_trimap.png`` -> ``photo``."""
    stem = path.stem
    for suffix in TRIMAP_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def output_paths(image: Path, output: Path, options: OutputOptions) -> dict[str, Path]:
    """Where each output of ``image`` goes; ``output`` is a folder, or a ``.png`` file for the main one."""
    kinds = options.kinds()
    if output.suffix.lower() == ".png":
        paths = {kind: output.parent / f"{image.stem}_{kind}.png" for kind in kinds}
        paths[kinds[-1]] = output
        return paths
    if output.suffix and not output.is_dir():
        raise MattekitError(f"-o {output}: outputs are PNG files; give a folder or a name ending in .png")
    return {kind: output / f"{image.stem}_{kind}.png" for kind in kinds}


def plan_file(image: Path, trimap: Path | None, output: Path, options: OutputOptions) -> Job:
    """The job for one image file."""
    if trimap is not None and trimap.is_dir():
        raise MattekitError(f"--trimap {trimap}: is a folder, but the input {image} is a single file")
    return Job(image, trimap, output_paths(image, output, options))


def plan_folder(
    images: Path, trimaps: Path | None, output: Path, options: OutputOptions
) -> tuple[list[Job], list[Failure]]:
    """Jobs for every image in a folder, paired with trimaps by stem; images without a trimap (when a
    trimap folder is given) and ambiguous pairings are returned as failures, not dropped."""
    if output.suffix.lower() == ".png":
        raise MattekitError(f"-o {output}: a folder of images needs an output folder, not a file")
    if trimaps is not None and not trimaps.is_dir():
        raise MattekitError(f"--trimap {trimaps}: the input is a folder, so the trimaps must be a folder too")
    by_stem: dict[str, list[Path]] = {}
    for path in list_images(trimaps) if trimaps else []:
        by_stem.setdefault(trimap_stem(path), []).append(path)
    jobs: list[Job] = []
    failures: list[Failure] = []
    for image in list_images(images):
        if trimaps is not None and trimaps.resolve() == images.resolve() and trimap_stem(image) != image.stem:
            continue  # a trimap stored beside its image is not an image to matte
        candidates = by_stem.get(image.stem, []) if trimaps else [None]
        candidates = [c for c in candidates if c != image]
        if trimaps is not None and len(candidates) != 1:
            names = ", ".join(c.name for c in candidates)
            reason = f"ambiguous trimaps: {names}" if candidates else f"no trimap for it in {trimaps}"
            failures.append(Failure(image, reason))
            continue
        trimap = candidates[0] if trimaps else None
        jobs.append(Job(image, trimap, output_paths(image, output, options)))
    if not jobs and not failures:
        raise MattekitError(f"{images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return jobs, failures


def run_job(job: Job, matte: Matter, options: OutputOptions, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Matte one image and write its outputs (each atomically)."""
    data = load_input(job.image, job.trimap, max_pixels)
    alpha = matte(data)
    height, width = alpha.shape
    background = None if options.background is None else fit_background(options.background, height, width)
    write_png(job.outputs["alpha"], alpha, options.bit_depth)
    if options.rgba or background is not None:
        foreground = estimate_foreground(data.image, alpha)
        if options.rgba:
            write_png(job.outputs["rgba"], cutout(foreground, alpha), options.bit_depth)
        if background is not None:
            write_png(job.outputs["composite"], composite(foreground, alpha, background), options.bit_depth)


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job: ``written``, ``skipped`` (outputs already there) or ``failed``."""

    job: Job
    status: Literal["written", "skipped", "failed"]
    reason: str = ""


def run_batch(
    jobs: list[Job],
    matte: Matter | Callable[[], Matter],
    options: OutputOptions,
    *,
    skip_existing: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> Iterator[JobResult]:
    """Run jobs, yielding each outcome in input order.  A bad file never stops the batch; only an
    interrupt does, and then no output is left half-written (see :func:`mattekit.io.write_png`).

    With ``workers > 1``, ``matte`` is a picklable function that builds the matter (each worker process
    calls it once, e.g. a :class:`ModelRecipe`) and the jobs run in that many processes.
    """
    skip = [skip_existing and _done(job) for job in jobs]
    if workers <= 1 or skip.count(False) <= 1:
        matter = matte if workers <= 1 else matte()
        for job, skipped in zip(jobs, skip, strict=True):
            yield JobResult(job, "skipped") if skipped else _attempt(job, matter, options, max_pixels)
        return
    # forkserver: a fresh server process forks the workers, so no thread of this one (the progress bar)
    # is copied into them half-way through holding a lock, as a plain fork could.
    context = multiprocessing.get_context("forkserver")
    start = (matte, os.getpid())
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=start) as pool:
        futures: list[Future[JobResult] | None] = [
            None if skipped else pool.submit(_attempt_in_worker, job, options, max_pixels)
            for job, skipped in zip(jobs, skip, strict=True)
        ]
        try:
            for job, future in zip(jobs, futures, strict=True):
                yield JobResult(job, "skipped") if future is None else future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # running jobs finish or clean up; none start
            raise


def _done(job: Job) -> bool:
    return all(path.exists() for path in job.outputs.values())


def _attempt(job: Job, matte: Matter, options: OutputOptions, max_pixels: int) -> JobResult:
    try:
        run_job(job, matte, options, max_pixels)
    except MattekitError as err:
        return JobResult(job, "failed", str(err))
    except (MemoryError, RuntimeError, ValueError) as err:  # a solver or network that gives up
        return JobResult(job, "failed", f"{type(err).__name__}: {err}")
    return JobResult(job, "written")


# --- worker processes ------------------------------------------------------------------------------------

_worker_matter: Matter | None = None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start_worker(build: Callable[[], Matter], batch_pid: int) -> None:
    global _worker_matter
    # Killed with the batch (SIGTERM), a worker unwinds like Ctrl-C: the PNG it writes is not left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    threading.Thread(target=_follow, args=(batch_pid,), daemon=True).start()
    _worker_matter = build()


def _follow(batch_pid: int) -> None:
    """End this worker once the batch process is gone (killed with SIGKILL, it cannot tell its workers)."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(batch_pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user's process)
            os._exit(1)


def _attempt_in_worker(job: Job, options: OutputOptions, max_pixels: int) -> JobResult:
    assert _worker_matter is not None, "the worker was started without a model"
    return _attempt(job, _worker_matter, options, max_pixels)


@dataclass(frozen=True)
class ModelRecipe:
    """A picklable way to build the matter of a batch in each worker: the model by name, its factory's
    arguments, how to tile, and how many threads each worker computes with."""

    model: str
    kwargs: dict[str, object]
    tiling: TileOptions | None = None
    threads: int = 1

    def __call__(self) -> Matter:
        model = load_model(self.model, **self.kwargs)
        apply_threads(self.threads)
        return lambda data: run_model(model, data, self.tiling)


# --- sharding ----------------------------------------------------------------------------------------------


def parse_shard(spec: str) -> tuple[int, int]:
    """``K/N`` (K from 0 to N-1, as SLURM's ``--array=0-N-1`` and Kubernetes' completion index count) to
    (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if match is None or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise MattekitError(f"--shard {spec!r}: expected K/N with 0 <= K < N, e.g. 0/4 for the first of four")
    return int(match.group(1)), int(match.group(2))


def in_shard(image: Path, index: int, count: int) -> bool:
    """Whether shard ``index`` of ``count`` owns ``image``: by a stable hash (CRC-32) of its file name,
    so every worker agrees without talking to the others, whatever else is in the folder."""
    return zlib.crc32(image.name.encode("utf-8", "surrogateescape")) % count == index


def shard(
    jobs: list[Job], failures: list[Failure], index: int, count: int
) -> tuple[list[Job], list[Failure]]:
    """The jobs and planning failures shard ``index`` of ``count`` owns."""
    return (
        [job for job in jobs if in_shard(job.image, index, count)],
        [failure for failure in failures if in_shard(failure.path, index, count)],
    )


def collect(results: Iterator[JobResult], planning_failures: list[Failure]) -> BatchReport:
    """Fold the results of :func:`run_batch` into a report, planning failures included."""
    report = BatchReport(failures=list(planning_failures))
    start = time.perf_counter()
    for result in results:
        if result.status == "written":
            report.written.append(result.job.image)
        elif result.status == "skipped":
            report.skipped.append(result.job.image)
        else:
            report.failures.append(Failure(result.job.image, result.reason))
    report.seconds = time.perf_counter() - start
    return report
