"""The model zoo (issue 6): the catalogue, downloads from a real HTTP hub on 127.0.0.1, integrity, import
of an official-format checkpoint, safe loading, the CLI and ``predict --model NAME``.

Downloads go through huggingface_hub against :mod:`tests.hub_server`; checkpoints are random weights of
the registered GCA architecture in the zoo format, written once per session.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
import torch
from hub_server import FakeHub
from safetensors.torch import load_file, save_file

from mattekit import zoo
from mattekit.cli import main
from mattekit.errors import MattekitError
from mattekit.models import create_model, list_models
from mattekit.predictor import load_model

ROOT = Path(__file__).resolve().parents[1]
REPO = "mattekit-test/gca"
NAME = "test-gca"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    size: int


def _zoo_checkpoint(path: Path, seed: int) -> Checkpoint:
    torch.manual_seed(seed)
    net = create_model("gca", device="cpu").net
    save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(path))
    return Checkpoint(path, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Checkpoint, Checkpoint]:
    """Two different random-init GCA networks as zoo files (about 100 MB each)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return _zoo_checkpoint(folder / "a.safetensors", 0), _zoo_checkpoint(folder / "b.safetensors", 1)


@pytest.fixture(scope="session")
def official_gca(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> tuple[Path, dict]:
    """An official-format GCA checkpoint: fill.py's deterministic weights as the trainer saves them."""
    spec = importlib.util.spec_from_file_location("gca_fill", reference_dir / "gca" / "fill.py")
    assert spec is not None and spec.loader is not None
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    state = fill.fill(str(reference_dir / "gca" / "gca_keys.json"))
    path = tmp_path_factory.mktemp("official") / "gca-dist.pth"
    torch.save({"iter": 200000, "state_dict": {"module." + key: value for key, value in state.items()}}, path)
    return path, state


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty HF_HOME and no hub settings of the machine it runs on."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT",
                 zoo.CATALOGUE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return tmp_path / "hf"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _entry_toml(name: str, weights: str, upstream: str = "") -> str:
    return f'''
[[model]]
name = "{name}"
architecture = "gca"
variant = "gca-dist"
summary = "random weights for tests"
input = "trimap"
licence = "test"
paper = "none"
code = "none"

[model.weights]
{weights}
{upstream}
'''


def _published(commit: str, checkpoint: Checkpoint) -> str:
    return (f'file = "model.safetensors"\npublished = true\nrepo = "{REPO}"\nrevision = "{commit}"\n'
            f'sha256 = "{checkpoint.sha256}"\nsize = {checkpoint.size}')


def _use_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> dict[str, zoo.Entry]:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(zoo.CATALOGUE_ENV, str(path))
    return zoo.load_catalogue()


def _publish(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint: Checkpoint
) -> zoo.Entry:
    commit = hub.commit(REPO, {"model.safetensors": checkpoint.path})
    return _use_catalogue(tmp_path, monkeypatch, _entry_toml(NAME, _published(commit, checkpoint)))[NAME]


def _file_requests(hub: FakeHub) -> list[tuple[str, str | None]]:
    """(method, Range header) of the file requests (huggingface_hub also asks /api/ things of its own)."""
    return [(request.method, request.range) for request in hub.requests if "/resolve/" in request.path]


# -- the catalogue ----------------------------------------------------------------------------------------


def test_packaged_catalogue_is_the_top_level_file() -> None:
    packaged = resources.files("mattekit") / "models.toml"
    assert packaged.read_bytes() == (ROOT / "models.toml").read_bytes()
    assert Path(str(zoo.catalogue_location())).resolve() == (ROOT / "models.toml").resolve()


def test_wheel_ships_the_catalogue(tmp_path: Path) -> None:
    """A non-editable install must find models.toml: build a wheel from a copy of the sources, install it."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "mattekit", source / "mattekit", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "models.toml"):
        shutil.copy(ROOT / name, source / name)
    (source / "README.md").write_text("test build\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        check=True, cwd=source, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("mattekit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("mattekit/models.toml") == (ROOT / "models.toml").read_bytes()
    # Installed (not editable), the package reads its own copy.
    target = tmp_path / "site"
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target"]
    subprocess.run([*pip_install, str(target), str(wheel)], check=True, capture_output=True)
    script = "import mattekit.zoo as z; print(z.__file__); print(len(z.load_catalogue()))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop(zoo.CATALOGUE_ENV, None)
    run = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    module, count = run.stdout.split()
    assert Path(module).is_relative_to(target)
    assert int(count) == len(zoo.load_catalogue(ROOT / "models.toml"))


def test_catalogue_covers_the_registry_and_the_official_facts() -> None:
    catalogue = zoo.load_catalogue()
    classical = {"closed-form", "knn", "large-kernel", "random-walk", "learning-based", "shared-sampling"}
    assert classical <= {entry.architecture for entry in catalogue.values()}
    assert {info.name for info in list_models()} == {entry.architecture for entry in catalogue.values()}
    for name in classical:
        assert catalogue[name].weights is None
    # No converted file is published anywhere yet: every network entry must say so.
    networks = [entry for entry in catalogue.values() if entry.weights is not None]
    assert {entry.name: entry.architecture for entry in networks} == {
        "gca-dist": "gca", "gca-dist-all-data": "gca",
        "hop-9x9-ri": "hop", "hop-9x9-ri-all-data": "hop-all-data",
        "hattmatting-comp1k": "hattmatting", "hdmatt-comp1k": "hdmatt",
        "spamattnet-comp1k": "spamattnet", "spamattnet-star-comp1k": "spamattnet-star", "tgn-comp1k": "tgn",
    }
    assert all(entry.weights.hub is None for entry in networks)
    # The authors of HAttMatting, HDMatt, SPAMattNet and TGN released no weights: nothing upstream to import.
    unreleased = (
        "hattmatting-comp1k", "hdmatt-comp1k", "spamattnet-comp1k", "spamattnet-star-comp1k", "tgn-comp1k"
    )
    assert all(catalogue[name].upstream is None for name in unreleased)
    upstream = {entry.name: entry.upstream for entry in networks if entry.upstream is not None}
    assert upstream["gca-dist-all-data"].sha256 == (
        "617beae97ca2d274f4a597d5830cd62a501d38b0c3b2bf9758771177276eeb5f"
    )
    assert upstream["gca-dist-all-data"].size == 101289423
    for name in ("gca-dist", "hop-9x9-ri", "hop-9x9-ri-all-data"):
        assert upstream[name].sha256 is None and upstream[name].size is None
    assert [upstream[n].file for n in upstream] == [
        "gca-dist.pth", "gca-dist-all-data.pth", "HOP-9x9-RI.pth", "HOP-9x9-RI-all-data.pth",
    ]
    (gca,) = catalogue["gca-dist"].metrics
    assert (gca.sad, gca.mse, gca.grad, gca.conn) == (35.28, 0.0091, 16.92, 32.53)


def test_docs_models_md_is_generated_from_the_catalogue() -> None:
    expected = zoo.markdown(zoo.load_catalogue(ROOT / "models.toml"))
    assert (ROOT / "docs" / "models.md").read_text(encoding="utf-8") == expected, (
        "docs/models.md is stale: python -m mattekit.zoo --markdown > docs/models.md"
    )


_GOOD_WEIGHTS = 'file = "x.safetensors"\npublished = false'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_entry_toml("a", _GOOD_WEIGHTS).replace('"gca"', '"gca-v9"'), "unknown architecture 'gca-v9'"),
        (_entry_toml("a", _GOOD_WEIGHTS) + _entry_toml("a", _GOOD_WEIGHTS), "'a' is defined twice"),
        (_entry_toml("a", _GOOD_WEIGHTS, '[model.upstream]\nfile = "a.pth"\nurl = "u"\nsha256 = "ABC"'),
         "'sha256' must be 64 lower-case hex digits"),
        (_entry_toml("a", 'file = "x"\npublished = true\nrepo = "o/n"\nrevision = "main"\n'
                     f'sha256 = "{"0" * 64}"\nsize = 1'), "'revision' must be a full 40-hex commit"),
        (_entry_toml("a", _GOOD_WEIGHTS + '\nrepo = "o/n"'), "unknown key(s) 'repo'"),
        (_entry_toml("a", _GOOD_WEIGHTS).replace('input = "trimap"', 'input = "image"'),
         "'gca' takes 'trimap'"),
        (_entry_toml("a", _GOOD_WEIGHTS).replace("[model.weights]", "").replace(_GOOD_WEIGHTS, ""),
         "needs weights"),
        (_entry_toml("knn", _GOOD_WEIGHTS), "the name is the registered architecture 'knn'"),
        (_entry_toml("A b", _GOOD_WEIGHTS), "name 'A b'"),
        ("[[model]\n", "not valid TOML"),
    ],
)
def test_invalid_catalogues_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(MattekitError, match="^models.toml: .*") as error:
        zoo.parse_catalogue(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name", ["../evil.safetensors", "/etc/passwd", "a/../../b", "a\\..\\b", "C:/x", "", "./x"]
)
def test_file_names_cannot_escape_the_cache(name: str) -> None:
    quoted = name.replace("\\", "\\\\")  # a TOML basic string escapes backslashes
    with pytest.raises(MattekitError, match="must be a relative path"):
        zoo.parse_catalogue(_entry_toml("a", f'file = "{quoted}"\npublished = false'))
    upstream = f'[model.upstream]\nfile = "{quoted}"\nurl = "u"\nsha256 = ""'
    with pytest.raises(MattekitError, match="must be a relative path"):
        zoo.parse_catalogue(_entry_toml("a", _GOOD_WEIGHTS, upstream))


def test_a_symlinked_cache_folder_cannot_lead_outside(tmp_path: Path, hf_home: Path) -> None:
    """Names are checked at load; the joined path is checked again after resolving links."""
    entry = zoo.parse_catalogue(_entry_toml("a", _GOOD_WEIGHTS))["a"]
    zoo.imported_dir().mkdir(parents=True)
    (zoo.imported_dir() / "a").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(MattekitError, match="resolves outside"):
        zoo.imported_path(entry)


# -- downloads ----------------------------------------------------------------------------------------------


def test_first_download_then_cache_hit_with_the_server_stopped(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hf_home: Path,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    path = zoo.resolve_weights(entry)
    assert path.read_bytes() == checkpoints[0].path.read_bytes()
    assert path.is_relative_to(hf_home / "hub")
    assert _file_requests(hub) == [("HEAD", None), ("GET", None)]
    hub.stop()
    assert zoo.resolve_weights(entry) == path
    assert zoo.download(entry) == path
    assert len(_file_requests(hub)) == 2


def test_the_pinned_revision_is_served_even_when_main_moved(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = hub.commit(REPO, {"model.safetensors": checkpoints[0].path})
    new = hub.commit(REPO, {"model.safetensors": checkpoints[1].path})
    text = _entry_toml(NAME, _published(old, checkpoints[0]))
    entry = _use_catalogue(tmp_path, monkeypatch, text)[NAME]
    assert zoo.download(entry).read_bytes() == checkpoints[0].path.read_bytes()
    assert all(f"/resolve/{old}/" in request.path for request in hub.requests)
    assert new != old


def test_a_sha256_mismatch_deletes_the_file_and_errors(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hf_home: Path,
) -> None:
    # The catalogue pins the hash of checkpoint a, but the commit holds a file of the same size with
    # different bytes (the hub's own ETag matches what it serves, so only the catalogue can tell).
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray(checkpoints[0].path.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    commit = hub.commit(REPO, {"model.safetensors": tampered})
    entry = _use_catalogue(tmp_path, monkeypatch, _entry_toml(NAME, _published(commit, checkpoints[0])))[NAME]
    expected = f"has sha256 .* expected {checkpoints[0].sha256}; the file was deleted"
    with pytest.raises(MattekitError, match=expected):
        zoo.download(entry)
    assert zoo.cached_file(entry) is None
    assert not [p for p in (hf_home / "hub").rglob("*") if p.is_file() and p.parent.name == "blobs"]


def test_a_corrupted_cached_file_is_caught_before_use(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    path = zoo.download(entry)
    with path.resolve().open("r+b") as blob:
        blob.seek(1000)
        blob.write(b"\x00" * 8)
    with pytest.raises(MattekitError, match="has sha256"):
        zoo.resolve_weights(entry)
    assert not path.exists() and not path.resolve().exists()


def test_a_connection_dropped_mid_file_resumes_with_a_range_request(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    cut = checkpoints[0].size // 3
    hub.drop_gets_after(cut)
    assert zoo.download(entry).read_bytes() == checkpoints[0].path.read_bytes()
    (_, first), (_, second), (_, resumed) = _file_requests(hub)
    assert first is None and second is None
    # huggingface_hub keeps what it wrote to disk: whole 10 MiB chunks of what it received.
    start = int(resumed.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= cut


def test_a_transfer_that_keeps_failing_is_one_clear_error(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    hf_home: Path,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    hub.drop_gets_after(1000, times=100)
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # huggingface_hub waits 1 s between retries
    with pytest.raises(MattekitError, match=f"^{NAME}: download of {REPO}@.* failed: peer closed"):
        zoo.download(entry)
    assert zoo.cached_file(entry) is None
    assert not [p for p in (hf_home / "hub").rglob("*") if p.is_file() and p.parent.name == "blobs"]


def test_offline_with_nothing_cached_says_how_to_get_the_file(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MattekitError) as error:
        zoo.resolve_weights(entry)
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message and f"mattekit models download {NAME}" in message
    assert "\n" not in message
    assert hub.requests == []
    # Once cached, offline is no obstacle.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    path = zoo.download(entry)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert zoo.resolve_weights(entry) == path


def test_no_network_with_nothing_cached_says_how_to_get_the_file(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    hub.stop()
    # huggingface_hub backs off for ~20 s before it gives up on a refused connection; skip the waiting.
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with pytest.raises(MattekitError, match=f"cannot reach {REPO}@.*`mattekit models download {NAME}`"):
        zoo.resolve_weights(entry)


def test_unpublished_weights_point_to_import() -> None:
    entry = zoo.get_entry("gca-dist")
    expected = "no converted weights are published .*`mattekit models import gca-dist gca-dist.pth`"
    with pytest.raises(MattekitError, match=expected):
        zoo.resolve_weights(entry)


# -- import and safe loading --------------------------------------------------------------------------------


def test_import_of_an_official_gca_checkpoint(
    official_gca: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hf_home: Path,
) -> None:
    path, state = official_gca
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    upstream = (f'[model.upstream]\nfile = "gca-dist.pth"\nurl = "u"\nsha256 = "{sha}"\n'
                f'size = {path.stat().st_size}')
    text = _entry_toml(NAME, 'file = "gca.safetensors"\npublished = false', upstream)
    entry = _use_catalogue(tmp_path, monkeypatch, text)[NAME]
    report = zoo.import_checkpoint(entry, path)
    assert report.upstream_verified and report.source_sha256 == sha
    assert report.path.is_relative_to(hf_home / "assets" / "mattekit")
    converted = load_file(str(report.path))
    assert converted.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(converted[key], value), key
    assert zoo.resolve_weights(entry) == report.path
    # The conversion is deterministic, so once that file is published, an import must reproduce it.
    published = (f'file = "gca.safetensors"\npublished = true\nrepo = "{REPO}"\nrevision = "{"1" * 40}"\n'
                 f'sha256 = "{report.sha256}"\nsize = {report.path.stat().st_size}')
    entry = _use_catalogue(tmp_path, monkeypatch, _entry_toml("again", published, upstream))["again"]
    assert zoo.import_checkpoint(entry, path).sha256 == report.sha256


def test_import_refuses_a_file_that_is_not_the_official_one(
    official_gca: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = f'[model.upstream]\nfile = "gca-dist.pth"\nurl = "u"\nsha256 = "{"0" * 64}"'
    text = _entry_toml(NAME, 'file = "gca.safetensors"\npublished = false', upstream)
    entry = _use_catalogue(tmp_path, monkeypatch, text)[NAME]
    with pytest.raises(MattekitError, match="is not that of the official gca-dist.pth"):
        zoo.import_checkpoint(entry, official_gca[0])
    assert zoo.cached_file(entry) is None


def test_import_without_an_upstream_hash_still_checks_the_architecture(
    official_gca: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["models", "import", "gca-dist", str(official_gca[0])]) == 0
    err = capsys.readouterr().err
    assert "could not be verified against upstream" in err
    assert zoo.cached_file(zoo.get_entry("gca-dist")) is not None
    # The wrong architecture is refused, naming what does not fit.
    assert main(["models", "import", "hop-9x9-ri", str(official_gca[0])]) == 2
    assert "does not fit HOPMatting" in capsys.readouterr().err


class _Exploit:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "gca-dist.pth"
    with evil.open("wb") as stream:
        pickle.dump({"state_dict": {"module.x": _Exploit(marker)}}, stream)
    assert main(["models", "import", "gca-dist", str(evil)]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert err.startswith("error:") and "not a readable checkpoint" in err
    assert len(err.splitlines()) == 1
    assert zoo.cached_file(zoo.get_entry("gca-dist")) is None


# -- the CLI and predict ------------------------------------------------------------------------------------


def test_cli_list_info_download_verify_cache(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = _publish(hub, tmp_path, monkeypatch, checkpoints[0])
    assert main(["models", "list"]) == 0
    assert NAME in capsys.readouterr().out
    assert main(["models", "download", NAME]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.read_bytes() == checkpoints[0].path.read_bytes()
    assert main(["models", "list"]) == 0
    assert "cached" in capsys.readouterr().out
    assert main(["models", "info", NAME]) == 0
    out = capsys.readouterr().out
    assert "25,291,776" in out and checkpoints[0].sha256 in out
    assert main(["models", "cache"]) == 0
    assert "1 cached model file(s)" in capsys.readouterr().out
    assert main(["models", "verify"]) == 0
    assert f"ok   {NAME}" in capsys.readouterr().out
    with path.resolve().open("r+b") as blob:
        blob.seek(100)
        blob.write(b"\xff" * 4)
    assert main(["models", "verify"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert zoo.cached_file(entry) is None


def test_predict_model_name_resolves_weights_and_weights_bypass_the_zoo(
    hub: FakeHub, checkpoints: tuple[Checkpoint, Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    reference_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    _publish(hub, tmp_path, monkeypatch, checkpoints[1])
    image, trimap = reference_dir / "gca" / "gca_image.png", reference_dir / "gca" / "gca_trimap.png"
    args = ["predict", str(image), "--trimap", str(trimap), "--model", NAME, "--device", "cpu",
            "-o", str(tmp_path)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "HF_HUB_OFFLINE" in err and len(err.splitlines()) == 1
    # --weights bypasses the zoo: no hub needed even offline.
    own = load_model(NAME, weights=checkpoints[0].path, device="cpu")
    assert _same_weights(own.net, checkpoints[0].path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert _file_requests(hub) == []
    assert _same_weights(load_model(NAME, device="cpu").net, checkpoints[1].path)
    assert [method for method, _ in _file_requests(hub)] == ["HEAD", "GET"]
    assert main(args) == 0
    assert (tmp_path / "gca_image_alpha.png").is_file()
    assert len(_file_requests(hub)) == 2


def _same_weights(net: torch.nn.Module, path: Path) -> bool:
    state = net.state_dict()
    return all(torch.equal(state[key], value) for key, value in load_file(str(path)).items())
