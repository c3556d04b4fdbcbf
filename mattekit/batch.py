"""Matting files and folders: pairing images with trimaps, naming outputs, and running a batch that
survives bad files.

Output naming (documented in docs/predict.md): for an input ``<stem>.<ext>`` mattekit writes
``<stem>_alpha.png`` (always), ``<stem>_rgba.png`` (``--rgba``) and ``<stem>_composite.png``
(``--background``) into the output folder.  When ``-o`` names a ``.png`` file instead of a folder (one
input only), the main output -- the composite if asked for, else the cutout if asked for, else the
alpha -- takes that name and the others keep their standard names beside it.  Any other name is a
folder, created if needed (``-o results.v2`` too); a name with another image ending (``.jpg``) is refused.

Safety (docs/errors.md): a run that would write over one of its inputs is refused before any work, two
inputs that would write the same output fail (the first keeps it), and every failure of one input,
whatever its kind, is reported and the batch goes on.

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
from mattekit.errors import MattekitError, describe
from mattekit.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_writable_folders,
    image_size,
    list_images,
    refuse_overwrite,
    same_file,
    write_png,
)
from mattekit.predictor import MattingInput, load_input, load_model, run_model
from mattekit.threads import apply as apply_threads
from mattekit.trimap import TrimMethod

#: Name endings that mark a trimap of the image with the same stem (``photo_trimap.png``).
TRIMAP_SUFFIXES = ("_trimap", "-trimap", ".trimap", "_tri", "-tri")
#: Name endings that mark a coarse mask of the image with the same stem (``photo_mask.png``).
MASK_SUFFIXES = ("_mask", "-mask", ".mask")

#: A function that mattes one decoded input (the model and its options already bound).
Matter = Callable[[MattingInput], np.ndarray]

#: Peak host bytes per image pixel of one job apart from the model's own solve, measured as the growth of
#: resident memory over run_job at 2000x2000 (docs/errors.md): decoding, the engine's arrays and the 8/16-bit
#: copies of the alpha (34 measured); the foreground colours that --rgba and --background need add
#: multi-level foreground estimation in float64 and the cutout / composite (129 measured in all, with a
#: picture background).
ALPHA_BYTES_PER_PIXEL = 40
COLOUR_BYTES_PER_PIXEL = 100


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each input; ``background`` is a colour or picture from
    :func:`mattekit.compose.load_background`, read once for the whole run."""

    rgba: bool = False
    background: np.ndarray | None = None
    bit_depth: int = 8
    #: Host memory the outputs may take (``--max-memory`` on the CPU); None: no check.
    memory_budget: int | None = None

    def memory_needed(self, height: int, width: int) -> int:
        """Peak host bytes of writing the outputs of a ``height`` x ``width`` image."""
        colours = self.rgba or self.background is not None
        per_pixel = ALPHA_BYTES_PER_PIXEL + (COLOUR_BYTES_PER_PIXEL if colours else 0)
        return per_pixel * height * width

    def kinds(self) -> list[str]:
        """Output kinds in order of precedence for the main output (last is main)."""
        composite_kind = ["composite"] if self.background is not None else []
        return ["alpha"] + (["rgba"] if self.rgba else []) + composite_kind


@dataclass(frozen=True)
class Job:
    """One image to matte: its trimap or coarse mask (if any) and where each output goes."""

    image: Path
    trimap: Path | None
    outputs: dict[str, Path]
    mask: Path | None = None


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


def trimap_stem(path: Path, suffixes: tuple[str, ...] = TRIMAP_SUFFIXES) -> str:
    """The image stem a trimap (or, with MASK_SUFFIXES, a mask) file belongs to: ``photo_trimap.png`` ->
    ``photo``."""
    stem = path.stem
    for suffix in suffixes:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def output_paths(image: Path, output: Path, options: OutputOptions) -> dict[str, Path]:
    """Where each output of ``image`` goes; ``output`` is a folder, or a ``.png`` file for the main one."""
    kinds = options.kinds()
    if is_png_name(output):
        paths = {kind: output.parent / f"{image.stem}_{kind}.png" for kind in kinds}
        clash = next((kind for kind, path in paths.items() if path == output and kind != kinds[-1]), None)
        if clash is not None:  # -o photo_alpha.png --rgba: the cutout would replace the alpha
            raise MattekitError(f"-o {output}: is the name of the {clash} output too; choose another name")
        paths[kinds[-1]] = output
        return paths
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        raise MattekitError(f"-o {output}: outputs are PNG files; give a folder or a name ending in .png")
    return {kind: output / f"{image.stem}_{kind}.png" for kind in kinds}


def is_png_name(output: Path) -> bool:
    """``-o x.png`` names the main output file, unless a folder of that name already exists."""
    return output.suffix.lower() == ".png" and not output.is_dir()


def plan_file(
    image: Path, trimap: Path | None, output: Path, options: OutputOptions, mask: Path | None = None
) -> Job:
    """The job for one image file."""
    for option, path in (("--trimap", trimap), ("--mask", mask)):
        if path is not None and path.is_dir():
            raise MattekitError(f"{option} {path}: is a folder, but the input {image} is a single file")
        if same_file(image, path):
            raise MattekitError(f"{option} {path}: is the image itself; give the {option[2:]} of the photo")
    return Job(image, trimap, output_paths(image, output, options), mask)


@dataclass
class _Companions:
    """A folder of files that go with the images (trimaps or masks), paired by stem."""

    option: str
    kind: str
    folder: Path | None
    suffixes: tuple[str, ...]
    _table: dict[str, list[Path]] | None = None

    def by_stem(self) -> dict[str, list[Path]]:
        if self._table is None:
            self._table = {}
            for path in list_images(self.folder) if self.folder else []:
                self._table.setdefault(trimap_stem(path, self.suffixes), []).append(path)
        return self._table

    def stores_companion(self, images: Path, image: Path) -> bool:
        """``image`` is one of these companions, kept in the image folder itself."""
        same = self.folder is not None and self.folder.resolve() == images.resolve()
        return same and trimap_stem(image, self.suffixes) != image.stem


