"""The model zoo: named models from ``models.toml``, their weights fetched, verified and cached.

A catalogue entry names an architecture of the registry (:mod:`mattekit.models`) and, for a network, the
zoo file that holds its weights.  Files come from a Hugging Face Hub repository pinned to a commit
(:func:`download`) or are converted from the authors' original checkpoint (:func:`import_checkpoint`);
either way their sha256 is checked before use, and a file that fails the check is deleted.

Where files live, following huggingface_hub's conventions:

- downloads go to the hub cache (``$HF_HUB_CACHE``, default ``$HF_HOME/hub``), shared with every other
  tool that uses the hub; ``HF_ENDPOINT`` picks the hub and ``HF_HUB_OFFLINE=1`` forbids the network;
- imported files go to the assets cache, huggingface_hub's place for a library's own files:
  ``$HF_ASSETS_CACHE/mattekit/imported/<name>/`` (default ``$HF_HOME/assets``), each beside a
  ``.sha256`` file that records the hash it had when it was written.

huggingface_hub reads those variables once, when it is imported; the zoo reads them at each call and
passes the result on, so a process that changes them (a test, a notebook) is obeyed.

Shipping the catalogue: the top-level ``models.toml`` is the one file that is edited.
``mattekit/models.toml`` is a symlink to it, so setuptools copies the real file into the wheel and the
sdist as ordinary package data (it follows symlinks when it copies), an editable install reads it through
the link, and there is no second copy that could drift (nor a build step to forget).  ``tests/test_zoo.py``
builds a wheel, installs it non-editably and reads the catalogue from it.  A checkout without symlink
support (Windows without developer mode) gets a text file in place of the link: the same test fails
there.  ``MATTEKIT_CATALOGUE=path`` reads another file.

``python -m mattekit.zoo --markdown`` prints the table of ``docs/models.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from mattekit.errors import MattekitError, user_errors
from mattekit.io import atomic_save

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from mattekit.models import ModelInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

#: Environment variable naming a catalogue to use instead of the packaged one.
CATALOGUE_ENV = "MATTEKIT_CATALOGUE"

Input = Literal["trimap", "coarse-mask", "image"]
INPUTS: tuple[Input, ...] = ("trimap", "coarse-mask", "image")

_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_HASH_CHUNK = 1 << 20
_HTTP_CLIENTS = frozenset({"httpx2", "httpx", "requests", "urllib3"})


# --------------------------------------------------------------------------------------------------------
# The catalogue


@dataclass(frozen=True)
class HubFile:
    """A converted weights file published on a hub repository, pinned to one commit."""

    repo: str
    revision: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Weights:
    """The zoo file of a network; ``hub`` is None while no converted file is published anywhere."""

    file: str
    hub: HubFile | None


@dataclass(frozen=True)
class Upstream:
    """The authors' original checkpoint; ``sha256`` / ``size`` are None where no trustworthy record exists."""

    file: str
    url: str
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class Metric:
    """Scores a source reports (SAD, Grad, Conn in thousands; MSE as a fraction); None where not given."""

    dataset: str
    source: str
    sad: float | None
    mse: float | None
    grad: float | None
    conn: float | None
    note: str


@dataclass(frozen=True)
class Entry:
    """One named model of the catalogue."""

    name: str
    architecture: str
    variant: str
    summary: str
    input: Input
    licence: str
    licence_note: str
    paper: str
    code: str
    weights: Weights | None
    upstream: Upstream | None
    metrics: tuple[Metric, ...]


