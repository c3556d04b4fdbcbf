"""Start-up and the classical path: ``mattekit predict`` against the plain pymatting script it wraps.

    python benchmarks/startup.py [--models shared-sampling knn ...] [--repeats 5] [--sizes small 2mp]

For each weight-free model and each photo, the two commands run as whole processes, one after the other
(ABAB..., after one warm-up of each, so the file cache and numba's compiled kernels are warm for both and a
change of machine load hits both alike).  Each is started by a small launcher process that times it and
reads its ``ru_maxrss`` and CPU time (user + system, steadier than wall time on a shared machine) from
``os.wait4``: a process forked straight from this one would count this benchmark's own memory in its
peak (the kernel records the parent's pages the child held until exec).
The table (markdown, medians) goes to stdout with the ratios mattekit / plain; the targets are wall
<= 1.1x and peak memory <= 1.2x.

The plain script is what a pymatting user writes: ``load_image`` (PIL), the solver, ``save_image``; for
information-flow, which pymatting lacks, the same script calls mattekit's solver through the Python API
(so its row is the cost of the CLI alone).  mattekit's bytecode is compiled first, as pip compiles it at
install time (see main).  The photos: ``docs/images/chelsea.png`` (451x300, its trimap beside it) and
alphamatting.com's GT04 (from ``shared/data/alphamatting-dev``) upscaled to about 2 megapixels (cubic for
the photo, nearest for its Trimap1), written to a temporary folder.  ``python -c "import mattekit"`` is
timed the same way.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MATTEKIT_SHARED", ROOT.parent / "shared"))
DEV = SHARED / "data" / "alphamatting-dev"

#: pymatting's function for each pymatting solver of the registry (mattekit.models.classical).  Three
#: of them now solve the same system differently (KNN and learning-based eliminate the known pixels,
#: random walk converges to 1e-10): their rows compare the CLI with a script that does other work.
SOLVERS = {
    "closed-form": "estimate_alpha_cf",
    "knn": "estimate_alpha_knn",
    "large-kernel": "estimate_alpha_lkm",
    "random-walk": "estimate_alpha_rw",
    "learning-based": "estimate_alpha_lbdm",
    "shared-sampling": "estimate_alpha_sm",
}

PLAIN = """
import sys
from pymatting import load_image, save_image, {solver}
image, trimap = load_image(sys.argv[1], "RGB"), load_image(sys.argv[2], "GRAY")
save_image(sys.argv[3], {solver}(image, trimap))
"""

#: Information-flow is mattekit's own solver: its plain script calls it through the Python API, with the
#: edge trimming's labels as hints as the registered model does (without them it would skip the trimming).
PLAIN_API = """
import sys
from pymatting import load_image, save_image
from mattekit.models.information_flow import information_flow_alpha
from mattekit.trimap import read_trimap, trim_edges
image, trimap = load_image(sys.argv[1], "RGB"), read_trimap(sys.argv[2])
save_image(sys.argv[3], information_flow_alpha(image, trimap, hints=trim_edges(image, trimap)))
"""
MODELS = [*SOLVERS, "information-flow"]


#: Runs argv[1:] as a child and prints its wall seconds, CPU seconds and peak resident KB.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]  # stdout is for the figures below
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=quiet)
_, status, usage = os.wait4(pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(time.perf_counter() - start, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def photos(folder: Path, sizes: list[str]) -> dict[str, tuple[Path, Path]]:
    """The small photo as it is, and GT04 upscaled to about 2 MP, each with its trimap."""
    found = {"small": (ROOT / "docs/images/chelsea.png", ROOT / "docs/images/chelsea_trimap.png")}
    if "2mp" in sizes:
        import cv2  # not at the top: this process stays small (see LAUNCHER)

        image = cv2.imread(str(DEV / "input_training_lowres/GT04.png"))
        trimap = cv2.imread(str(DEV / "trimap_training_lowres/Trimap1/GT04.png"), cv2.IMREAD_GRAYSCALE)
        scale = (2_000_000 / (image.shape[0] * image.shape[1])) ** 0.5
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        cv2.imwrite(str(folder / "gt04_2mp.png"), cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))
        cv2.imwrite(
            str(folder / "gt04_2mp_trimap.png"), cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
        )
        found["2mp"] = (folder / "gt04_2mp.png", folder / "gt04_2mp_trimap.png")
    return {name: found[name] for name in sizes}


def measure(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak resident MB of one process running ``command``."""
    run = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True)
    seconds, cpu, peak_kb, status = run.stdout.split()[-4:]
    if run.returncode != 0 or status != "0":
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr}")
    return float(seconds), float(cpu), int(peak_kb) / 1024


def compare(commands: dict[str, list[str]], repeats: int, warmups: int = 1) -> dict[str, tuple[float, ...]]:
    """Median wall s, CPU s and peak MB of each command, run in turn ``repeats`` times after ``warmups``
    runs of each (0 when an earlier row has already warmed numba's cache and the files)."""
    for _ in range(warmups):
        for command in commands.values():
            measure(command)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(measure(command))
    return {
        name: tuple(statistics.median(column) for column in zip(*results, strict=True))
        for name, results in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--sizes", nargs="+", default=["small", "2mp"], choices=["small", "2mp"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmups", type=int, default=1, help="unmeasured runs of each command first")
    args = parser.parse_args()

    python = sys.executable
    # As installed: pip compiles a package's bytecode when it installs it, and PYTHONDONTWRITEBYTECODE
    # (set on some machines) would otherwise make every mattekit run recompile its modules from source,
    # while pymatting's and typer's bytecode sits compiled in site-packages.
    compileall.compile_dir(ROOT / "mattekit", quiet=1)
    print(f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores, "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f} at the start; "
          f"medians of {args.repeats} runs after {args.warmups} warm-up run(s) of each\n")
    print("| what | photo | mattekit s | plain s | wall ratio | mattekit CPU s | plain CPU s | CPU ratio | "
          "mattekit MB | plain MB | memory ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    imports = compare(
        {"mattekit": [python, "-c", "import mattekit"], "plain": [python, "-c", "import numpy, PIL.Image"]},
        args.repeats,
    )
    _row("`import mattekit` (plain: `import numpy, PIL.Image`)", "-", imports)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for size, (image, trimap) in photos(folder, args.sizes).items():
            for model in args.models:
                mattekit = [python, "-m", "mattekit", "predict", str(image), "--trimap", str(trimap),
                            "--model", model, "-o", str(folder / "mattekit.png")]
                script = PLAIN.format(solver=SOLVERS[model]) if model in SOLVERS else PLAIN_API
                plain = [python, "-c", script, str(image), str(trimap), str(folder / "plain.png")]
                _row(f"predict --model {model}", size, compare({"mattekit": mattekit, "plain": plain},
                                                              args.repeats, args.warmups))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


def _row(what: str, size: str, result: dict[str, tuple[float, ...]]) -> None:
    (ours, our_cpu, our_mb), (theirs, their_cpu, their_mb) = result["mattekit"], result["plain"]
    print(f"| {what} | {size} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} | {our_cpu:.2f} | "
          f"{their_cpu:.2f} | {our_cpu / their_cpu:.2f} | {our_mb:.0f} | {their_mb:.0f} | "
          f"{our_mb / their_mb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
