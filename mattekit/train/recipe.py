"""Training recipes: a TOML file read into a :class:`Recipe`, where every key is checked.

A recipe is data, not code.  The built-in ones (``mattekit/train/recipes/<name>.toml``) reproduce the
papers' settings (docs/train.md); a user's TOML file may start from one with ``base = "gca"`` and change
only what differs.  ``--set key=value`` changes one key after that (``--set data.random_interp=true``,
``--set options.rec_weight=2``); the value is read as a TOML value, else as a plain string.

The keys everybody reaches for are top-level; the augmentation chain is the ``[data]`` table; the
``[options]`` table belongs to the recipe's task, which declares it as a dataclass
(:attr:`mattekit.train.task.Task.Options`).  An unknown key anywhere is an error naming it.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from mattekit.errors import MattekitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

Precision = Literal["off", "bf16", "fp16"]
Schedule = Literal["cosine", "poly", "constant"]
OptimizerName = Literal["adam", "adamw", "sgd"]
Clip = Literal["off", "norm", "running"]
Interpolation = Literal["official", "random", "nearest", "linear", "cubic", "lanczos"]


@dataclass(frozen=True)
class DataOptions:
    """The ``[data]`` table: how training samples are made (GCA "Data Augmentation", official
    ``dataloader/data_generator.py``; see :mod:`mattekit.train.data`)."""

    #: "auto" detects it; "composition" (fg/ alpha/ + bg/ or a background list: Comp-1k, D-646, generic),
    #: "composited" (image/ alpha/ [trimap/]).
    layout: Literal["auto", "composition", "composited"] = "auto"
    #: Backgrounds for the composition layout: a folder, or a text file with one image path per line
    #: (relative paths are relative to the file); "" means ``bg/`` inside ``--data``.
    backgrounds: str = ""
    #: Probability of merging a second foreground into the first (fg = F1 a1 + F2 (1 - a1)).
    merge_prob: float = 0.5
    #: Probability of resizing foreground and alpha to ``resize_size`` squared before the affine transform.
    resize_prob: float = 0.25
    resize_size: int = 640
    #: Rotation range in degrees, used only for foregrounds whose long side is at least ``rotate_min_side``.
    rotation: float = 30.0
    rotate_min_side: int = 1024
    #: Per-axis scale range, shear range in degrees, and the probability of flipping each axis.
    scale: tuple[float, float] = (0.8, 1.25)
    shear: float = 10.0
    flip_prob: float = 0.5
    #: Kernel sizes (inclusive) of the random elliptical erosions that make the trimap from alpha.
    erosion: tuple[int, int] = (1, 29)
    #: Hue jitter in degrees (saturation and value move as in the official generator); 0 turns jitter off.
    hue: float = 40.0
    #: Resampling of every resize: "official" (nearest for foreground and alpha, cubic for backgrounds),
    #: "random" (HOP's random interpolation, RI), or one method everywhere.  Trimaps are always nearest.
    interpolation: Interpolation = "official"
    #: Epoch length in samples; 0 means one pass over the backgrounds (official), or the images.
    epoch_size: int = 0


@dataclass(frozen=True)
class Recipe:
    """A resolved training recipe (the top-level keys of the TOML file)."""

    #: The task that knows the architecture (``mattekit.train.list_tasks()``): "gca", "hop", ...
    task: str
    steps: int = 200_000
    #: Per process (per GPU); the total batch is this times the number of processes.
    batch_size: int = 10
    crop_size: int = 512
    lr: float = 4e-4
    warmup_steps: int = 5000
    schedule: Schedule = "cosine"
    #: Exponent of the "poly" schedule, lr (1 - t)^power.
    poly_power: float = 0.9
    optimizer: OptimizerName = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: "running": clip at ``clip_value`` times a running average (momentum 0.999) of past gradient norms
    #: (official GCA trainer); "norm": clip at ``clip_value``; "off".
    clip: Clip = "off"
    clip_value: float = 2.0
    #: Mixed precision on a GPU ("off" on the CPU whatever is asked).
    amp: Precision = "off"
    sync_bn: bool = True
    channels_last: bool = False
    compile: bool = False
    log_every: int = 10
    val_every: int = 2000
    save_every: int = 2000
    #: Validate on at most this many images (0: all).
    val_limit: int = 0
    workers: int = 4
    seed: int = 0
    #: An ImageNet checkpoint whose matching layers initialise the encoder ("" : start from scratch).
    backbone_weights: str = ""
    data: DataOptions = field(default_factory=DataOptions)
    #: The task's own ``[options]`` table, read into its ``Options`` dataclass.
    options: Any = None

    def check(self, where: str) -> None:
        """Refuse values no run could use, naming the key."""
        positive = ("steps", "batch_size", "crop_size", "log_every", "val_every", "save_every")
        for key in positive:
            if getattr(self, key) <= 0:
                raise MattekitError(f"{where}: {key!r} must be positive, not {getattr(self, key)}")
        for key in ("warmup_steps", "val_limit", "workers", "weight_decay", "lr"):
            if getattr(self, key) < 0:
                raise MattekitError(f"{where}: {key!r} must not be negative, not {getattr(self, key)}")
        if self.warmup_steps > self.steps:
            raise MattekitError(f"{where}: 'warmup_steps' ({self.warmup_steps}) must not exceed 'steps'")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as TOML-ready data (``--print`` and the run directory's ``recipe.toml``)."""
        data = dataclasses.asdict(self)
        if self.options is None:
            data.pop("options")
        return _plain(data)


