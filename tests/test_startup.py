"""Start-up stays light: commands that need no network never import torch (issue 15, point 1); the first
run's compilation of pymatting's kernels is announced and counted (point 3); the thread policy (point 4)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mattekit import jit, threads
from mattekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"

# Runs the CLI in-process and, once it has finished, says which heavy packages it imported.
_PROBE = """
import sys
from mattekit.cli import main
status = main(sys.argv[1:])
heavy = ("torch", "pymatting", "cv2", "mattekit.zoo", "rich", "pydantic")
heavy = sorted(m for m in heavy if m in sys.modules)
print("imported:", " ".join(heavy), file=sys.stderr)
sys.exit(status)
"""


def _imported(args: list[str], cwd: Path) -> set[str]:
    run = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("imported:"), run.stderr
    return set(line.removeprefix("imported:").split())


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["models", "list"],
        ["eval", "--pred", "{pred}", "--gt", "{gt}", "--trimap", "{trimap}", "--allow-unpaired"],
        ["predict", "{image}", "--trimap", "{image_trimap}", "-o", "{out}"],
    ],
    ids=["help", "models-list", "eval-pred", "predict-weight-free"],
)
def test_commands_without_networks_never_import_torch(
    command: list[str], tmp_path: Path, dev_dir: Path
) -> None:
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(dev_dir / "gt_training_lowres" / "GT04.png", pred / "GT04.png")  # a perfect prediction
    places = {
        "pred": pred,
        "gt": dev_dir / "gt_training_lowres",
        "trimap": dev_dir / "trimap_training_lowres" / "Trimap1",
        "image": IMAGES / "chelsea.png",
        "image_trimap": IMAGES / "chelsea_trimap.png",
        "out": tmp_path / "out",
    }
    imported = _imported([arg.format(**places) for arg in command], tmp_path)
    assert "torch" not in imported
    # the probe sees what was imported: predict did load its solver, and only predict; only help and eval
    # load OpenCV (40 MB, see mattekit.io): each command imports its own module only (mattekit.cli)
    assert ("pymatting" in imported) == (command[0] == "predict")
    assert ("cv2" in imported) == (command[0] in ("--help", "eval"))
    # a weight-free model by its registry name needs no catalogue (models.toml parsed, the user's read)
    assert ("mattekit.zoo" in imported) == (command[0] in ("--help", "models"))
    # rich draws bars and tables; predict writing to a pipe (as here) draws nothing and needs none of it
    assert ("rich" in imported) == (command[0] != "predict")
    # typer is capped below 0.29, which converts every option through pydantic (≈0.1 s per process)
    assert "pydantic" not in imported


def test_kernel_cache_is_found_where_numba_keeps_it(tmp_path: Path) -> None:
    """The installed pymatting's kernels are cached (the suite has run them); an empty NUMBA_CACHE_DIR is a
    first run, which is what a read-only install without a cache would see."""
    check = "from mattekit.jit import kernels_cached; print(kernels_cached())"
    warm = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    cold = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, env=env)
    assert (warm.stdout.strip(), cold.stdout.strip()) == ("True", "False")


def test_first_run_compilation_is_announced_and_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the kernels are not cached, predict says so before it imports pymatting and its summary
    counts the time (a real compilation takes minutes: the import here is a cheap re-import)."""
    jit.import_pymatting()
    monkeypatch.delitem(sys.modules, "pymatting")  # restored afterwards
    monkeypatch.setattr(jit, "kernels_cached", lambda: False)
    monkeypatch.setattr(jit, "compile_seconds", 0.0)
    monkeypatch.setattr(jit, "_announce", jit._announce)
    args = ["predict", str(IMAGES / "chelsea.png"), "-t", str(IMAGES / "chelsea_trimap.png")]
    assert main([*args, "-o", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "compiling solvers (numba), first run only" in err
    assert re.search(r"wrote 1, skipped 0, failed 0 in \d+\.\d s after \d+\.\d s compiling solvers", err)
    assert jit.compile_seconds > 0


def test_thread_policy_leaves_busy_cores_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert threads.auto_threads(cores=2, load=0.3) == 2
    assert threads.auto_threads(cores=2, load=1.4) == 1  # one core busy: two threads would fight over it
    assert threads.auto_threads(cores=2, load=18.0) == 1
    assert threads.auto_threads(cores=16, load=3.2) == 13
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # a container allowed 1.5 CPUs
    monkeypatch.setattr(threads, "_CPU_MAX", quota)
    assert threads.usable_cores() == min(2, len(os.sched_getaffinity(0)))
    quota.write_text("max 100000\n")
    assert threads.usable_cores() == len(os.sched_getaffinity(0))
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "_LOADAVG", loadavg)
    loadavg.write_text("1.02 0.61 0.30 1/140 2301\n")  # the previous run just ended: only we run now
    assert threads.busy_cores() == 0
    loadavg.write_text("0.40 0.61 0.30 5/140 2301\n")  # a burst just started: the average is the steadier
    assert threads.busy_cores() == 0.4
    loadavg.write_text("9.50 8.00 7.00 12/140 2301\n")
    assert threads.busy_cores() == 9.5


@pytest.mark.parametrize("count", [1, 2])  # 1 differs from the default on an idle machine, 2 on a busy one
def test_threads_option_reaches_the_solver(tmp_path: Path, count: int) -> None:
    """--threads sets numba's thread count for pymatting's parallel kernels and OpenMP's for the default
    model's KD-tree searches (pykdtree), checked in the process."""
    probe = (
        "import sys, numba; from threadpoolctl import threadpool_info; from mattekit.cli import main; "
        "status = main(sys.argv[1:]); "
        "omp = {i['num_threads'] for i in threadpool_info() if i['user_api'] == 'openmp'}; "
        "print('openmp', *sorted(omp), file=sys.stderr); "
        "print('threads', numba.get_num_threads(), file=sys.stderr); sys.exit(status)"
    )
    args = [str(IMAGES / "chelsea.png"), "-t", str(IMAGES / "chelsea_trimap.png"), "-o", str(tmp_path)]
    command = [sys.executable, "-c", probe, "predict", *args, "--threads", str(count)]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"threads {min(count, os.cpu_count() or 1)}"
    assert run.stderr.strip().splitlines()[-2] == f"openmp {count}"
