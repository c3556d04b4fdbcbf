"""Hostile and clumsy input against every command (issue 10): each case asserts the exit status, the one-line
message, that no traceback is shown, and what is on disk afterwards (inputs byte-identical, no partial or
stray outputs).  The error policy itself is docs/errors.md."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mattekit
from mattekit import io as mattekit_io
from mattekit.cli import main
from mattekit.errors import BUG_NOTE, EXIT_BUG, MattekitError, describe
from mattekit.io import clean_stale_parts, read_gray
from mattekit.models import DEFAULT_MODEL
from mattekit.models.base import MattingModel

MATTEKIT = [sys.executable, "-m", "mattekit"]


# --- helpers -------------------------------------------------------------------------------------------


def _scene(folder: Path, name: str = "photo", size: tuple[int, int] = (80, 60)) -> tuple[Path, Path]:
    """A small photo and its 0/128/255 trimap: a bright square on noise, with an unknown band around it."""
    width, height = size
    rng = np.random.default_rng(len(name))
    photo = (rng.random((height, width, 3)) * 120).astype(np.uint8)
    photo[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] += 120
    trimap = np.zeros((height, width), np.uint8)
    trimap[height // 4 - 4 : 3 * height // 4 + 4, width // 4 - 4 : 3 * width // 4 + 4] = 128
    trimap[height // 4 + 4 : 3 * height // 4 - 4, width // 4 + 4 : 3 * width // 4 - 4] = 255
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(folder / f"{name}.png")
    Image.fromarray(trimap).save(folder / f"{name}_trimap.png")
    return folder / f"{name}.png", folder / f"{name}_trimap.png"


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def _one_error_line(err: str, *fragments: str) -> None:
    """The policy's shape of a run-stopping error: exactly one line, ``error: ...``, no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


def _table(err: str) -> str:
    """The failures table as one line of text (rich folds long reasons over several rows)."""
    return " ".join(err.replace("│", " ").split())


def _flat_png(path: Path, width: int, height: int, value: int = 0, mode: str = "L") -> Path:
    """A huge image in a small file (flat colour compresses to almost nothing)."""
    Image.new(mode, (width, height), value if mode == "L" else (value,) * 3).save(path, optimize=True)
    return path


# --- 1. data loss: outputs never replace inputs -----------------------------------------------------


