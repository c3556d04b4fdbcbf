"""The ``mattekit`` command: a thin layer over the Python API, one module per command."""

from __future__ import annotations

import signal
import sys
from importlib import import_module
from types import FrameType

import typer
from rich.console import Console
from typer.exceptions import TyperException

from mattekit.errors import MattekitError

app = typer.Typer(
    name="mattekit",
    help="Image matting: alpha mattes, cutouts and benchmark numbers from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Messages for the user (errors, summaries) go to stderr so that stdout stays clean for data.
err_console = Console(stderr=True, highlight=False)


#: Each command's module adds it to ``app`` when imported.
_COMMANDS = ("predict", "trimap", "eval", "models")


@app.callback()
def _group() -> None:
    # A callback keeps ``app`` a group of commands even when only one of them is registered.
    pass


def _register_commands(argv: list[str]) -> None:
    """Import the module of the command being run, or every command's for help and usage errors: a run
    of ``mattekit predict`` does not pay for the imports of ``eval`` (OpenCV, the metrics)."""
    words = [arg for arg in argv if not arg.startswith("-")]
    wanted = [words[0]] if words and words[0] in _COMMANDS else _COMMANDS
    for name in wanted:
        import_module(f"mattekit.cli.{name}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit status 2, never a traceback."""
    _register_commands(sys.argv[1:] if argv is None else argv)
    # SIGTERM (a killed batch job) unwinds like Ctrl-C, so no temporary output file is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = app(args=argv, standalone_mode=False)
    except MattekitError as err:
        err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
        return 2
    except TyperException as err:  # usage errors (typer bundles click's): usage, then one "Error:" line
        err.show()
        return err.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
