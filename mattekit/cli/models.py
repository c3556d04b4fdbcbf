"""``mattekit models``: the model zoo (list, info, download, import, verify, cache); logic in mattekit.zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mattekit import models as registry
from mattekit import zoo
from mattekit.cli import app, err_console
from mattekit.errors import MattekitError

models_app = typer.Typer(
    help="The model zoo: named models, their weights, and the local cache.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

#: Tables and reports are the commands' output, so they go to stdout.
console = Console(highlight=False)

Name = Annotated[str, typer.Argument(help="Model name (see `mattekit models list`).", show_default=False)]


def _status(entry: zoo.Entry) -> str:
    if entry.weights is None:
        return "weight-free"
    if zoo.cached_file(entry) is not None:
        return "[green]cached[/]"
    return "not cached" if entry.weights.hub else "[yellow]import needed[/]"


@models_app.command("list")
def list_models(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the docs/models.md page.")] = False,
) -> None:
    """Every model of the catalogue, with where its weights stand."""
    catalogue = zoo.load_catalogue()
    if markdown:
        typer.echo(zoo.markdown(catalogue), nl=False)
        return
    table = Table(title=escape(f"models ({zoo.catalogue_location()})"), title_justify="left")
    for column in ("name", "architecture", "input", "licence", "weights", "size"):
        # names are what users type: never cut them
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=column == "name")
    for entry in catalogue.values():
        table.add_row(
            entry.name, entry.architecture, entry.input, entry.licence, _status(entry),
            zoo.human_size(zoo.weights_size(entry)),
        )
    console.print(table)
    from mattekit.cli.models_add import print_user_models

    print_user_models(catalogue.values(), console)


@models_app.command()
def info(name: Name) -> None:
    """Everything the catalogue says about one model (or one architecture, e.g. gca), with its parameter
    count and its cached file."""
    entry = zoo.find_entry(name)
    rows = _info_rows(entry) if entry is not None else _architecture_rows(name)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for field, value in rows:
        table.add_row(field, value)
    console.print(table)


def _size_rows(architecture: str) -> list[tuple[str, str]]:
    size = zoo.network_size(architecture)
    if size is None:
        return [("parameters", "none (weight-free)")]
    note = f"; {size.note}" if size.note else ""
    return [
        ("parameters", f"{size.parameters:,} (state_dict values)"),
        (f"FLOPs at {size.side}²", f"{size.flops / 1e9:,.1f} G (FlopCounterMode: 2 per multiply-add){note}"),
        # Papers' "FLOPs" (thop, fvcore) are usually multiply-adds: SPAMattNet's Table IX is.
        (f"MACs at {size.side}²", f"{size.flops / 2e9:,.1f} G (multiply-adds, what papers' FLOPs often are)"),
    ]


def _architecture_rows(name: str) -> list[tuple[str, str]]:
    """An architecture of the registry that is not itself a catalogue name (``gca``, ``hop``)."""
    architectures = [model.name for model in registry.list_models()]
    if name not in architectures:
        raise MattekitError(
            f"unknown model {name!r}; the catalogue has: {', '.join(zoo.load_catalogue())}; "
            f"architectures: {', '.join(architectures)}"
        )
    info = registry.get_model_info(name)
    needs = info.requirements
    needs_list = (("trimap", needs.trimap), ("coarse mask", needs.coarse_mask), ("weights", needs.weights))
    entries = [entry.name for entry in zoo.load_catalogue().values() if entry.architecture == name]
    return [
        ("architecture", info.name),
        ("summary", info.summary),
        *_size_rows(name),
        ("needs", ", ".join(what for what, needed in needs_list if needed) or "the image only"),
        ("paper", info.paper),
        ("catalogue entries", ", ".join(entries) or "none"),
    ]


def _info_rows(entry: zoo.Entry) -> list[tuple[str, str]]:
    rows = [
        ("name", entry.name),
        ("summary", entry.summary),
        ("architecture", f"{entry.architecture} (variant {entry.variant})"),
        ("input", entry.input),
        *_size_rows(entry.architecture),
        ("licence", f"{entry.licence}: {entry.licence_note}" if entry.licence_note else entry.licence),
        ("paper", entry.paper),
        ("code", entry.code),
    ]
    if entry.weights is not None:
        hub = entry.weights.hub
        rows.append(("zoo file", entry.weights.file))
        if hub is None:
            upstream = "import the upstream checkpoint" if entry.upstream else "no upstream checkpoint exists"
            rows.append(("hub", f"not published yet: {upstream}"))
        else:
            rows += [("hub", f"{hub.repo} @ {hub.revision}"), ("sha256", hub.sha256),
                     ("size", f"{hub.size:,} bytes")]
        cached = zoo.cached_file(entry)
        rows.append(("cached", str(cached) if cached else "no"))
    if entry.upstream is not None:
        up = entry.upstream
        rows += [
            ("upstream", f"{up.file} ({up.url})"),
            ("upstream sha256", up.sha256 or "unknown"),
            ("upstream size", "unknown" if up.size is None else f"{up.size:,} bytes"),
        ]
    for metric in entry.metrics:
        scores = ", ".join(
            f"{label} {value:g}" for label, value in
            (("SAD", metric.sad), ("MSE", metric.mse), ("Grad", metric.grad), ("Conn", metric.conn))
            if value is not None
        )
        note = f"; {metric.note}" if metric.note else ""
        rows.append((f"{metric.dataset}", f"{scores} ({metric.source}{note})"))
    return rows


@models_app.command()
def download(name: Name) -> None:
    """Fetch a model's weights into the hub cache (pinned commit, sha256 checked; a dropped connection
    resumes)."""
    path = zoo.download(zoo.get_entry(name))
    err_console.print(escape(f"{name}: verified {path}"), soft_wrap=True)
    typer.echo(str(path))


@models_app.command("import")
def import_(
    name: Name,
    file: Annotated[
        Path, typer.Argument(help="The official checkpoint (e.g. gca-dist.pth).", show_default=False)
    ],
) -> None:
    """Convert an official checkpoint into the zoo format (safetensors) in the cache."""
    entry = zoo.get_entry(name)
    report = zoo.import_checkpoint(entry, file)
    if report.upstream_verified:
        verified = f"{file}: sha256 matches the official {report.upstream_file}"
        err_console.print(escape(verified), soft_wrap=True)
    else:
        err_console.print(
            f"[yellow]warning:[/] {escape(str(file))}: could not be verified against upstream (no published "
            f"sha256 for the official file); it loads strictly into {entry.architecture}. "
            f"sha256 {report.source_sha256}",
            soft_wrap=True,
        )
    err_console.print(escape(f"{name}: imported as {report.path} (sha256 {report.sha256})"), soft_wrap=True)
    typer.echo(str(report.path))


@models_app.command()
def verify(
    names: Annotated[list[str] | None, typer.Argument(help="Models to check (default: all cached).")] = None,
) -> None:
    """Re-hash cached weights; a file that no longer matches is deleted (exit status 1)."""
    catalogue = zoo.load_catalogue()
    entries = [zoo.get_entry(name, catalogue) for name in names] if names else list(catalogue.values())
    checks = zoo.verify_cache(entries)
    if not checks:
        err_console.print("no cached weights to verify")
    for check in checks:
        if check.ok:
            console.print(f"[green]ok[/]   {escape(f'{check.entry}  {check.path}')}", soft_wrap=True)
        else:
            console.print(f"[red]FAIL[/] {escape(check.message)}", soft_wrap=True)
    if any(not check.ok for check in checks):
        raise typer.Exit(1)


@models_app.command()
def cache() -> None:
    """Where the zoo keeps weights, and how much is there."""
    catalogue = zoo.load_catalogue()
    files = zoo.cached_files(catalogue.values())
    console.print(escape(f"hub cache:      {zoo.hub_cache_dir()}"), soft_wrap=True)
    console.print(escape(f"imported files: {zoo.imported_dir()}"), soft_wrap=True)
    table = Table(title_justify="left")
    table.add_column("model")
    table.add_column("size", justify="right")
    table.add_column("file", overflow="fold")
    for found in files:
        table.add_row(found.entry, zoo.human_size(found.size), escape(str(found.path)))
    if files:
        console.print(table)
    console.print(f"{len(files)} cached model file(s), {zoo.human_size(sum(f.size for f in files))}")