class _Table:
    """Typed reads from one TOML table; every error names the file and the entry, and unknown keys fail."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise MattekitError(f"{where}: expected a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.read: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: object = ...) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is ...:
                raise MattekitError(f"{self.where}: missing {key!r}")
            return default
        value = self.data[key]
        # bool is an int in Python; a size written as `true` must still fail.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise MattekitError(f"{self.where}: {key!r} must be a {names}, not {value!r}")
        return value

    def text(self, key: str, default: object = ...) -> str:
        return self.get(key, str, default)

    def number(self, key: str) -> float | None:
        value = self.get(key, (int, float), None)
        if value is not None and value < 0:
            raise MattekitError(f"{self.where}: {key!r} must not be negative")
        return None if value is None else float(value)

    def size(self, key: str, default: object = ...) -> int | None:
        value = self.get(key, int, default)
        if value is not None and value <= 0:
            raise MattekitError(f"{self.where}: {key!r} must be a positive number of bytes")
        return value

    def sha256(self, key: str, allow_unknown: bool = False) -> str | None:
        value = self.text(key)
        if value == "" and allow_unknown:
            return None
        if not _SHA256.fullmatch(value):
            raise MattekitError(f"{self.where}: {key!r} must be 64 lower-case hex digits, not {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise MattekitError(f"{self.where}: unknown key(s) {', '.join(map(repr, unknown))}")


def check_file_name(name: str, where: str) -> str:
    """``name`` if it is a relative POSIX path that stays inside the folder it is joined to."""
    path = PurePosixPath(name)
    bad_part = any(part in ("", ".", "..") for part in name.split("/"))
    if not name or "\\" in name or ":" in name or path.is_absolute() or bad_part:
        raise MattekitError(f"{where}: file name {name!r} must be a relative path without '..' or '.'")
    return name


def _read_weights(data: object, where: str) -> Weights:
    table = _Table(data, where)
    file = check_file_name(table.text("file"), where)
    hub = None
    if table.get("published", bool):
        repo = table.text("repo")
        if not _REPO_ID.fullmatch(repo) or ".." in repo or "--" in repo:
            raise MattekitError(f"{where}: 'repo' must be a hub repo id 'owner/name', not {repo!r}")
        revision = table.text("revision")
        if not _COMMIT.fullmatch(revision):
            raise MattekitError(f"{where}: 'revision' must be a full 40-hex commit hash, not {revision!r}")
        hub = HubFile(repo, revision, table.sha256("sha256"), table.size("size"))
    table.done()  # an unpublished entry with a repo or hash is a half-finished edit: unknown keys fail
    return Weights(file, hub)


def _read_upstream(data: object, where: str) -> Upstream:
    table = _Table(data, where)
    upstream = Upstream(
        file=check_file_name(table.text("file"), where),
        url=table.text("url"),
        sha256=table.sha256("sha256", allow_unknown=True),
        size=table.size("size", None),
    )
    table.done()
    return upstream


def _read_metric(data: object, where: str) -> Metric:
    table = _Table(data, where)
    metric = Metric(
        dataset=table.text("dataset"),
        source=table.text("source"),
        sad=table.number("sad"),
        mse=table.number("mse"),
        grad=table.number("grad"),
        conn=table.number("conn"),
        note=table.text("note", ""),
    )
    table.done()
    if (metric.sad, metric.mse, metric.grad, metric.conn) == (None, None, None, None):
        raise MattekitError(f"{where}: a metrics row needs at least one of sad, mse, grad, conn")
    return metric


def _read_entry(data: object, where: str) -> Entry:
    table = _Table(data, where)
    name = table.text("name")
    if not _NAME.fullmatch(name):
        raise MattekitError(f"{where}: name {name!r} must be [a-z0-9] words joined by . _ or -")
    where = f"{where} {name!r}"
    table.where = where
    input_ = table.text("input")
    if input_ not in INPUTS:
        raise MattekitError(f"{where}: 'input' must be one of {', '.join(INPUTS)}, not {input_!r}")
    weights = table.get("weights", dict, None)
    upstream = table.get("upstream", dict, None)
    entry = Entry(
        name=name,
        architecture=table.text("architecture"),
        variant=table.text("variant"),
        summary=table.text("summary"),
        input=input_,  # type: ignore[arg-type]  (checked against INPUTS above)
        licence=table.text("licence"),
        licence_note=table.text("licence_note", ""),
        paper=table.text("paper"),
        code=table.text("code"),
        weights=None if weights is None else _read_weights(weights, f"{where} [weights]"),
        upstream=None if upstream is None else _read_upstream(upstream, f"{where} [upstream]"),
        metrics=tuple(_read_metric(m, f"{where} [metrics]") for m in table.get("metrics", list, [])),
    )
    table.done()
    return entry


def _check_against_registry(entry: Entry, registered: Mapping[str, ModelInfo], where: str) -> None:
    """The architecture exists and needs what the entry says: an input, and weights exactly for networks."""
    info = registered.get(entry.architecture)
    if info is None:
        known = ", ".join(sorted(registered))
        raise MattekitError(f"{where}: unknown architecture {entry.architecture!r}; registered: {known}")
    needs = info.requirements
    expected = "trimap" if needs.trimap else "coarse-mask" if needs.coarse_mask else "image"
    if entry.input != expected:
        raise MattekitError(f"{where}: input is {entry.input!r} but {info.name!r} takes {expected!r}")
    if needs.weights and entry.weights is None:
        raise MattekitError(f"{where}: architecture {info.name!r} needs weights: add a [weights] table")
    if not needs.weights and (entry.weights or entry.upstream):
        raise MattekitError(f"{where}: {info.name!r} is weight-free: remove [weights] and [upstream]")
    if entry.name in registered and entry.name != entry.architecture:
        raise MattekitError(f"{where}: the name is the registered architecture {entry.name!r}; pick another")


def catalogue_location() -> Path | Traversable:
    """The catalogue file in use: ``$MATTEKIT_CATALOGUE``, else the one shipped in the package."""
    override = os.environ.get(CATALOGUE_ENV)
    return Path(override) if override else resources.files("mattekit") / "models.toml"


def parse_catalogue(text: str, where: str = "models.toml") -> dict[str, Entry]:
    """Entries by name, in file order, from the text of a catalogue; any problem is a MattekitError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MattekitError(f"{where}: not valid TOML: {err}") from None
    from mattekit.models import list_models

    registered = {info.name: info for info in list_models()}
    top = _Table(data, where)
    entries: dict[str, Entry] = {}
    for position, raw in enumerate(top.get("model", list), start=1):
        entry = _read_entry(raw, f"{where}: model #{position}")
        if entry.name in entries:
            raise MattekitError(f"{where}: model {entry.name!r} is defined twice")
        _check_against_registry(entry, registered, f"{where}: model {entry.name!r}")
        entries[entry.name] = entry
    top.done()
    return entries


