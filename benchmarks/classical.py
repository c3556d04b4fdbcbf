"""Weight-free solvers side by side on alphamatting.com training data: quality and time per image.

    python benchmarks/classical.py [--data ../shared/data/alphamatting-dev] [--models closed-form knn ...]

Every model runs on the same cases in one process, one after another, through the same path as
``mattekit eval --data DIR --model NAME``; the table (markdown) goes to stdout.  This is how the default
model of ``mattekit predict`` was chosen (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
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
    args = parser.parse_args()

    dataset = find_cases(args.data)
    print(f"{len(dataset.cases)} cases from {args.data.name}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n")
    print("| model | trimap set | mean SAD | mean MSE | mean Grad | mean Conn | s / image |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        report = evaluate_model(dataset, load_model(name), name)
        for group, means in report.means().items():
            print(f"| {name} | {group} | {means['sad']:.2f} | {means['mse']:.4f} | {means['grad']:.2f} | "
                  f"{means['conn']:.2f} | {means['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