def plan_folder(
    images: Path, trimaps: Path | None, output: Path, options: OutputOptions, masks: Path | None = None
) -> tuple[list[Job], list[Failure]]:
    """Jobs for every image in a folder, paired with trimaps (or coarse masks) by stem; images without one
    (when such a folder is given) and ambiguous pairings are returned as failures, not dropped."""
    if is_png_name(output):
        raise MattekitError(f"-o {output}: a folder of images needs an output folder, not a file")
    companions = [
        _Companions("--trimap", "trimap", trimaps, TRIMAP_SUFFIXES),
        _Companions("--mask", "mask", masks, MASK_SUFFIXES),
    ]
    companions = [c for c in companions if c.folder is not None]
    for c in companions:
        if not c.folder.is_dir():
            raise MattekitError(f"{c.option} {c.folder}: the input is a folder, so it must be a folder too")
    jobs: list[Job] = []
    failures: list[Failure] = []
    for image in list_images(images):
        if any(c.stores_companion(images, image) for c in companions):
            continue  # a trimap or mask stored beside its image is not an image to matte
        found: dict[str, Path] = {}
        for c in companions:
            candidates = [p for p in c.by_stem().get(image.stem, []) if p != image]
            if len(candidates) != 1:
                names = ", ".join(p.name for p in candidates)
                missing = f"no {c.kind} for it in {c.folder}"
                reason = f"ambiguous {c.kind}s: {names}" if candidates else missing
                failures.append(Failure(image, reason))
                break
            found[c.kind] = candidates[0]
        else:
            outputs = output_paths(image, output, options)
            jobs.append(Job(image, found.get("trimap"), outputs, found.get("mask")))
    if not jobs and not failures:
        raise MattekitError(f"{images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return _unique_outputs(jobs, failures)


def _unique_outputs(jobs: list[Job], failures: list[Failure]) -> tuple[list[Job], list[Failure]]:
    """Two inputs whose outputs would have the same name (``a.png`` and ``a.jpg``): the first keeps them,
    the second fails rather than silently replacing the first one's results."""
    owners: dict[Path, Path] = {}
    kept = []
    for job in jobs:
        taken = [path for path in job.outputs.values() if path in owners]
        if taken:
            owner = owners[taken[0]]
            failures.append(Failure(job.image, f"its output {taken[0].name} is also that of {owner.name}"))
            continue
        owners |= dict.fromkeys(job.outputs.values(), job.image)
        kept.append(job)
    return kept, failures


def refuse_overwriting_inputs(jobs: list[Job], background: Path | None = None) -> None:
    """A one-line error, before any work, if an output of any job is an input of any job (an image, a
    trimap, a mask) or the background picture, or if an output folder cannot be written."""
    inputs = [path for job in jobs for path in (job.image, job.trimap, job.mask)] + [background]
    outputs = [path for job in jobs for path in job.outputs.values()]
    refuse_overwrite(inputs, outputs)
    check_writable_folders(outputs)


def run_job(job: Job, matte: Matter, options: OutputOptions, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Matte one image and write its outputs (each atomically); an image whose outputs would not fit the
    memory budget is refused from its header, before it is decoded."""
    if options.memory_budget is not None:
        width, height = image_size(job.image, max_pixels)
        _check_output_memory(job.image, height, width, options, options.memory_budget)
    data = load_input(job.image, job.trimap, max_pixels, mask=job.mask)
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


def host_memory_budget(max_memory: str | None, on_cpu: bool = True) -> int:
    """Host memory the outputs may take: ``--max-memory`` when the model runs on the CPU (on a GPU it bounds
    GPU memory), else the engine's default share of the available RAM."""
    from types import SimpleNamespace

    from mattekit.engine.planner import DEFAULT_SHARE, free_memory, parse_memory

    if max_memory is not None and on_cpu:
        return parse_memory(max_memory)
    host = SimpleNamespace(device="cpu")  # free_memory only asks where a model runs
    return int(free_memory(host) * DEFAULT_SHARE["cpu"])  # type: ignore[arg-type]


def _check_output_memory(image: Path, height: int, width: int, options: OutputOptions, budget: int) -> None:
    needed = options.memory_needed(height, width)
    if needed > budget:
        colours = options.rgba or options.background is not None
        what = "the foreground colours of --rgba / --background" if colours else "its outputs"
        raise MattekitError(
            f"{image}: {width}x{height} needs about {needed / 1e9:.2f} GB for {what}, over the memory budget "
            f"of {budget / 1e9:.2f} GB; raise --max-memory"
        )


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
    """Run jobs, yielding each outcome in input order.  A failure of any kind never stops the batch (its
    one-line reason is :func:`mattekit.errors.describe`'s); only an interrupt does, and then no output is
    left half-written (see :func:`mattekit.io.write_png`).

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
    except Exception as err:  # one input's problem, or a bug it met: the others still run
        return JobResult(job, "failed", describe(err))
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
    arguments, how to tile, how many threads each worker computes with, and whether to trim trimaps."""

    model: str
    kwargs: dict[str, object]
    tiling: TileOptions | None = None
    threads: int = 1
    trim_trimap: bool | TrimMethod = False

    def __call__(self) -> Matter:
        model = load_model(self.model, **self.kwargs)
        apply_threads(self.threads)
        return lambda data: run_model(model, data, self.tiling, trim_trimap=self.trim_trimap)


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