def load_catalogue(path: str | os.PathLike[str] | Traversable | None = None) -> dict[str, Entry]:
    """The validated catalogue at ``path``; by default :func:`catalogue_location` followed by the user's
    own models (``mattekit models add``, see :mod:`mattekit.user_catalogue`)."""
    location = path if path is not None else catalogue_location()
    location = Path(location) if isinstance(location, (str, os.PathLike)) else location
    try:
        text = location.read_text(encoding="utf-8")
    except OSError as err:
        raise MattekitError(f"{location}: cannot read the model catalogue ({err.strerror})") from None
    entries = parse_catalogue(text, str(location))
    if path is None:
        from mattekit.user_catalogue import user_entries

        entries.update(user_entries(entries))  # type: ignore[arg-type]
    return entries


def find_entry(name: str, catalogue: Mapping[str, Entry] | None = None) -> Entry | None:
    """The entry called ``name``, or None if the catalogue has none."""
    return (load_catalogue() if catalogue is None else catalogue).get(name)


def get_entry(name: str, catalogue: Mapping[str, Entry] | None = None) -> Entry:
    """The entry called ``name``; a user error listing the known names if there is none."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    entry = catalogue.get(name)
    if entry is None:
        raise MattekitError(f"unknown model {name!r}; the catalogue has: {', '.join(catalogue)}")
    return entry


# --------------------------------------------------------------------------------------------------------
# Where files live


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(os.path.expandvars(value)).expanduser() if value else None


def hf_home() -> Path:
    """``$HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``."""
    xdg = _env_path("XDG_CACHE_HOME") or Path.home() / ".cache"
    return _env_path("HF_HOME") or xdg / "huggingface"


def hub_cache_dir() -> Path:
    """huggingface_hub's download cache: ``$HF_HUB_CACHE`` (or its legacy name), else ``$HF_HOME/hub``."""
    return _env_path("HF_HUB_CACHE") or _env_path("HUGGINGFACE_HUB_CACHE") or hf_home() / "hub"


