"""The ``mattekit`` command: a thin layer over the Python API, one module per command."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from importlib import import_module
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from typer.exceptions import TyperException

from mattekit.errors import (
    BUG_NOTE,
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER_ERROR,
    describe,
    is_user_error,
)

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="mattekit",
    help="Image matting: alpha mattes, cutouts and benchmark numbers from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Messages for the user (errors, summaries) go to stderr so that stdout stays clean for data: through
#: ``err_console``, made on first use (``from mattekit.cli import err_console``), since importing rich costs
#: ≈0.03 s of CPU that a ``predict`` writing to a pipe or a file has no use for (:func:`stderr_is_terminal`).
err_console: Console
_console: Console | None = None


def console() -> Console:
    """The rich console on stderr (``err_console``), made on first use."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
    return _console


def __getattr__(name: str) -> object:
    if name == "err_console":
        return console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def stderr_is_terminal() -> bool:
    """Whether rich treats stderr as a terminal, where it draws live (progress bars, spinners), decided
    without importing rich: by rich's own rules, the variables TTY_COMPATIBLE (0 or 1) and FORCE_COLOR (set
    and not empty) before ``isatty()``."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    if "FORCE_COLOR" in os.environ:
        return os.environ["FORCE_COLOR"] != ""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


#: Each command's modules add it to ``app`` when imported (``models add`` joins the ``models`` group).
_COMMANDS = {
    "predict": ("predict",),
    "trimap": ("trimap",),
    "eval": ("eval",),
    "models": ("models", "models_add"),
    "train": ("train",),
}


def error_line(message: str) -> None:
    """Print one ``error:`` line; the message is text, never rich markup (file names hold brackets)."""
    from rich.markup import escape

    console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from mattekit import __version__

        typer.echo(f"mattekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Image matting: alpha mattes, cutouts and benchmark numbers from the command line."""


def _register_commands(argv: list[str]) -> None:
    """Import the modules of the command being run, or every command's for help and usage errors: a run
    of ``mattekit predict`` does not pay for the imports of ``eval`` (OpenCV, the metrics) or ``train``."""
    words = [arg for arg in argv if not arg.startswith("-")]
    wanted = [_COMMANDS[words[0]]] if words and words[0] in _COMMANDS else _COMMANDS.values()
    for modules in wanted:
        for name in modules:
            import_module(f"mattekit.cli.{name}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI under the error policy of :mod:`mattekit.errors`: user and OS errors become one line on
    stderr and exit status 2; a bug shows its traceback and a request to report it (exit status 3)."""
    _register_commands(sys.argv[1:] if argv is None else argv)
    # SIGTERM (a killed batch job) unwinds like Ctrl-C, so no temporary output file is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = app(args=argv, standalone_mode=False)
    except TyperException as err:  # usage errors (typer bundles click's): usage, then one "Error:" line
        err.show()
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        console().print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mattekit models list | head`: the reader has gone, nothing left to say
        _silence_stdout()
        return EXIT_OK
    except Exception as err:
        if not is_user_error(err):
            traceback.print_exc()
            console().print(BUG_NOTE, soft_wrap=True)
            return EXIT_BUG
        error_line(describe(err))
        return EXIT_USER_ERROR
    return result if isinstance(result, int) else EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not raise again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
