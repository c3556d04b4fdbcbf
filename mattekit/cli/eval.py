"""``mattekit eval``: benchmark numbers (SAD, MSE, Grad, Conn) as the official DIM evaluation code gives them.

Thin layer over :mod:`mattekit.evaluate`: parse options, show progress, render the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mattekit.cli import app, err_console
from mattekit.errors import MattekitError, printable
from mattekit.evaluate import (
    LAYOUTS,
    Report,
    Row,
    TrimapReport,
    evaluate_model,
    evaluate_predictions,
    evaluate_trimaps,
    find_cases,
    pair_predictions,
    refuse_overwriting_cases,
    write_csv,
    write_json,
)
from mattekit.io import DEFAULT_MAX_PIXELS
from mattekit.metrics import check_region
from mattekit.models import DEFAULT_MODEL
from mattekit.predictor import load_model

_FORMATS = {"sad": "{:.3f}", "mse": "{:.5f}", "grad": "{:.3f}", "conn": "{:.3f}", "seconds": "{:.2f}",
            "peak_mb": "{:.0f}"}
_TITLES = {"sad": "SAD", "mse": "MSE", "grad": "Grad", "conn": "Conn", "seconds": "s / image",
           "peak_mb": "peak MB / image"}


@app.command("eval")
def eval_command(
    pred: Annotated[Path | None, typer.Option(help="Folder of predicted mattes to score.")] = None,
    gt: Annotated[Path | None, typer.Option(help="Folder of ground-truth alphas (with --pred).")] = None,
    trimap: Annotated[Path | None, typer.Option(help="Folder of trimaps (with --pred).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder: predict every image and score it in one go.")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to run with --data.")] = DEFAULT_MODEL,
    weights: Annotated[Path | None, typer.Option(help="Checkpoint file for the model (with --data).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N] (networks only).")] = "auto",
    layout: Annotated[
        str | None, typer.Option(help=f"Dataset layout, instead of detecting it: {', '.join(LAYOUTS)}.")
    ] = None,
    trimap_set: Annotated[
        list[str] | None,
        typer.Option("--trimap-set", help="alphamatting.com trimap set(s) to use (default: all found)."),
    ] = None,
    region: Annotated[
        str, typer.Option(help="Pixels scored: unknown (trimap == 128, as the official code) or full.")
    ] = "unknown",
    image_only: Annotated[
        bool,
        typer.Option(
            "--image-only",
            help="Run a trimap-free model on the image alone (with --data); the trimap then only picks "
            "the scored region.  With --region full: the whole-image protocol of trimap-free papers.",
        ),
    ] = False,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write per-image rows to this CSV file.")] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Write the full report to this JSON file.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Predictions scored at once (default: one per CPU core).")
    ] = None,
    max_pixels: Annotated[int, typer.Option(help="Refuse images with more pixels than this.")] = (
        DEFAULT_MAX_PIXELS
    ),
    allow_unpaired: Annotated[
        bool,
        typer.Option(
            "--allow-unpaired",
            help="Exit 0 even if some files could not be paired (they are listed either way).",
        ),
    ] = False,
    trimaps: Annotated[
        Path | None,
        typer.Option(
            "--trimaps", help="Folder of predicted trimaps to score against --gt alphas (TGN, Table I)."
        ),
    ] = None,
) -> None:
    """Score mattes with SAD, MSE, Grad and Conn exactly as the official Deep Image Matting code.

    Either score existing predictions (--pred DIR --gt DIR --trimap DIR) or predict and score a dataset
    (--data DIR [--model NAME]).  Exit status 1 when some file could not be paired (unless
    --allow-unpaired) or some case could not be scored; the means are over the scored cases.
    """
    check_region(region)
    if trimaps is not None:
        if gt is None or pred is not None or data is not None or trimap is not None:
            raise MattekitError("--trimaps DIR is scored against --gt DIR alone")
        trimap_report = evaluate_trimaps(trimaps, gt, max_pixels)
        _show_trimaps(trimap_report, allow_unpaired)
        if trimap_report.problems and not allow_unpaired:
            raise typer.Exit(1)
        return
    if data is not None:
        if pred is not None or gt is not None or trimap is not None:
            raise MattekitError("use either --data DIR or --pred/--gt/--trimap DIR, not both")
        dataset = find_cases(data, layout, trimap_set)
        refuse_overwriting_cases(dataset, (csv, json))
        matting_model = load_model(model, weights=weights, device=device)
        with _progress(f"{model} on {dataset.layout}", len(dataset.cases)) as advance:
            report = evaluate_model(dataset, matting_model, model, region, max_pixels, advance, image_only)
    elif pred is not None and gt is not None and trimap is not None:
        if layout is not None or trimap_set or image_only:
            raise MattekitError(
                "--layout, --trimap-set and --image-only apply to --data; --pred pairs files by name"
            )
        dataset = pair_predictions(pred, gt, trimap)
        refuse_overwriting_cases(dataset, (csv, json))
        with _progress("scoring", len(dataset.cases)) as advance:
            report = evaluate_predictions(dataset, region, jobs, advance, max_pixels)
    else:
        raise MattekitError("give --pred DIR --gt DIR --trimap DIR, or --data DIR (mattekit eval --help)")
    _show(report, allow_unpaired)
    if csv is not None:
        write_csv(report, csv)
        err_console.print(f"per-image rows: {escape(str(csv))}")
    if json is not None:
        write_json(report, json)
        err_console.print(f"report: {escape(str(json))}")
    if report.failures or (report.problems and not allow_unpaired):
        raise typer.Exit(1)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[Row], None]]:
    """A transient progress bar on stderr; yields the callback that advances it by one scored row."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda row: progress.update(task, advance=1, description=escape(printable(row.case.name)))