def imported_dir() -> Path:
    """Where imported (converted) files go: ``<assets cache>/mattekit/imported``."""
    return (_env_path("HF_ASSETS_CACHE") or hf_home() / "assets") / "mattekit" / "imported"


def hub_endpoint() -> str | None:
    """``$HF_ENDPOINT`` (None: huggingface_hub's default, https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT") or None


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set now or was set when huggingface_hub was imported."""
    from huggingface_hub import constants

    return _is_true(os.environ.get("HF_HUB_OFFLINE")) or constants.is_offline_mode()


def _inside(base: Path, relative: str) -> Path:
    """``base / relative``, refusing a result outside ``base`` (catalogue names are checked at load too)."""
    path = base.joinpath(*relative.split("/"))
    if not path.resolve().is_relative_to(base.resolve()):
        raise MattekitError(f"{relative!r}: resolves outside {base}")
    return path


def imported_path(entry: Entry) -> Path:
    """Where ``import`` puts the zoo file of ``entry`` (whether or not it exists)."""
    weights = _require_weights(entry)
    return _inside(_inside(imported_dir(), entry.name), weights.file)


def _hub_cached(entry: Entry) -> Path | None:
    """The hub-cache file of ``entry`` at its pinned commit, if present (no network)."""
    if entry.weights is None or entry.weights.hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    hub = entry.weights.hub
    found = try_to_load_from_cache(
        hub.repo, entry.weights.file, cache_dir=hub_cache_dir(), revision=hub.revision
    )
    return Path(found) if isinstance(found, str) else None


def cached_file(entry: Entry) -> Path | None:
    """The local zoo file of ``entry``, downloaded or imported, without hashing it (None if absent)."""
    if entry.weights is None:
        return None
    hub_file = _hub_cached(entry)
    if hub_file is not None:
        return hub_file
    imported = imported_path(entry)
    return imported if imported.is_file() else None


# --------------------------------------------------------------------------------------------------------
# Integrity


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _delete(path: Path) -> None:
    """Remove a cached file; for a hub-cache symlink, the blob it points to as well."""
    if path.is_symlink():
        path.resolve().unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


def _expected_sha256(entry: Entry, path: Path) -> str:
    """The hash ``path`` must have: the catalogue's when published, else the one recorded at import."""
    weights = _require_weights(entry)
    if weights.hub is not None:
        return weights.hub.sha256
    try:
        recorded = _sidecar(path).read_text(encoding="ascii").strip()
    except OSError:
        recorded = ""
    if not _SHA256.fullmatch(recorded):
        raise MattekitError(f"{entry.name}: {path} has no recorded sha256; {_again(entry)}")
    return recorded


def _again(entry: Entry) -> str:
    """How to get a deleted or unverifiable file of ``entry`` again, as a command to copy."""
    if entry.weights is not None and entry.weights.hub is not None:
        return f"download it again (`mattekit models download {entry.name}`)"
    source = entry.upstream.file if entry.upstream is not None else "FILE"
    return f"import it again (`mattekit models import {entry.name} {source}`)"


def verify_file(entry: Entry, path: Path) -> str:
    """Hash ``path``; on a mismatch with what it must be, delete it and raise a MattekitError."""
    expected = _expected_sha256(entry, path)
    actual = sha256_of(path)
    if actual != expected:
        _delete(path)
        raise MattekitError(
            f"{entry.name}: {path} has sha256 {actual}, expected {expected}; the file was deleted, "
            f"{_again(entry)}"
        )
    return actual


# --------------------------------------------------------------------------------------------------------
# Getting weights


def _require_weights(entry: Entry) -> Weights:
    if entry.weights is None:
        raise MattekitError(f"{entry.name}: a weight-free method, it has no weights file")
    return entry.weights


