"""Weight-free solvers side by side on alphamatting.com training data: quality and time per image.

    python benchmarks/classical.py [--data ../shared/data/alphamatting-dev] [--models closed-form knn ...]
                                   [--trim off|on|both]

Every model runs on the same cases in one process, one after another, through the same path as
``mattekit eval --data DIR --model NAME``; the table (markdown) goes to stdout.  ``--trim on`` trims
every trimap first (:func:`mattekit.trimap.trim`, what ``mattekit predict --trim`` does); the score is
always over the original trimap's unknown region.  This is how the default
model of ``mattekit predict`` was chosen (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from mattekit.evaluate import evaluate_model, find_cases
from mattekit.models import list_models
from mattekit.predictor import load_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def weight_free_models() -> list[str]:
    return [info.name for info in list_models() if not info.requirements.weights]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", nargs="+", default=weight_free_models())
    parser.add_argument("--trim", choices=["off", "on", "both"], default="off")
    parser.add_argument("--rows", action="store_true", help="Also print every case's scores to stderr.")
    args = parser.parse_args()

    dataset = find_cases(args.data)
    print(f"{len(dataset.cases)} cases from {args.data.name}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n")
    trims = {"off": [False], "on": [True], "both": [False, True]}[args.trim]
    print("| model | trim | trimap set | mean SAD | mean MSE | mean Grad | mean Conn | s / image | peak MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = load_model(name)
        for trim in trims:
            report = evaluate_model(dataset, model, name, trim_trimap=trim)
            for group, means in report.means().items():
                print(f"| {name} | {'on' if trim else 'off'} | {group} | {means['sad']:.2f} | "
                      f"{means['mse']:.4f} | {means['grad']:.2f} | {means['conn']:.2f} | "
                      f"{means['seconds']:.2f} | {means['peak_mb']:.0f} |", flush=True)
            if args.rows:
                for row in report.rows:
                    print(f"row {name} trim={'on' if trim else 'off'} {row.case.trimap_set} {row.case.name} "
                          f"sad {row.scores.sad:.4f} mse {row.scores.mse:.6f} grad {row.scores.grad:.4f} "
                          f"conn {row.scores.conn:.4f} s {row.seconds:.2f} mb {row.peak_mb:.0f}",
                          file=sys.stderr, flush=True)
        print(f"<!-- {name} done, load average {os.getloadavg()[0]:.1f} -->", flush=True)


if __name__ == "__main__":
    main()
