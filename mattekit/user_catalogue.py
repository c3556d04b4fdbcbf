"""The user's own catalogue: models trained with ``mattekit train`` and registered by name.

``mattekit models add NAME RUN_DIR`` copies ``RUN_DIR/model.safetensors`` into the zoo's assets cache
(``$HF_HOME/assets/mattekit/imported/NAME/NAME.safetensors`` with its ``.sha256``, where
``mattekit models import`` puts converted checkpoints) and appends a ``[[model]]`` entry in the format of
``models.toml`` to the user catalogue, ``$MATTEKIT_CONFIG_DIR/models.toml`` (default
``$XDG_CONFIG_HOME/mattekit``, else ``~/.config/mattekit``).  :func:`mattekit.zoo.load_catalogue` merges
it after the packaged one, so ``predict --model NAME``, ``eval --model NAME`` and ``models list`` see it;
a name the packaged catalogue or the registry already uses is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mattekit.errors import MattekitError
from mattekit.io import atomic_save

CONFIG_ENV = "MATTEKIT_CONFIG_DIR"
#: Entries of the user catalogue say this in their ``licence`` field.
LICENCE = "your own"
_SOURCE = "mattekit train"


def config_dir() -> Path:
    """``$MATTEKIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/mattekit``, else ``~/.config/mattekit``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "mattekit"


def catalogue_path() -> Path:
    """The user catalogue file (it may not exist)."""
    return config_dir() / "models.toml"


def is_user_entry(entry: object) -> bool:
    """Whether a catalogue entry comes from ``mattekit models add``."""
    return getattr(entry, "licence", None) == LICENCE


@dataclass(frozen=True)
class Run:
    """What ``mattekit train`` left in a run directory (``summary.json`` and the export)."""

    directory: Path
    architecture: str
    task: str
    step: int
    model: Path
    sha256: str
    validation: dict[str, float]
    validation_data: str | None


def read_run(run_dir: Path) -> Run:
    """The finished run in ``run_dir``, its export checked against the sha256 recorded beside it."""
    from mattekit.zoo import sha256_of

    summary_path, model = run_dir / "summary.json", run_dir / "model.safetensors"
    if not summary_path.is_file() or not model.is_file():
        raise MattekitError(f"{run_dir}: not a finished training run (no summary.json / model.safetensors)")
    try:
        summary = json.loads(summary_path.read_text("utf-8"))
        validation = dict(summary["validation"])
        run = Run(
            run_dir.resolve(),
            str(summary["architecture"]),
            str(summary["task"]),
            int(summary["step"]),
            model,
            str(summary["sha256"]),
            {k: float(v) for k, v in validation.items() if k != "data" and v is not None},
            validation.get("data"),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise MattekitError(f"{summary_path}: unreadable run summary ({error})") from None
    actual = sha256_of(model)
    if actual != run.sha256:
        raise MattekitError(f"{model}: sha256 {actual} is not the {run.sha256} the run recorded")
    return run


def _entry_toml(name: str, run: Run, paper: str) -> str:
    """The ``[[model]]`` entry for a run, in the packaged catalogue's format."""

    def text(value: str) -> str:
        return json.dumps(value)  # a JSON string is a valid TOML basic string

    lines = [
        "[[model]]",
        f"name = {text(name)}",
        f"architecture = {text(run.architecture)}",
        f"variant = {text(f'{run.task} recipe, step {run.step}')}",
        f"summary = {text(f'trained with mattekit train in {run.directory}')}",
        'input = "trimap"',
        f"licence = {text(LICENCE)}",
        f"paper = {text(paper)}",
        f"code = {text(str(run.directory))}",
        "",
        "[model.weights]",
        f"file = {text(f'{name}.safetensors')}",
        "published = false",
    ]
    scores = {key: run.validation[key] for key in ("sad", "mse", "grad", "conn") if key in run.validation}
    if scores:
        lines += [
            "",
            "[[model.metrics]]",
            f"dataset = {text(run.validation_data or 'validation')}",
            f"source = {text(f'{_SOURCE}, validation at step {run.step}')}",
        ]
        lines += [f"{key} = {value!r}" for key, value in scores.items()]
    return "\n".join(lines) + "\n"


def add_run(name: str, run_dir: Path, replace: bool = False) -> Path:
    """Register the run in ``run_dir`` as ``name``; returns the weights' place in the cache.

    The weights must load strictly into the run's architecture.  ``replace`` overwrites an earlier user
    entry of that name (never a packaged one).
    """
    from mattekit import zoo
    from mattekit.models import create_model, get_model_info, list_models

    run = read_run(run_dir)
    info = get_model_info(run.architecture)
    packaged = zoo.load_catalogue(zoo.catalogue_location())
    if name in packaged or name in {model.name for model in list_models()}:
        raise MattekitError(f"{name!r} is a model of mattekit itself; pick another name")
    path = catalogue_path()
    existing = path.read_text("utf-8") if path.is_file() else ""
    current = zoo.parse_catalogue(existing, str(path)) if existing else {}
    if name in current and not replace:
        raise MattekitError(f"{name!r} is already in {path}; pass --replace to overwrite it")
    entry_text = _entry_toml(name, run, info.paper)
    entry = zoo.parse_catalogue(entry_text, "the new entry")[name]  # validates name, architecture, fields
    create_model(run.architecture, weights=run.model, device="cpu")  # refuses weights that do not fit
    target = zoo.imported_path(entry)
    atomic_save(target, lambda tmp: shutil.copyfile(run.model, tmp))
    atomic_save(target.with_name(target.name + ".sha256"), lambda tmp: tmp.write_text(run.sha256 + "\n"))
    kept = "".join(_entry_toml_of(other, existing) for other in current if other != name)
    atomic_save(path, lambda tmp: tmp.write_text(_HEADER + kept + "\n" + entry_text, encoding="utf-8"))
    return target


_HEADER = (
    "# Models you trained and registered with `mattekit models add NAME RUN_DIR` (format: models.toml of\n"
    "# mattekit).  mattekit merges this file after its own catalogue.\n\n"
)


def _entry_toml_of(name: str, text: str) -> str:
    """The text of entry ``name`` in a user catalogue written by :func:`add_run` (blocks start at
    ``[[model]]``)."""
    blocks = ["[[model]]" + block for block in text.split("[[model]]")[1:]]
    for block in blocks:
        if f"name = {json.dumps(name)}" in block:
            return "\n" + block.strip() + "\n"
    return ""


def user_entries(packaged: dict[str, object]) -> dict[str, object]:
    """The user catalogue's entries (none when the file does not exist); a clash with ``packaged`` names
    is an error naming the file."""
    from mattekit import zoo

    path = catalogue_path()
    if not path.is_file():
        return {}
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise MattekitError(f"{path}: cannot read the user catalogue ({err.strerror})") from None
    entries = zoo.parse_catalogue(text, str(path))
    clash = sorted(set(entries) & set(packaged))
    if clash:
        raise MattekitError(f"{path}: {clash[0]!r} is already a model of mattekit's catalogue; rename it")
    return dict(entries)
