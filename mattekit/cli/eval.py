"""``mattekit eval``: benchmark numbers (SAD, MSE, Grad, Conn) as the official DIM evaluation code gives them.

Thin layer over :mod:`mattekit.evaluate`: parse options, show progress, render the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mattekit.cli import app, err_console
from mattekit.errors import MattekitError
from mattekit.evaluate import (
    LAYOUTS,
    Dataset,
    Report,
    Row,
    evaluate_model,
    evaluate_predictions,
    write_csv,
    write_json,
)
from mattekit.io import DEFAULT_MAX_PIXELS
from mattekit.metrics import REGIONS
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
) -> None:
    """Score mattes with SAD, MSE, Grad and Conn exactly as the official Deep Image Matting code.

    Either score existing predictions (--pred DIR --gt DIR --trimap DIR) or predict and score a dataset
    (--data DIR [--model NAME]).
    """
    if region not in REGIONS:
        raise MattekitError(f"--region must be one of {', '.join(REGIONS)}, not {region!r}")
    with _progress() as progress:
        task = progress.add_task("scoring", total=None)

        def start(dataset: Dataset) -> None:
            progress.update(task, total=len(dataset.cases), description=f"{model} on {dataset.layout}")

        def advance(row: Row) -> None:
            progress.update(task, advance=1, description=row.case.name)

        if data is not None:
            if pred is not None or gt is not None or trimap is not None:
                raise MattekitError("use either --data DIR or --pred/--gt/--trimap DIR, not both")
            matting_model = load_model(model, weights=weights, device=device)
            report = evaluate_model(data, matting_model, model, layout, trimap_set, region, max_pixels,
                                    start, advance)
        elif pred is not None and gt is not None and trimap is not None:
            if layout is not None or trimap_set:
                raise MattekitError("--layout and --trimap-set apply to --data; --pred pairs files by name")
            report = evaluate_predictions(pred, gt, trimap, region, jobs, advance)
        else:
            raise MattekitError("give --pred DIR --gt DIR --trimap DIR, or --data DIR (mattekit eval --help)")
    _show(report)
    if csv is not None:
        write_csv(report, csv)
        err_console.print(f"per-image rows: {csv}")
    if json is not None:
        write_json(report, json)
        err_console.print(f"report: {json}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )


def _show(report: Report) -> None:
    """Unpaired files on stderr; the conventions and the table of means on stdout."""
    if report.problems:
        err_console.print(f"[yellow]warning:[/] {len(report.problems)} file(s) not evaluated:")
        for line in report.problems:
            err_console.print(f"  {line}", soft_wrap=True)
    console = Console(highlight=False)
    for key, value in report.conventions.items():
        console.print(f"[dim]{key}:[/] {value}", soft_wrap=True)
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
