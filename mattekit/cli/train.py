"""``mattekit train``: run a training recipe; the logic is in mattekit.train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mattekit.cli import app, err_console
from mattekit.errors import MattekitError


@app.command()
def train(
    recipe: Annotated[
        str,
        typer.Argument(help="A built-in recipe (gca, hop, ...) or a recipe .toml file.", show_default=False),
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Training set folder (docs/train.md).")] = None,
    val: Annotated[
        Path | None, typer.Option("--val", help="Validation benchmark folder (any `mattekit eval` layout).")
    ] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Run directory.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Change a recipe key: key=value (repeatable).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in -o from its last checkpoint.")
    ] = False,
    print_: Annotated[bool, typer.Option("--print", help="Print the resolved recipe and exit.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
) -> int:
    """Train a matting network from a paper's recipe; torchrun scales it to several GPUs or nodes."""
    from mattekit.train.recipe import dumps, load_recipe

    resolved = load_recipe(recipe, set_ or [])
    if print_:
        typer.echo(dumps(resolved.to_dict()), nl=False)
        return 0
    if data is None or out is None:
        raise MattekitError("train: --data DIR and -o RUN_DIR are required (or --print)")
    from mattekit.train.trainer import train as run

    result = run(resolved, data, out, val, resume=resume, device=device)
    if result.stopped:
        err_console.print(
            f"stopped at step {result.step}; saved {out / 'checkpoints' / 'last.pt'} "
            f"(continue with --resume)",
            soft_wrap=True,
        )
        return 143
    if result.model is not None:
        err_console.print(f"done: {result.model}", soft_wrap=True)
        typer.echo(str(result.model))
    return 0