def _show(report: Report, allow_unpaired: bool) -> None:
    """The conventions and the table of means on stdout; then unpaired files and failed cases on stderr."""
    console = Console(highlight=False)
    for key, value in report.conventions.items():
        console.print(f"[dim]{key}:[/] {escape(value)}", soft_wrap=True)
    means = report.means()
    columns = list(next(iter(means.values())))
    table = Table(title=f"mean over {len(report.rows)} image(s)")
    table.add_column("set")
    table.add_column("images", justify="right")
    for key in columns:
        table.add_column(_TITLES[key], justify="right")
    for name, values in means.items():
        count = len(report.rows) if name == "all" else sum(r.case.trimap_set == name for r in report.rows)
        table.add_row(name, str(count), *(_FORMATS[key].format(values[key]) for key in columns))
    console.print(table)
    if report.problems:
        level = "[yellow]warning:[/]" if allow_unpaired else "[bold red]error:[/]"
        accept = "" if allow_unpaired else " (--allow-unpaired accepts that)"
        _list(f"{level} {len(report.problems)} file(s) could not be paired; the means leave them out{accept}",
              report.problems)
    if report.failures:
        count = len(report.failures)
        heading = f"[bold red]error:[/] {count} case(s) could not be scored; the means leave them out"
        _list(heading, report.failures)


def _list(heading: str, lines: list[str]) -> None:
    err_console.print(heading, soft_wrap=True)
    for line in lines:
        err_console.print(f"  {escape(printable(line))}", soft_wrap=True)


def _show_trimaps(report: TrimapReport, allow_unpaired: bool) -> None:
    """Per-trimap rows and the pooled line, in percent as Table I prints them; unpaired files on stderr."""
    if report.problems:
        level = "[yellow]warning:[/]" if allow_unpaired else "[bold red]error:[/]"
        accept = "" if allow_unpaired else " (--allow-unpaired accepts that)"
        _list(f"{level} {len(report.problems)} file(s) could not be paired; the pooled line leaves them out"
              f"{accept}", report.problems)
    console = Console(highlight=False)
    console.print("[dim]ground truth:[/] alpha > 0 dilated and alpha = 255 eroded by a 15x15 square (§IV-B1)")
    table = Table(title=f"trimaps: {len(report.rows)} image(s), percent")
    for column in ("trimap", "pixAcc", "IoU-Bg", "IoU-Unk", "IoU-Fg", "mIoU"):
        table.add_column(column, justify="left" if column == "trimap" else "right")
    for name, scores in [*report.rows, ("all (pooled)", report.pooled)]:
        values = (scores.pixel_accuracy, scores.iou_background, scores.iou_unknown, scores.iou_foreground,
                  scores.mean_iou)
        table.add_row(escape(name), *(f"{100 * v:.2f}" for v in values))
    console.print(table)