def _how_to_get(entry: Entry) -> str:
    """The sentence that tells a user how to obtain an entry's file without this machine's network."""
    weights = _require_weights(entry)
    steps = []
    if weights.hub is not None:
        steps.append(
            f"run `mattekit models download {entry.name}` on a connected machine and copy its hub cache "
            f"({hub_cache_dir()}) here"
        )
    if entry.upstream is not None:
        steps.append(
            f"get the official {entry.upstream.file} ({entry.upstream.url}) and run "
            f"`mattekit models import {entry.name} {entry.upstream.file}`"
        )
    if not steps:
        steps.append(
            "no such file exists anywhere: train one (`mattekit train`), then pass --weights FILE or name it "
            "with `mattekit models add NAME RUN_DIR`"
        )
    return " or ".join(steps)


def resolve_weights(entry: Entry) -> Path | None:
    """The verified local weights file of ``entry``: the cache first, then the hub (None if weight-free)."""
    if entry.weights is None:
        return None
    cached = cached_file(entry)
    if cached is not None:
        verify_file(entry, cached)
        return cached
    return download(entry)


def download(entry: Entry) -> Path:
    """Fetch the zoo file of ``entry`` into the hub cache at its pinned commit (a cache hit costs no
    request), verify its size and sha256, and return its path.

    huggingface_hub shows a progress bar and, when the connection drops mid-file, resumes with an HTTP
    Range request from what it has written (it writes in 10 MiB chunks), up to five times without
    progress.  A killed process starts over: huggingface_hub 2.x gives every download a private
    temporary file, deleted on failure, so that concurrent downloads never mix.
    """
    weights = _require_weights(entry)
    if weights.hub is None:
        raise MattekitError(
            f"{entry.name}: no converted weights are published on any hub yet; {_how_to_get(entry)}"
        )
    cached = _hub_cached(entry)
    if cached is None and is_offline():
        raise MattekitError(f"{entry.name}: not in the cache and HF_HUB_OFFLINE is set; {_how_to_get(entry)}")
    path = cached or _fetch(entry, weights.file, weights.hub)
    if path.stat().st_size != weights.hub.size:
        size = path.stat().st_size
        _delete(path)
        raise MattekitError(
            f"{entry.name}: {path} is {size} bytes, expected {weights.hub.size}; the file was deleted, "
            f"download it again"
        )
    verify_file(entry, path)
    return path


def _fetch(entry: Entry, file: str, hub: HubFile) -> Path:
    """``hf_hub_download`` with its errors turned into one-line user errors."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{hub.repo}@{hub.revision[:12]}/{file} on {hub_endpoint() or 'https://huggingface.co'}"
    try:
        return Path(
            hf_hub_download(
                hub.repo, file, revision=hub.revision, cache_dir=hub_cache_dir(), endpoint=hub_endpoint()
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise MattekitError(
            f"{entry.name}: cannot reach {where} and it is not cached; {_how_to_get(entry)}"
        ) from None
    except RepositoryNotFoundError:
        raise MattekitError(f"{entry.name}: repository {hub.repo} not found ({where})") from None
    except RevisionNotFoundError:
        raise MattekitError(f"{entry.name}: commit {hub.revision} not found ({where})") from None
    except EntryNotFoundError:
        raise MattekitError(f"{entry.name}: file {file} not found ({where})") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise MattekitError(f"{entry.name}: the hub answered HTTP {status} for {where}") from None
    except Exception as err:
        # A transfer that still failed after huggingface_hub's retries: the HTTP client's own error
        # (httpx2 under huggingface_hub 2.x, httpx under 1.x, requests before) or huggingface_hub's
        # OSError size check; a full disk is an OSError too.  Anything else is a bug: let it through.
        if not isinstance(err, OSError) and type(err).__module__.partition(".")[0] not in _HTTP_CLIENTS:
            raise
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MattekitError(f"{entry.name}: download of {where} failed: {first_line}") from None


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_checkpoint` did: where the zoo file is and how far the source was verified."""

    path: Path
    sha256: str
    upstream_file: str
    source_sha256: str
    upstream_verified: bool