#: The top-level key naming a recipe to start from.
BASE_KEY = "base"


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in the package."""
    folder = resources.files("mattekit.train") / "recipes"
    return sorted(item.name[: -len(".toml")] for item in folder.iterdir() if item.name.endswith(".toml"))


def _read_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise MattekitError(f"{where}: not valid TOML ({error})") from None


def _raw(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The merged key tree of a recipe and the recipes it is based on."""
    if name_or_path in seen:
        raise MattekitError(f"recipe {name_or_path!r}: `base` chain loops ({' -> '.join(seen)})")
    path = Path(name_or_path)
    if name_or_path in builtin_recipes():
        where = f"recipe {name_or_path!r}"
        text = (resources.files("mattekit.train") / "recipes" / f"{name_or_path}.toml").read_text("utf-8")
    elif path.suffix == ".toml" and path.is_file():
        where, text = str(path), path.read_text("utf-8")
    else:
        raise MattekitError(
            f"unknown recipe {name_or_path!r}: not a .toml file, nor a built-in recipe "
            f"({', '.join(builtin_recipes())})"
        )
    tree = _read_toml(text, where)
    base = tree.pop(BASE_KEY, None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise MattekitError(f"{where}: `base` must be a recipe name or file, not {base!r}")
    return _merge(_raw(base, (*seen, name_or_path)), tree)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignment(assignment: str) -> tuple[list[str], Any]:
    """``"data.hue=20"`` to (["data", "hue"], 20): the value as TOML, else as a plain string."""
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise MattekitError(f"--set {assignment!r}: expected key=value (e.g. --set lr=1e-4)")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return [part.strip() for part in parts], value


def apply_assignments(tree: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``tree`` with each ``key=value`` of ``--set`` applied (the schema checks the keys afterwards)."""
    tree = _merge({}, tree)
    for assignment in assignments:
        parts, value = parse_assignment(assignment)
        table = tree
        for part in parts[:-1]:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise MattekitError(f"--set {assignment!r}: {part!r} is not a table")
            table = child
        table[parts[-1]] = value
    return tree


def load_recipe(name_or_path: str, assignments: list[str] | None = None) -> Recipe:
    """Read, merge, override and check a recipe; its task's ``[options]`` table is read too."""
    from mattekit.train.task import get_task  # the task registry imports this module

    tree = apply_assignments(_raw(name_or_path), assignments or [])
    where = f"recipe {name_or_path!r}"
    options = tree.pop("options", {})
    recipe = from_table(Recipe, tree, where)
    task = get_task(recipe.task)
    # (no square brackets in messages: the CLI prints them with rich, which reads brackets as markup)
    return dataclasses.replace(recipe, options=from_table(task.Options, options, f"{where}, options table"))


# --------------------------------------------------------------------------------------------------------
# The schema: dataclass fields read from TOML tables with their declared types.


def from_table(cls: type, table: object, where: str) -> Any:
    """An instance of dataclass ``cls`` from a TOML table: types checked, unknown keys refused."""
    if not isinstance(table, dict):
        raise MattekitError(f"{where}: expected a table, not {table!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - names)
    if unknown:
        known = f"known: {', '.join(sorted(names))}" if names else "it takes none"
        raise MattekitError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; {known}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            values[f.name] = _convert(hints[f.name], table[f.name], f"{where}: {f.name!r}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MattekitError(f"{where}: missing {f.name!r}")
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if callable(check):
        check(where)
    return instance


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return from_table(kind, value, where)
    if kind is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise MattekitError(f"{where} must be one of {', '.join(map(repr, args))}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _convert(option, value, where)
            except MattekitError:
                continue
        raise MattekitError(f"{where}: {value!r} is not a {kind}")
    if kind is type(None):
        if value is not None:
            raise MattekitError(f"{where} must be empty")
        return None
    if origin is tuple:
        if not isinstance(value, list) or len(value) != len(args):
            raise MattekitError(f"{where} must be a list of {len(args)} values, not {value!r}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(arg, item, f"{where}[{i}]") for i, (arg, item) in pairs)
    if origin in (list, tuple) or kind in (list,):
        if not isinstance(value, list):
            raise MattekitError(f"{where} must be a list, not {value!r}")
        item = args[0] if args else Any
        return [_convert(item, element, f"{where}[{i}]") for i, element in enumerate(value)]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is an int in Python; a count written as `true` must still fail.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise MattekitError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


def dumps(data: dict[str, Any]) -> str:
    """Minimal TOML writer for a recipe tree (scalars, lists of scalars, nested tables)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
