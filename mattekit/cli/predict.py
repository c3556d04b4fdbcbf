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

from mattekit.batch import BatchReport, JobResult, OutputOptions, collect, plan_file, plan_folder, run_batch
from mattekit.cli import app, err_console
from mattekit.errors import MattekitError
from mattekit.io import DEFAULT_MAX_PIXELS
from mattekit.models import DEFAULT_MODEL
from mattekit.predictor import load_model, run_model


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
) -> None:
    """Matte an image (or every image in a folder) and write <stem>_alpha.png, plus <stem>_rgba.png with
    --rgba and <stem>_composite.png with --background."""
    if bit_depth not in (8, 16):
        raise MattekitError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    options = OutputOptions(rgba=rgba, background=background, bit_depth=bit_depth)
    if source.is_dir():
        jobs, planning_failures = plan_folder(source, trimap, output, options)
    elif source.exists():
        jobs, planning_failures = [plan_file(source, trimap, output, options)], []
    else:
        raise MattekitError(f"{source}: no such file or folder")
    matting_model = load_model(model, weights=weights, device=device)
    if matting_model.requirements.trimap and trimap is None:
        raise MattekitError(f"model {model!r} needs a trimap: pass --trimap (make one: `mattekit trimap`)")

    with _progress() as progress:
        task = progress.add_task("matting", total=len(jobs))
        results = run_batch(
            jobs, lambda data: run_model(matting_model, data), options,
            skip_existing=skip_existing, max_pixels=max_pixels,
        )
        report = collect(_advancing(results, progress, task), planning_failures)
    _summarise(report)
    if report.failures:
        raise typer.Exit(1)


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
