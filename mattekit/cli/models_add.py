"""``mattekit models add``: register a run of ``mattekit train`` by name (see mattekit.user_catalogue)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mattekit import user_catalogue
from mattekit.cli import err_console
from mattekit.cli.models import Name, models_app


@models_app.command()
def add(
    name: Name,
    run_dir: Annotated[
        Path, typer.Argument(help="The run directory of `mattekit train -o RUN_DIR`.", show_default=False)
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite your earlier model of that name.")
    ] = False,
) -> None:
    """Register a trained run by name: `predict --model NAME` and `eval --model NAME` then use it."""
    target = user_catalogue.add_run(name, run_dir, replace)
    err_console.print(
        f"{name}: registered in {user_catalogue.catalogue_path()}, weights in {target}", soft_wrap=True
    )


def print_user_models(entries: Iterable[object], console: Console) -> None:
    """Below ``models list``: the user's own models with their validation scores."""
    mine = [entry for entry in entries if user_catalogue.is_user_entry(entry)]
    if not mine:
        return
    console.print(f"your models ({user_catalogue.catalogue_path()}):")
    for entry in mine:
        scores = [
            f"{label} {value:.4g}"
            for metric in entry.metrics  # type: ignore[attr-defined]
            for label, value in (
                ("SAD", metric.sad),
                ("MSE", metric.mse),
                ("Grad", metric.grad),
                ("Conn", metric.conn),
            )
            if value is not None
        ]
        where = entry.metrics[0].dataset if entry.metrics else ""  # type: ignore[attr-defined]
        shown = f"validation on {where}: {', '.join(scores)}" if scores else "not validated"
        console.print(f"  {entry.name}  {entry.variant}  {shown}", soft_wrap=True)  # type: ignore[attr-defined]
