"""Folder throughput: ``mattekit predict DIR --jobs N`` for several N, images per second.

    python benchmarks/batch_jobs.py [--data ../shared/data/alphamatting-test] [--jobs 1 2] [--rounds 2]

Runs the whole command (start-up included) on the alphamatting.com test images (8 photos, about 800x600)
with their ``Trimap1``, with mattekit's default model unless ``--model`` is given, into a fresh output
folder each time; the job counts alternate (``--rounds``) so that a change of machine load hits all alike.
Prints a markdown table of the median wall seconds and images per second, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mattekit.models import DEFAULT_MODEL

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()

    images, trimaps = args.data / "input_lowres", args.data / "trimap_lowres" / "Trimap1"
    count = len(list(images.glob("*.png")))
    seconds: dict[int, list[float]] = {jobs: [] for jobs in args.jobs}
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for jobs in args.jobs:
                out = Path(scratch) / f"{jobs}-{round_}"
                command = [sys.executable, "-m", "mattekit", "predict", str(images), "--trimap", str(trimaps),
                           "-o", str(out), "--model", args.model, "--jobs", str(jobs)]
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                seconds[jobs].append(time.perf_counter() - start)
    print(f"{count} images of {args.data.name}, {args.model}, {len(os.sched_getaffinity(0))} usable cores, "
          f"load average {load_start:.1f} -> {os.getloadavg()[0]:.1f}; medians of {args.rounds} runs\n")
    print("| --jobs | wall s | images / s |")
    print("|---:|---:|---:|")
    for jobs, runs in seconds.items():
        median = statistics.median(runs)
        print(f"| {jobs} | {median:.1f} | {count / median:.2f} |")


if __name__ == "__main__":
    main()
