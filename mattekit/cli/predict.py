"""``mattekit predict``: alpha mattes, cutouts and composites for one image or a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mattekit.batch import (
    BatchReport,
    Job,
    JobResult,
    OutputOptions,
    collect,
    plan_file,
    plan_folder,
    run_batch,
)
from mattekit.cli import app, err_console
from mattekit.compose import load_background
from mattekit.engine import TileOptions, check, plan
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS
from mattekit.models import DEFAULT_MODEL, MattingModel
from mattekit.predictor import load_input, load_model, run_model


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
            "--trim", help="Trim the trimap first: unknown pixels whose patch clearly matches only the "
            "foreground or only the background become known (any model; see docs/trimap.md).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print how each image would run (tiles, memory) and stop.")
    ] = False,
) -> None:
    """Matte an image (or every image in a folder) and write <stem>_alpha.png, plus <stem>_rgba.png with
    --rgba and <stem>_composite.png with --background."""
    if bit_depth not in (8, 16):
        raise MattekitError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    backdrop = None if background is None else load_background(background)
    options = OutputOptions(rgba=rgba, background=backdrop, bit_depth=bit_depth)
    tiling = TileOptions(tile=tile, tile_size=tile_size, overlap=overlap, batch=batch, max_memory=max_memory)
    check(tiling)
    if source.is_dir():
        jobs, planning_failures = plan_folder(source, trimap, output, options)
    elif source.exists():
        jobs, planning_failures = [plan_file(source, trimap, output, options)], []
    else:
        raise MattekitError(f"{source}: no such file or folder")
    matting_model = load_model(model, weights=weights, device=device)
    if matting_model.requirements.trimap and trimap is None:
        raise MattekitError(f"model {model!r} needs a trimap: pass --trimap (make one: `mattekit trimap`)")
    if dry_run:
        _print_plans(jobs, matting_model, tiling, max_pixels)
        return

    with _progress() as progress:
        task = progress.add_task("matting", total=len(jobs))
        tiles = progress.add_task("tiles", total=None, visible=False)

        def tile_progress(done: int, total: int) -> None:
            if done < total:
                progress.update(tiles, completed=done, total=total, visible=True)
            else:  # this image is done: hide the bar and restart its clock for the next one
                progress.reset(tiles, visible=False)

        results = run_batch(
            jobs, lambda data: run_model(matting_model, data, tiling, tile_progress, trim), options,
            skip_existing=skip_existing, max_pixels=max_pixels,
        )
        report = collect(_advancing(results, progress, task), planning_failures)
    _summarise(report)
    if report.failures:
        raise typer.Exit(1)


def _print_plans(jobs: list[Job], model: MattingModel, tiling: TileOptions, max_pixels: int) -> None:
    """--dry-run: how each image would run (whole or tiles, tiles skipped, memory), without running it."""
    for job in jobs:
        try:
            data = load_input(job.image, job.trimap, max_pixels)
        except MattekitError as err:
            typer.echo(f"{job.image}: {err}")
            continue
        height, width = data.image.shape[:2]
        typer.echo(f"{job.image}:")
        for line in plan(model, height, width, data.trimap, tiling).describe():
            typer.echo(f"  {line}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def _advancing(results: Iterator[JobResult], progress: Progress, task: TaskID) -> Iterator[JobResult]:
    for result in results:
        progress.update(task, advance=1, description=result.job.image.name)
        yield result


def _summarise(report: BatchReport) -> None:
    err_console.print(
        f"wrote {len(report.written)}, skipped {len(report.skipped)}, failed {len(report.failures)} "
        f"in {report.seconds:.1f} s"
    )
    if report.failures:
        table = Table(title="failed inputs", title_justify="left")
        table.add_column("input", no_wrap=True)
        table.add_column("reason", overflow="fold")
        for failure in report.failures:
            table.add_row(failure.path.name, failure.reason)
        err_console.print(table)
