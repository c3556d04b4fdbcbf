"""``mattekit predict``: alpha mattes, cutouts and composites for one image or a folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from mattekit import jit
from mattekit.batch import (
    BatchReport,
    Job,
    JobResult,
    ModelRecipe,
    OutputOptions,
    collect,
    host_memory_budget,
    parse_shard,
    plan_file,
    plan_folder,
    refuse_overwriting_inputs,
    run_batch,
)
from mattekit.batch import shard as shard_jobs
from mattekit.cli import app, console, stderr_is_terminal
from mattekit.compose import load_background
from mattekit.engine import TileOptions, check, plan
from mattekit.engine.planner import device_kind
from mattekit.errors import MattekitError, printable
from mattekit.io import DEFAULT_MAX_PIXELS
from mattekit.joint import MORPHOLOGY, TrimapMaker, check_fusion, load_trimap_maker, matte
from mattekit.models import DEFAULT_MODEL, MattingModel
from mattekit.predictor import MattingInput, load_input, load_model
from mattekit.segment import find_segmenter
from mattekit.threads import apply as apply_threads
from mattekit.threads import auto_threads

if TYPE_CHECKING:
    from rich.progress import Progress


class TrimChoice(str, Enum):
    """The trimming methods of ``--trim-method`` (:data:`mattekit.trimap.TRIM_METHODS`)."""

    edges = "edges"
    patch = "patch"


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="An image file, or a folder of images.", show_default=False)],
    trimap: Annotated[
        Path | None,
        typer.Option("--trimap", "-t", help="Trimap file, or a folder of trimaps paired by file stem."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder, or a .png file name for one input.")
    ] = Path("."),
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `mattekit models list`).")] = (
        DEFAULT_MODEL
    ),
    weights: Annotated[
        Path | None, typer.Option(help="Checkpoint file for the model (bypasses the model zoo).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N] (networks only).")] = "auto",
    rgba: Annotated[
        bool, typer.Option("--rgba", help="Also write an RGBA cutout with clean edge colours.")
    ] = False,
    background: Annotated[
        str | None,
        typer.Option(
            "--background", "-b", help="Also composite onto a colour (white, #00ff00, 0,255,0) or an image."
        ),
    ] = None,
    bit_depth: Annotated[int, typer.Option("--bit-depth", help="8 or 16 bits per channel.")] = 8,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip inputs whose outputs all exist (resume a batch).")
    ] = False,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images with more pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    tile: Annotated[
        str, typer.Option(help="Matte in tiles: auto (when the whole image does not fit), on or off.")
    ] = "auto",
    tile_size: Annotated[
        int | None, typer.Option(help="Tile size in pixels (default 512).", show_default=False)
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(help="Overlap between tiles in pixels (default 32).", show_default=False)
    ] = None,
    batch: Annotated[
        int | None, typer.Option(help="Tiles per model call (default: as many as fit).", show_default=False)
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory", show_default=False,
            help="Peak memory budget, e.g. 6GB: GPU memory on a GPU, RAM on the CPU "
            "(default: 90% of free GPU memory, 50% of available RAM).",
        ),
    ] = None,
    trim: Annotated[
        bool,
        typer.Option(
            "--trim", help="Trim the trimap first: unknown pixels that clearly belong to the foreground or "
            "the background become known (any model; see docs/trimap.md).",
        ),
    ] = False,
    trim_method: Annotated[
        TrimChoice,
        typer.Option(help="How --trim decides: edges (Shahrian et al. 2013) or patch (Aksoy et al. 2017)."),
    ] = TrimChoice.edges,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print how each image would run (tiles, memory) and stop.")
    ] = False,
    mask: Annotated[
        Path | None,
        typer.Option(
            "--mask",
            help="Coarse mask of the subject (white = subject), or a folder of masks paired by stem: the "
            "trimap is made from it. Without --trimap and --mask a salient-object model makes the mask.",
        ),
    ] = None,
    trimap_model: Annotated[
        str, typer.Option(help="Makes the trimap from the mask: morphology, or tgn (with --trimap-weights).")
    ] = MORPHOLOGY,
    trimap_weights: Annotated[
        Path | None, typer.Option(help="Checkpoint of the trimap model.", show_default=False)
    ] = None,
    erode: Annotated[
        int | None,
        typer.Option(help="morphology: pixels eroded from the mask (default 2% of the long side).",
                     show_default=False),
    ] = None,
    dilate: Annotated[
        int | None,
        typer.Option(help="morphology: pixels dilated around it (default 2% of the long side).",
                     show_default=False),
    ] = None,
    fusion: Annotated[
        str, typer.Option(help="How a made trimap's known regions join the matte: hard or soft (Eq. 15).")
    ] = "hard",
    processes: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            help="Images matted at once, each in its own process, by weight-free models "
            "(default: the usable cores not busy now). Networks use one process and --threads.",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Threads the model computes with, in all (default: the usable cores not busy now).",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="K/N: matte only this worker's share of a folder (K = 0..N-1), for N machines.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Matte an image (or every image in a folder) and write <stem>_alpha.png, plus <stem>_rgba.png with
    --rgba and <stem>_composite.png with --background.  Without --trimap the trimap is made from --mask,
    or from a mask of the salient subject (pip install "mattekit\\[auto]")."""
    if bit_depth not in (8, 16):
        raise MattekitError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    if trimap is not None and mask is not None:
        raise MattekitError("give --trimap or --mask, not both")
    check_fusion(fusion)
    trim_step = trim_method.value if trim else False
    backdrop = None if background is None else load_background(background, max_pixels)
    options = OutputOptions(rgba=rgba, background=backdrop, bit_depth=bit_depth)
    tiling = TileOptions(tile=tile, tile_size=tile_size, overlap=overlap, batch=batch, max_memory=max_memory)
    check(tiling)
    for name, value in (("--jobs", processes), ("--threads", threads)):
        if value is not None and value < 1:
            raise MattekitError(f"{name} must be 1 or more, not {value}")
    if source.is_dir():
        jobs, planning_failures = plan_folder(source, trimap, output, options, mask)
    elif source.exists():
        jobs, planning_failures = [plan_file(source, trimap, output, options, mask)], []
    else:
        raise MattekitError(f"{source}: no such file or folder")
    if shard is not None:
        jobs, planning_failures = shard_jobs(jobs, planning_failures, *parse_shard(shard))
    refuse_overwriting_inputs(jobs, Path(background) if backdrop is not None and backdrop.ndim == 3 else None)
    jit.on_compile(lambda: _note("compiling solvers (numba), first run only ..."))
    matting_model = load_model(model, weights=weights, device=device)
    # The outputs are made in host memory: on the CPU the engine's budget holds for them too.
    budget = host_memory_budget(max_memory, on_cpu=device_kind(matting_model) == "cpu")
    options = replace(options, memory_budget=budget)
    if options.rgba or backdrop is not None:
        jit.import_pymatting()  # now, not under the progress bar: it may compile (first run)
    maker, trimap_path = None, "given (--trimap)"
    if trimap is None and matting_model.requirements.trimap:
        maker = load_trimap_maker(trimap_model, trimap_weights, device, erode, dilate)
        # The segmenter is looked up now, so a missing extra stops the run before any image is read.
        mask_source = "--mask" if mask is not None else f"automatic mask: {find_segmenter().describe()}"
        trimap_path = f"{maker.describe(mask_source)}; {fusion} fusion"
    total_threads = threads or auto_threads()
    # Weight-free solvers use about one core per image: images in parallel use the cores.  A network's
    # threads already do, and each worker would hold its own copy of the weights.  Trimaps made from masks
    # (a segmenter, a trimap network) are made in this process, so those runs use one process too.
    in_parallel = not matting_model.requirements.weights and maker is None
    workers = max(1, min(processes or total_threads, len(jobs))) if in_parallel else 1
    apply_threads(total_threads)
    if dry_run:
        _print_plans(jobs, matting_model, tiling, max_pixels, maker, trimap_path)
        return
    if maker is not None:
        from rich.markup import escape

        console().print(f"trimap: {escape(trimap_path)}", soft_wrap=True)

    # The bars are drawn on a terminal; on a pipe or a file (a script's log) there is nothing to draw, and
    # rich is not even imported (≈0.03 s of CPU per run, docs/benchmarks.md).
    bars = _Bars(len(jobs)) if stderr_is_terminal() else None
    with bars or nullcontext():
        tile_progress = None if bars is None else bars.tiles

        def matte_here(data: MattingInput) -> np.ndarray:
            return matte(matting_model, data, maker, fusion, tiling, tile_progress, trim_step)

        recipe = ModelRecipe(
            model, {"weights": weights, "device": device}, tiling, max(1, total_threads // workers), trim_step
        )
        results = run_batch(
            jobs, recipe if workers > 1 else matte_here, options,
            skip_existing=skip_existing, max_pixels=max_pixels, workers=workers,
        )
        report = collect(results if bars is None else bars.advancing(results), planning_failures)
    _summarise(report)
    if report.failures:
        raise typer.Exit(1)


def _print_plans(
    jobs: list[Job],
    model: MattingModel,
    tiling: TileOptions,
    max_pixels: int,
    maker: TrimapMaker | None,
    trimap_path: str,
) -> None:
    """--dry-run: which path makes the trimap, and how each image would run (whole or tiles, tiles
    skipped, memory), without matting it (a trimap to be made is made, since the tiles depend on it)."""
    for job in jobs:
        try:
            data = load_input(job.image, job.trimap, max_pixels, mask=job.mask)
            trimap = data.trimap
            if trimap is None and maker is not None:
                trimap = maker.estimate(data.image, data.mask).trimap
        except MattekitError as err:
            typer.echo(f"{job.image}: {err}")
            continue
        height, width = data.image.shape[:2]
        typer.echo(f"{job.image}:")
        if model.requirements.trimap:
            typer.echo(f"  trimap: {trimap_path}")
        for line in plan(model, height, width, trimap, tiling).describe():
            typer.echo(f"  {line}")


class _Bars:
    """rich's progress bars on stderr: the images done, and the tiles of the image being matted."""

    def __init__(self, images: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console(),
            transient=False,
        )
        self.count = images

    def __enter__(self) -> _Bars:
        self.progress.start()
        self.images = self.progress.add_task("matting", total=self.count)
        self._tiles = self.progress.add_task("tiles", total=None, visible=False)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.stop()

    def tiles(self, done: int, total: int) -> None:
        if done < total:
            self.progress.update(self._tiles, completed=done, total=total, visible=True)
        else:  # this image is done: hide the bar and restart its clock for the next one
            self.progress.reset(self._tiles, visible=False)

    def advancing(self, results: Iterator[JobResult]) -> Iterator[JobResult]:
        from rich.markup import escape

        for result in results:
            self.progress.update(self.images, advance=1, description=escape(printable(result.job.image.name)))
            yield result


def _note(message: str) -> AbstractContextManager[object]:
    """A spinner with ``message`` while something slow runs; one line on stderr when it is not a terminal."""
    if stderr_is_terminal():
        return console().status(message)
    print(message, file=sys.stderr)
    return nullcontext()


def _summarise(report: BatchReport) -> None:
    seconds = jit.compile_seconds
    compiling = f" after {seconds:.1f} s compiling solvers (first run only)" if seconds else ""
    # plain text (no markup, no user text), so rich would print the same characters
    print(
        f"wrote {len(report.written)}, skipped {len(report.skipped)}, failed {len(report.failures)} "
        f"in {report.seconds:.1f} s{compiling}", file=sys.stderr,
    )
    if report.failures:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="failed inputs", title_justify="left")
        table.add_column("input", no_wrap=True)
        table.add_column("reason", overflow="fold")
        for failure in report.failures:
            table.add_row(escape(printable(failure.path.name)), escape(printable(failure.reason)))
        console().print(table)
