"""How fast mattekit scores SAD/MSE/Grad/Conn, against the official DIM MATLAB code under GNU Octave.

    python benchmarks/metrics_speed.py --reference ../shared/reference/metrics \\
        [--official /scratch/DIM_evaluation_code] [--large 6000]

Times, on the rows of ``official_metrics.csv`` (prediction, ground truth, trimap):

- mattekit: :func:`mattekit.evaluate.score_cases` (decoding the three files and the four metrics), with one
  worker and with one per core; best of ``--repeat`` runs.
- the official code, when ``--official`` names a copy of ``DIM_evaluation_code/`` (HOP-Matting repository;
  keep it outside this repository) and ``octave`` with its image package is installed: the same rows read
  with ``imread`` (channel 1; 0/255 logical arrays made uint8 again) and scored by the four official
  functions, timed with tic/toc inside Octave, so Octave's start-up is not counted.
- with ``--large N``: one N x N case (GT01's ground truth and reference prediction resized), each stage of
  mattekit's scoring timed alone, to show where the time goes at that size.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

from mattekit.evaluate import Case, read_alpha, score_case, score_cases
from mattekit.io import write_png
from mattekit.metrics import connectivity_error, gradient_error, mse, region_mask, sad
from mattekit.trimap import read_trimap

OCTAVE_DRIVER = r"""
pkg load image
addpath('{official}');
fid = fopen('{rows}'); rows = {{}};
while true
  l = fgetl(fid); if ~ischar(l), break; end
  rows{{end+1}} = strsplit(l, ',');
end
fclose(fid);
function a = rd(p)
  a = imread(p);
  a = a(:,:,1);
  if islogical(a), a = uint8(a) * 255; end
end
t0 = tic; c0 = cputime;
for i = 1:numel(rows)
  r = rows{{i}};
  pred = rd(r{{1}}); target = rd(r{{2}}); trimap = rd(r{{3}});
  sad = compute_sad_loss(pred, target, trimap);
  mse = compute_mse_loss(pred, target, trimap);
  grad = compute_gradient_loss(pred, target, trimap) / 1000;
  conn = compute_connectivity_error(pred, target, trimap, 0.1) / 1000;
end
printf('%.6f %.6f\n', toc(t0), cputime - c0);
"""


def load_cases(reference: Path) -> list[Case]:
    with open(reference / "official_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        Case(row["pred"], (reference / row["gt"]).resolve(), (reference / row["trimap"]).resolve(),
             pred=(reference / row["pred"]).resolve())
        for row in rows
    ]


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """Least wall and CPU seconds (all threads of this process) of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - begin, time.process_time() - begin_cpu))
    return min(wall for wall, _ in times), min(cpu for _, cpu in times)


def octave_seconds(cases: list[Case], official: Path) -> tuple[float, float]:
    """Wall and CPU seconds of Octave's loop over the cases (start-up excluded)."""
    with tempfile.TemporaryDirectory() as scratch:
        rows = Path(scratch) / "rows.csv"
        rows.write_text("".join(f"{c.pred},{c.gt},{c.trimap}\n" for c in cases))
        script = Path(scratch) / "bench.m"
        script.write_text(OCTAVE_DRIVER.format(official=official.resolve(), rows=rows))
        result = subprocess.run(
            ["octave", "--no-gui", "--quiet", str(script)], capture_output=True, text=True, check=True
        )
    wall, cpu = result.stdout.split()[-2:]
    return float(wall), float(cpu)


def large_case(reference: Path, size: int, scratch: Path) -> None:
    """Time each stage of scoring one size x size case."""
    ref_cases = load_cases(reference)
    source = next(c for c in ref_cases if c.pred is not None and c.pred.name == "GT01.png")
    assert source.pred is not None
    grow = {"dsize": (size, size), "interpolation": cv2.INTER_LINEAR}
    pred = cv2.resize(read_alpha(source.pred), **grow)
    gt = cv2.resize(read_alpha(source.gt), **grow)
    trimap = cv2.resize(read_trimap(source.trimap), (size, size), interpolation=cv2.INTER_NEAREST)
    paths = {name: scratch / f"{name}.png" for name in ("pred", "gt", "trimap")}
    for name, array in zip(paths, (pred, gt, trimap), strict=True):
        write_png(paths[name], array / 255.0)
    case = Case("large", paths["gt"], paths["trimap"], pred=paths["pred"])
    mask = region_mask(trimap)
    print(f"\n{size}x{size} case ({mask.mean():.0%} unknown), seconds (wall, CPU):")
    stages: dict[str, Callable[[], object]] = {
        "decode pred + gt + trimap": lambda: (read_alpha(paths["pred"]), read_alpha(paths["gt"]),
                                              read_trimap(paths["trimap"])),
        "SAD + MSE": lambda: (sad(pred, gt, mask), mse(pred, gt, mask)),
        "Grad": lambda: gradient_error(pred, gt, mask),
        "Conn": lambda: connectivity_error(pred, gt, mask),
        "total (score_case)": lambda: score_case(case),
    }
    for name, run in stages.items():
        wall, cpu = best_of(2, run)
        print(f"  {name:28s} {wall:7.3f} {cpu:7.3f}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="shared/reference/metrics folder")
    parser.add_argument("--official", type=Path, help="DIM_evaluation_code/ folder (outside this repo)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--large", type=int, default=0, help="also time one N x N case")
    args = parser.parse_args()

    cases = load_cases(args.reference)
    cores = os.cpu_count() or 1
    versions = f"Python {platform.python_version()}, OpenCV {cv2.__version__}"
    print(f"machine: {cpu_name()}, {cores} cores; {versions}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    count = len(cases)
    print(f"\n{count} cases: wall s, CPU s, wall s per case")
    timings = {
        "mattekit, 1 worker": best_of(args.repeat, lambda: score_cases(cases, jobs=1)),
        f"mattekit, {cores} workers": best_of(args.repeat, lambda: score_cases(cases, jobs=cores)),
    }
    if args.official is not None and shutil.which("octave"):
        timings["official code, Octave"] = octave_seconds(cases, args.official)
    for name, (wall, cpu) in timings.items():
        print(f"  {name:24s} {wall:8.3f} {cpu:8.3f} {wall / count:8.4f}")
    if "official code, Octave" in timings:
        official, fast = timings["official code, Octave"], timings[f"mattekit, {cores} workers"]
        single = timings["mattekit, 1 worker"]
        print(f"  ratio Octave / mattekit: wall {official[0] / fast[0]:.1f}x ({cores} workers), "
              f"CPU {official[1] / single[1]:.1f}x (1 worker)")
    elif args.official is not None:
        print("  official code: octave not found (apt-get install octave octave-image)")
    if args.large:
        with tempfile.TemporaryDirectory() as scratch:
            large_case(args.reference, args.large, Path(scratch))


if __name__ == "__main__":
    main()