def import_checkpoint(entry: Entry, source: str | os.PathLike[str]) -> ImportReport:
    """Convert the authors' checkpoint ``source`` into the zoo file of ``entry`` in the imported cache.

    The source must match the upstream sha256 and size when the catalogue knows them; when it does not,
    the report says the file could not be verified upstream.  Either way the checkpoint is read without
    running code (``torch.load(weights_only=True)``) and must load strictly into the architecture; the
    zoo file is that network's state_dict as safetensors.
    """
    weights = _require_weights(entry)
    if entry.upstream is None:
        raise MattekitError(f"{entry.name}: the catalogue names no upstream checkpoint to import")
    source = Path(source)
    if not source.is_file():
        raise MattekitError(f"{source}: no such file")
    target = imported_path(entry)
    with user_errors("cannot write", target.parent):  # a cache that cannot be written: say so before the work
        target.parent.mkdir(parents=True, exist_ok=True)
    source_sha256 = _check_upstream(entry.upstream, source)
    state = _converted_state_dict(entry, source)

    def save(tmp: Path) -> None:
        from safetensors.torch import save_file

        # One metadata key only: safetensors writes the metadata in hash-map order, so with several keys
        # the same weights would give different bytes.  This way a given upstream file always converts to
        # the same zoo file, which is what makes a published sha256 checkable here.
        save_file(state, str(tmp), metadata={"format": "pt"})

    atomic_save(target, save)
    sha256 = sha256_of(target)
    if weights.hub is not None and sha256 != weights.hub.sha256:
        _delete(target)
        raise MattekitError(
            f"{entry.name}: the converted file has sha256 {sha256} but the published one has "
            f"{weights.hub.sha256}; nothing was imported"
        )
    atomic_save(_sidecar(target), lambda tmp: tmp.write_text(sha256 + "\n", encoding="ascii"))
    return ImportReport(target, sha256, entry.upstream.file, source_sha256, entry.upstream.sha256 is not None)


def _check_upstream(upstream: Upstream, source: Path) -> str:
    """The source's sha256, after checking it (and its size) against the catalogue's record, if any."""
    size = source.stat().st_size
    if upstream.size is not None and size != upstream.size:
        raise MattekitError(
            f"{source}: {size} bytes, but the official {upstream.file} has {upstream.size}; not imported"
        )
    actual = sha256_of(source)
    if upstream.sha256 is not None and actual != upstream.sha256:
        raise MattekitError(
            f"{source}: sha256 {actual} is not that of the official {upstream.file} ({upstream.sha256}); "
            f"not imported"
        )
    return actual


def _converted_state_dict(entry: Entry, source: Path) -> dict[str, Any]:
    """The architecture's state_dict after loading ``source`` into it strictly (no code runs on read)."""
    import torch

    from mattekit.models import create_model
    from mattekit.models.checkpoint import load_into, read_state_dict
    from mattekit.models.network import NetworkModel

    model = create_model(entry.architecture, device="cpu")
    if not isinstance(model, NetworkModel):
        raise MattekitError(f"{entry.name}: architecture {entry.architecture!r} is not a network")
    load_into(model.net, read_state_dict(source), source=str(source))
    # safetensors wants contiguous tensors that share no memory.
    return {key: value.detach().clone().contiguous() for key, value in model.net.state_dict().items()
            if isinstance(value, torch.Tensor)}


# --------------------------------------------------------------------------------------------------------
# Inspection


@dataclass(frozen=True)
class NetworkSize:
    """What a network architecture weighs: its state_dict values (as the official code counts them) and
    the FLOPs of one forward pass on a ``side`` x ``side`` image (``note``: what else that pass holds)."""

    parameters: int
    flops: int
    side: int
    note: str


def network_size(architecture: str) -> NetworkSize | None:
    """The size of a registered network architecture (built with random init), its FLOPs counted at the
    input size its paper reports them for; None for a weight-free method."""
    from mattekit.models import create_model, get_model_info
    from mattekit.models.network import parameter_count as count

    if not get_model_info(architecture).requirements.weights:
        return None
    model = create_model(architecture, device="cpu")
    # Matting networks (NetworkModel) and trimap networks (TGN) both keep their torch module as ``net`` and
    # count their own FLOPs.
    net, flops = getattr(model, "net", None), getattr(model, "flops", None)
    if net is None or flops is None:
        return None
    side, note = getattr(model, "flops_side", 512), getattr(model, "flops_note", "")
    return NetworkSize(count(net), flops(side, side), side, note)