def test_outputs_over_any_input_are_refused_before_any_work(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    mask = tmp_path / "mask.png"
    Image.fromarray(((read_gray(trimap) > 0.5) * 255).astype(np.uint8)).save(mask)
    background = tmp_path / "bg.png"
    Image.new("RGB", (10, 10), (0, 200, 0)).save(background)
    os.link(photo, tmp_path / "hardlink.png")
    (tmp_path / "symlink.png").symlink_to(trimap)
    before = _snapshot(tmp_path)
    cases = [
        ["predict", photo, "--trimap", trimap, "-o", photo],
        ["predict", photo, "--trimap", trimap, "-o", trimap],
        ["predict", photo, "--trimap", trimap, "-o", tmp_path / "hardlink.png"],
        ["predict", photo, "--trimap", trimap, "-o", tmp_path / "symlink.png"],
        ["predict", photo, "-t", trimap, "-b", background, "-o", background],
        ["trimap", photo, "--mask", mask, "-o", photo],
        ["trimap", photo, "--mask", mask, "-o", mask],
    ]
    for argv in cases:
        code, err = _run(argv, capsys)
        assert code == 2, argv
        _one_error_line(err, "is the input", "never overwrites an input")
    assert _snapshot(tmp_path) == before  # byte-identical, and nothing new (no temporary file either)


def test_a_folder_run_and_eval_reports_never_replace_inputs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    _, trimap = _scene(data, "photo")
    _scene(data, "photo_alpha")  # an input whose name is the output of photo.png
    (tmp_path / "gt").mkdir()
    Image.open(trimap).save(tmp_path / "gt" / "photo.png")
    before = _snapshot(tmp_path)
    code, err = _run(["predict", data, "-t", data, "-o", data], capsys)
    assert code == 2
    _one_error_line(err, "photo_alpha.png: is the input")
    argv = ["eval", "--pred", data, "--gt", tmp_path / "gt", "--trimap", data]
    for option in ("--csv", "--json"):
        code, err = _run([*argv, option, tmp_path / "gt" / "photo.png"], capsys)
        assert code == 2
        _one_error_line(err, "is the input")
        code, err = _run([*argv, option, tmp_path], capsys)
        assert code == 2
        _one_error_line(err, "a folder of that name is in the way")
    assert _snapshot(tmp_path) == before


def test_two_inputs_with_one_output_name_do_not_overwrite_each_other(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path / "in", "a")
    Image.open(photo).save(tmp_path / "in" / "a.bmp")  # same stem: both would write a_alpha.png
    (tmp_path / "tri").mkdir()
    trimap.rename(tmp_path / "tri" / "a.png")
    out = tmp_path / "out"
    code, err = _run(["predict", tmp_path / "in", "-t", tmp_path / "tri", "-o", out], capsys)
    assert code == 1
    assert "a.png its output a_alpha.png is also that of a.bmp" in _table(err)
    assert sorted(os.listdir(out)) == ["a_alpha.png"]


# --- 2. every failure of one item is a row of the table; the batch goes on ---------------------------


def test_batch_goes_on_past_every_kind_of_item_failure(tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "in"
    for name in ("a", "b", "c", "d", "e"):
        _scene(folder, name)
    tiny = np.full((3, 3), 128, np.uint8)
    tiny[0, 0], tiny[2, 2] = 0, 255
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(folder / "tiny.png")
    Image.fromarray(tiny).save(folder / "tiny_trimap.png")
    out = tmp_path / "out"
    (out / "b_alpha.png").mkdir(parents=True)  # an output name taken by a folder: IsADirectoryError
    real_mkstemp = mattekit_io.tempfile.mkstemp

    def flaky_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        prefix = str(kwargs.get("prefix", ""))
        if prefix.startswith(".c_alpha"):
            raise PermissionError(errno.EACCES, "Permission denied", str(out / prefix))
        if prefix.startswith(".d_alpha"):
            raise OSError(errno.ENOSPC, "No space left on device", str(out / prefix))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(mattekit_io.tempfile, "mkstemp", flaky_mkstemp)
    inputs = _snapshot(folder)
    # One process: the failures are injected by patching this process (workers are tested in test_batch_jobs).
    argv = ["predict", folder, "-t", folder, "-o", out, "--model", "large-kernel", "--jobs", "1"]
    code, err = _run(argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert "wrote 2, skipped 0, failed 4" in err
    assert "a folder of that name is in the way" in err  # b
    assert "permission denied" in err  # c
    assert "no space left on the device" in err  # d
    assert "large_kernel_alpha cannot matte this 3x3 input" in err  # the solver's bare AssertionError
    assert sorted(p.name for p in out.iterdir()) == ["a_alpha.png", "b_alpha.png", "e_alpha.png"]
    assert (out / "b_alpha.png").is_dir() and not list(out.glob(".*"))  # no temporary file left
    assert _snapshot(folder) == inputs


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, err = _run(["predict", photo, "-t", trimap, "-o", out], capsys)
    finally:
        out.chmod(0o755)
    assert code == 2
    _one_error_line(err, f"cannot write into {out}: permission denied")


def test_output_parent_that_is_a_file_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "gt").mkdir()
    here, gt = str(tmp_path), str(tmp_path / "gt")
    for argv in (
        ["predict", photo, "-t", trimap, "-o", tmp_path / "file" / "out"],
        ["trimap", photo, "--rect", "10,10,40,30", "-o", tmp_path / "file" / "t.png"],
        ["eval", "--pred", here, "--gt", gt, "--trimap", here, "--json", tmp_path / "file" / "r"],
    ):
        code, err = _run(argv, capsys)
        assert code == 2, argv
        _one_error_line(err, "cannot write into", "file is a file, not a folder")


def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path: Path, capsys, monkeypatch) -> None:
    photo, trimap = _scene(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("mattekit.cli.predict.load_background", broken)
    code, err = _run(["predict", photo, "-t", trimap, "-b", "white", "-o", tmp_path / "out"], capsys)
    assert code == EXIT_BUG
    assert "Traceback" in err and "ZeroDivisionError" in err and err.strip().endswith(BUG_NOTE)
    # Inside a batch the same bug is one row of the table, and the run goes on.
    monkeypatch.setattr("mattekit.batch.estimate_foreground", broken)
    code, err = _run(["predict", photo, "-t", trimap, "--rgba", "-o", tmp_path / "out"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "ZeroDivisionError: division by zero (a bug in mattekit? please report it)" in _table(err)


def test_reasons_are_never_empty() -> None:
    assert describe(MemoryError()) == "out of memory; try a smaller --max-memory or image"
    assert describe(AssertionError()) == "AssertionError (a bug in mattekit? please report it)"
    assert describe(OSError(errno.ENOSPC, "x", "out/a.png")) == "out/a.png: no space left on the device"


def test_eval_data_and_eval_pred_go_on_past_bad_cases(tmp_path: Path, capsys) -> None:
    root = tmp_path / "plain"
    for name in ("a", "b", "c"):
        photo, trimap = _scene(root / "image", name)
        (root / "trimap").mkdir(parents=True, exist_ok=True)
        trimap.rename(root / "trimap" / f"{name}.png")
        (root / "alpha").mkdir(exist_ok=True)
        Image.fromarray(((read_gray(root / "trimap" / f"{name}.png") > 0.3) * 255).astype(np.uint8)).save(
            root / "alpha" / f"{name}.png"
        )
    good = (root / "image" / "b.png").read_bytes()
    (root / "image" / "b.png").write_bytes(good[: len(good) // 2])  # truncated
    before = _snapshot(tmp_path)
    out_json = tmp_path / "report.json"
    code, err = _run(["eval", "--data", root, "--json", out_json], capsys)
    assert code == 1 and "Traceback" not in err
    assert "1 case(s) could not be scored" in err and "b.png: cannot decode" in err
    report = __import__("json").loads(out_json.read_text())
    assert [row["name"] for row in report["rows"]] == ["a", "c"] and len(report["failures"]) == 1
    # --pred: a prediction of the wrong size fails alone; the other cases are scored.
    (root / "pred").mkdir()
    for name in ("a", "b"):
        (root / "pred" / f"{name}.png").write_bytes((root / "alpha" / f"{name}.png").read_bytes())
    Image.new("L", (10, 10)).save(root / "pred" / "c.png")
    argv = ["eval", "--pred", root / "pred", "--gt", root / "alpha", "--trimap", root / "trimap"]
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "c.png: sizes differ (prediction 10x10" in captured.err and "mean over 2 image(s)" in captured.out
    assert set(_snapshot(tmp_path)) == set(before) | {"report.json"} | {f"plain/pred/{n}.png" for n in "abc"}


# --- 3. silent wrong answers are errors, or loud --------------------------------------------------------


def test_label_trimaps_in_any_container_give_the_same_matte(tmp_path: Path) -> None:
    photo, trimap = _scene(tmp_path)
    codes = np.asarray(Image.open(trimap))
    labels = (codes // 127).astype(np.uint8)
    expected = mattekit.predict(photo, trimap)
    assert 0 < expected.mean() < 1
    containers = {
        "rgb.png": Image.fromarray(np.dstack([labels] * 3)),
        "palette.png": Image.fromarray(labels).convert("P"),
        "rgb.bmp": Image.fromarray(np.dstack([labels] * 3)),
        "float.tif": Image.fromarray(labels.astype(np.float32)),
        "sixteen.png": Image.fromarray(labels.astype(np.uint16)),
    }
    for name, image in containers.items():
        image.save(tmp_path / name)
        assert np.array_equal(mattekit.predict(photo, tmp_path / name), expected), name


def test_a_lossy_label_map_is_an_error_not_an_all_zero_matte(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    labels = (np.asarray(Image.open(trimap)) // 127).astype(np.uint8)
    Image.fromarray(labels * 2).save(tmp_path / "labels.jpg", quality=70)  # 0/2/4: JPEG noise on labels
    code, err = _run(["predict", photo, "-t", tmp_path / "labels.jpg", "-o", tmp_path / "out"], capsys)
    assert code == 1 and "the whole trimap would be background" in _table(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class _NaNModel(MattingModel):
    """A network whose weights went bad: NaN everywhere."""

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        return np.full(images.shape[:3], np.nan, np.float32)


def test_non_finite_network_output_is_an_error(tmp_path: Path, capsys, monkeypatch) -> None:
    photo, trimap = _scene(tmp_path)
    with pytest.raises(MattekitError, match="non-finite alpha"):
        mattekit.predict(photo, trimap, _NaNModel())
    monkeypatch.setattr("mattekit.cli.predict.load_model", lambda *a, **k: _NaNModel())
    code, err = _run(["predict", photo, "-t", trimap, "-o", tmp_path / "out"], capsys)
    assert code == 1 and "non-finite alpha value(s)" in _table(err)
    assert not (tmp_path / "out" / "photo_alpha.png").exists()


def test_options_a_model_would_ignore_are_errors(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    (tmp_path / "real.pth").write_bytes(b"whatever")
    for weights in ("missing.pth", tmp_path / "real.pth"):
        code, err = _run(["predict", photo, "-t", trimap, "--weights", weights], capsys)
        assert code == 2
        _one_error_line(err, f"'{DEFAULT_MODEL}' is weight-free and takes no weights")
    for folder in ("image", "trimap", "alpha"):
        (tmp_path / folder).mkdir()
    code, err = _run(["eval", "--data", tmp_path, "--model", "knn", "--weights", "x.pth"], capsys)
    assert code == 2 and "weight-free" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_an_error_for_every_model(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    for model in ("shared-sampling", "knn", "closed-form"):
        for device in ("cuda", "cuda:1"):
            code, err = _run(["predict", photo, "-t", trimap, "-m", model, "--device", device], capsys)
            assert code == 2
            _one_error_line(err, f"--device {device}: no CUDA GPU is available")
    assert not list(tmp_path.glob("*_alpha.png")) and not (Path.cwd() / "photo_alpha.png").exists()


def test_eval_is_loud_about_unpaired_files_and_pairs_predict_output(tmp_path: Path, capsys) -> None:
    gt_dir, tri_dir, pred_dir = tmp_path / "gt", tmp_path / "trimap", tmp_path / "pred"
    for name in ("GT01", "GT02"):
        photo, trimap = _scene(tmp_path / "images", name)
        tri_dir.mkdir(exist_ok=True)
        trimap.rename(tri_dir / f"{name}.png")
        gt_dir.mkdir(exist_ok=True)
        Image.fromarray(((read_gray(tri_dir / f"{name}.png") > 0.3) * 255).astype(np.uint8)).save(
            gt_dir / f"{name}.png"
        )
    # predict's own outputs (with a cutout beside each alpha) are what eval --pred reads.
    argv = ["predict", tmp_path / "images", "-t", tri_dir, "-o", pred_dir, "--rgba"]
    assert _run(argv, capsys)[0] == 0
    written = ["GT01_alpha.png", "GT01_rgba.png", "GT02_alpha.png", "GT02_rgba.png"]
    assert sorted(os.listdir(pred_dir)) == written
    scoring = ["eval", "--pred", pred_dir, "--gt", gt_dir, "--trimap", tri_dir]
    code = main([str(a) for a in scoring])
    captured = capsys.readouterr()
    assert code == 0 and "mean over 2 image(s)" in captured.out and "could not be paired" not in captured.err
    # One prediction missing: the mean is over one image, so the run fails unless that is accepted.
    (pred_dir / "GT02_alpha.png").unlink()
    (pred_dir / "GT02_rgba.png").unlink()
    code = main([str(a) for a in scoring])
    captured = capsys.readouterr()
    assert code == 1 and "mean over 1 image(s)" in captured.out
    assert "error: 2 file(s) could not be paired" in captured.err and "--allow-unpaired" in captured.err
    assert "GT02.png: ground truth that no file pairs with" in captured.err
    code = main([str(a) for a in [*scoring, "--allow-unpaired"]])
    assert code == 0 and "warning: 2 file(s) could not be paired" in capsys.readouterr().err


def test_eval_max_pixels_is_honoured(tmp_path: Path, capsys) -> None:
    for folder in ("pred", "gt", "trimap"):
        (tmp_path / folder).mkdir()
        _flat_png(tmp_path / folder / "a.png", 80, 60, 128)
    argv = ["eval", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--trimap", tmp_path / "trimap"]
    code, err = _run([*argv, "--max-pixels", "1000"], capsys)
    assert code == 2
    _one_error_line(err, "80x60 is 4,800 pixels, over the limit of 1,000 pixels")
    assert _run(argv, capsys)[0] == 0


# --- 4. the edges ---------------------------------------------------------------------------------------


def test_file_names_are_printed_as_text_not_markup(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path, "[bold]x")
    code, err = _run(["predict", photo, "-t", trimap, "--max-pixels", "100", "-o", tmp_path / "o"], capsys)
    # Compared without spaces: rich folds the reason's long path anywhere, even inside "[bold]".
    assert code == 1 and "[bold]x.png:80x60is4,800pixels" in "".join(_table(err).split())
    code, err = _run(["predict", tmp_path / "[red]missing.png", "-t", trimap], capsys)
    assert code == 2
    _one_error_line(err, "[red]missing.png: no such file or folder")
    code, err = _run(["trimap", photo, "--rect", "10,10,40,30", "-o", tmp_path / "[i]t.png"], capsys)
    assert code == 0 and "wrote" in err and "[i]t.png" in err


def test_pipes_and_devices_are_refused_not_waited_on(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    cases = [
        (["predict", fifo, "-t", trimap, "-o", tmp_path / "o"], 1),
        (["predict", photo, "-t", fifo, "-o", tmp_path / "o"], 1),
        (["trimap", photo, "--mask", fifo, "-o", tmp_path / "t.png"], 2),
        (["predict", photo, "-t", trimap, "-b", "/dev/zero", "-o", tmp_path / "o"], 2),
    ]

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("blocked on a pipe or device")

    previous = signal.signal(signal.SIGALRM, hung)  # a regression fails here instead of hanging the suite
    try:
        for argv, status in cases:
            signal.alarm(60)
            code, err = _run(argv, capsys)
            signal.alarm(0)
            assert code == status, (argv, err)
            assert "not a regular file (a pipe, device or socket)" in _table(err) and "Traceback" not in err
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_trimap_box_over_the_whole_image_is_a_clear_error(tmp_path: Path, capsys) -> None:
    photo, _ = _scene(tmp_path)
    code, err = _run(["trimap", photo, "--rect", "0,0,80,60", "-o", tmp_path / "t.png"], capsys)
    assert code == 2
    _one_error_line(err, "covers the whole 80x60 image")
    assert not (tmp_path / "t.png").exists()


def test_unwritable_caches_and_crafted_checkpoints_are_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "hf").write_text("a file where a folder should be")
    checkpoint = tmp_path / "gca-dist.pth"
    checkpoint.write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = _run(["models", "import", "gca-dist", checkpoint], capsys)
    assert code == 2
    _one_error_line(err, "cannot write", f"{tmp_path / 'hf'} is a file, not a folder")
    # An imported file whose recorded hash is gone: the hint is a command to copy, FILE included.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cache"))
    from mattekit import zoo

    entry = zoo.get_entry("gca-dist")
    zoo.imported_path(entry).parent.mkdir(parents=True)
    zoo.imported_path(entry).write_bytes(b"weights")
    photo, trimap = _scene(tmp_path)
    code, err = _run(["predict", photo, "-t", trimap, "-m", "gca-dist"], capsys)
    assert code == 2
    _one_error_line(err, f"import it again (`mattekit models import gca-dist {entry.upstream.file}`)")
    # A pickle that would run code: refused without passing on torch's advice to disable weights_only.
    import pickle

    checkpoint.write_bytes(pickle.dumps({"x": os.getcwd}))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cache"))
    for argv in (
        ["models", "import", "gca-dist", checkpoint],
        ["predict", checkpoint, "-m", "gca", "--weights", checkpoint],
    ):
        code, err = _run(argv, capsys)
        assert code == 2
        _one_error_line(err, "not a readable checkpoint")
        assert "weights_only" not in err


def test_version_and_small_limits_and_dotted_folders(tmp_path: Path, capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mattekit {mattekit.__version__}"
    photo, trimap = _scene(tmp_path)
    argv = ["trimap", photo, "--mask", trimap, "-o", tmp_path / "t.png", "--max-pixels", "1000"]
    code, err = _run(argv, capsys)
    assert code == 2
    _one_error_line(err, "80x60 is 4,800 pixels, over the limit of 1,000 pixels")
    assert _run(["predict", photo, "-t", trimap, "-o", tmp_path / "results.v2"], capsys)[0] == 0
    assert (tmp_path / "results.v2" / "photo_alpha.png").is_file()
    code, err = _run(["predict", photo, "-t", trimap, "-o", tmp_path / "x.jpg"], capsys)
    assert code == 2 and "outputs are PNG files" in err
    # Clumsy pairs: the photo as its own trimap, and predictions scored against themselves.
    code, err = _run(["predict", photo, "-t", tmp_path / "." / photo.name], capsys)
    assert code == 2
    _one_error_line(err, "is the image itself")
    code, err = _run(["eval", "--pred", tmp_path, "--gt", f"{tmp_path}/.", "--trimap", tmp_path], capsys)
    assert code == 2
    _one_error_line(err, "are one folder: each file would be scored against itself")
    # A file name with a line break and a terminal escape still gives one line, and no escape reaches it.
    code, err = _run(["predict", tmp_path / "a\nb\x1b[2J.png", "-t", trimap], capsys)
    assert code == 2
    _one_error_line(err, "a\\nb\\x1b[2J.png: no such file or folder")
    # The main output named like one of the others would replace it: refused.
    code, err = _run(["predict", photo, "-t", trimap, "--rgba", "-o", tmp_path / "photo_alpha.png"], capsys)
    assert code == 2
    _one_error_line(err, "is the name of the alpha output too")


def test_stale_temporary_files_of_dead_runs_are_cleaned(tmp_path: Path, capsys) -> None:
    photo, trimap = _scene(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)  # that process has exited
    stale = out / f".photo_alpha.png.{dead_pid}.k2j4h8s1.part"
    live = out / f".other.png.{os.getppid()}.abcdefgh.part"  # a live process's write in progress
    foreign = out / ".notes.part"  # not mattekit's naming
    for path in (stale, live, foreign):
        path.write_bytes(b"partial")
    assert _run(["predict", photo, "-t", trimap, "-o", out], capsys)[0] == 0
    assert sorted(os.listdir(out)) == sorted([live.name, foreign.name, "photo_alpha.png"])
    assert clean_stale_parts(out) == []  # once per folder and process


def test_broken_pipe_ends_quietly() -> None:
    run = subprocess.run(
        f"{sys.executable} -m mattekit models list --markdown | head -c 10", shell=True, capture_output=True,
        text=True, timeout=120,
    )
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr


# --- 5. memory: small files that decode to huge images ------------------------------------------------

# VmHWM, not ru_maxrss: a child's ru_maxrss starts from the RSS of the process that forked it (pytest).
_PEAK = (
    "import sys\n"
    "from mattekit.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
    "sys.stderr.write(f'\\nPEAK_KB {hwm}\\n')\n"
    "sys.exit(code)\n"
)


def _peak_mb(argv: list[object], cwd: Path) -> tuple[int, str, float]:
    """Exit status, stderr and peak resident memory (MB) of one CLI run in a fresh process."""
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    peak = int(run.stderr.rsplit("PEAK_KB", 1)[1]) / 1024
    print(f"peak {peak:.0f} MB, exit {run.returncode}: mattekit {' '.join(map(str, argv))}")  # pytest -s
    return run.returncode, run.stderr.rsplit("PEAK_KB", 1)[0], peak


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from Linux's /proc")
def test_huge_images_in_small_files_stay_within_the_memory_claims(tmp_path: Path) -> None:
    """Peak RSS per command on 2000x2000 images stored in a few kB, against a run on a tiny image (the
    interpreter and libraries); the budgets are what each command announces (docs/errors.md)."""
    side = 2000
    big = _flat_png(tmp_path / "big.png", side, side, 90, mode="RGB")
    big_trimap = np.zeros((side, side), np.uint8)
    big_trimap[900:1100, 900:1100] = 128
    big_trimap[950:1050, 950:1050] = 255
    Image.fromarray(big_trimap).save(tmp_path / "big_trimap.png")
    photo, trimap = _scene(tmp_path)
    assert big.stat().st_size < 100_000

    # predict --rgba: the colours need ~140 B/px (0.56 GB) > a 300 MB budget: refused from the header.
    baseline = _peak_mb(["predict", photo, "-t", trimap, "--rgba", "-o", tmp_path / "o"], tmp_path)[2]
    big_trimap = tmp_path / "big_trimap.png"
    run_big = ["predict", big, "-t", big_trimap, "--rgba", "-o", tmp_path / "o", "--max-memory"]
    code, err, peak = _peak_mb([*run_big, "300MB"], tmp_path)
    assert code == 1 and "over the memory budget of 0.30 GB" in err
    assert peak - baseline < 50, (peak, baseline)
    # ... and within a budget that fits, the whole run stays inside it.
    code, err, peak = _peak_mb([*run_big, "700MB"], tmp_path)
    assert code == 0, err
    assert peak - baseline < 700 * 1e6 / 2**20, (peak, baseline)

    # A background picture over --max-pixels is refused before it is decoded (as early as a missing one).
    early = ["predict", photo, "-t", trimap, "--max-pixels", "1000000", "-o", tmp_path / "o", "-b"]
    baseline = _peak_mb([*early, tmp_path / "missing.png"], tmp_path)[2]
    code, err, peak = _peak_mb([*early, big], tmp_path)
    assert code == 2 and "big.png: 2000x2000 is 4.0 MP, over the limit of 1.0 MP" in err
    assert peak - baseline < 30

    # trimap --rect: GrabCut (~210 B/px) fits a 300 MB budget only on a scaled-down copy.
    baseline = _peak_mb(["trimap", photo, "--rect", "10,10,40,30", "-o", tmp_path / "t.png"], tmp_path)[2]
    argv = ["trimap", big, "--rect", "500,500,1000,1000", "--max-memory", "300MB", "-o", tmp_path / "tb.png"]
    code, err, peak = _peak_mb(argv, tmp_path)
    assert code == 0 and "scaled down" in err, err
    assert peak - baseline < 300 * 1e6 / 2**20, (peak, baseline)
    # A mask of the wrong size is found from the headers: nothing is decoded.
    code, err, peak = _peak_mb(["trimap", photo, "--mask", big, "-o", tmp_path / "tm.png"], tmp_path)
    assert code == 2 and "mask is 2000x2000, image is 80x60" in err
    assert peak - baseline < 30

    # eval: sizes are compared from the headers, before three 4 MP files are decoded.
    for folder in ("pred", "gt", "trimap"):
        (tmp_path / folder).mkdir()
    _flat_png(tmp_path / "pred" / "a.png", side, side)
    _flat_png(tmp_path / "gt" / "a.png", side, side)
    _flat_png(tmp_path / "trimap" / "a.png", side, side - 1, 128)
    argv = ["eval", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--trimap", tmp_path / "trimap"]
    baseline = _peak_mb(["eval", "--pred", tmp_path / "pred"], tmp_path)[2]
    code, err, peak = _peak_mb(argv, tmp_path)
    assert code == 2 and "sizes differ" in err
    assert peak - baseline < 30