@dataclass(frozen=True)
class Check:
    """The result of re-hashing one cached file."""

    entry: str
    path: Path
    ok: bool
    message: str


def verify_cache(entries: Iterable[Entry]) -> list[Check]:
    """Re-hash every cached zoo file of ``entries``; failing files are deleted (see :func:`verify_file`)."""
    checks = []
    for entry in entries:
        path = cached_file(entry)
        if path is None:
            continue
        try:
            checks.append(Check(entry.name, path, True, verify_file(entry, path)))
        except MattekitError as err:
            checks.append(Check(entry.name, path, False, str(err)))
    return checks


@dataclass(frozen=True)
class CachedFile:
    entry: str
    path: Path
    size: int


def cached_files(entries: Iterable[Entry]) -> list[CachedFile]:
    """The zoo files present locally, with their sizes (no hashing)."""
    found = []
    for entry in entries:
        path = cached_file(entry)
        if path is not None:
            found.append(CachedFile(entry.name, path, path.stat().st_size))
    return found


def weights_size(entry: Entry) -> int | None:
    """Bytes of the zoo file: the published size, else the cached file's; None while neither exists."""
    if entry.weights is None:
        return None
    if entry.weights.hub is not None:
        return entry.weights.hub.size
    path = cached_file(entry)
    return None if path is None else path.stat().st_size


def human_size(size: int | None) -> str:
    """``123.4 MB`` style (decimal units, like the hub); ``-`` for None."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _score(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:g}"


def markdown(catalogue: Mapping[str, Entry]) -> str:
    """The Markdown page ``docs/models.md`` (a table of every entry and one of the reported metrics)."""
    lines = [
        "# Model zoo",
        "",
        "<!-- Generated from models.toml by `python -m mattekit.zoo --markdown > docs/models.md`; "
        "do not edit. -->",
        "",
        "| name | architecture | variant | input | weights | licence | paper |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in catalogue.values():
        lines.append(
            f"| `{entry.name}` | `{entry.architecture}` | {entry.variant} | {entry.input} "
            f"| {_weights_cell(entry)} | {entry.licence} | {entry.paper} |"
        )
    lines += [
        "",
        "## Reported metrics",
        "",
        "As printed by the cited table: SAD, Grad and Conn in thousands, MSE x 1e-3.",
        "",
        "| name | dataset | SAD | MSE (x1e-3) | Grad | Conn | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in catalogue.values():
        for m in entry.metrics:
            source = f"{m.source}; {m.note}" if m.note else m.source
            lines.append(
                f"| `{entry.name}` | {m.dataset} | {_score(m.sad)} | {_score(m.mse, 1000)} "
                f"| {_score(m.grad)} | {_score(m.conn)} | {source} |"
            )
    return "\n".join(lines) + "\n"


def _weights_cell(entry: Entry) -> str:
    if entry.weights is None:
        return "none (weight-free)"
    if entry.weights.hub is not None:
        hub = entry.weights.hub
        link = f"[{hub.repo}](https://huggingface.co/{hub.repo})"
        return f"{link} @ `{hub.revision[:12]}`, {human_size(hub.size)}"
    upstream = entry.upstream
    source = f"[{upstream.file}]({upstream.url})" if upstream else "the upstream checkpoint"
    return f"not published: `mattekit models import {entry.name}` {source}"


def main(argv: list[str] | None = None) -> int:
    """``python -m mattekit.zoo --markdown``: print docs/models.md."""
    parser = argparse.ArgumentParser(prog="python -m mattekit.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs/models.md page")
    args = parser.parse_args(argv)
    if not args.markdown:
        parser.print_help()
        return 2
    try:
        sys.stdout.write(markdown(load_catalogue(catalogue_location())))  # the packaged models only
    except MattekitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
