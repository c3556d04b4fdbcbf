"""Automatic matting (no trimap, no mask) against matting with the benchmark's trimaps, whole image.

    python benchmarks/auto.py [--data ../shared/data/alphamatting-dev] [--model shared-sampling]

For every alphamatting.com training photo: the U²-Net-p mask's IoU with the ground truth (alpha >= 0.5),
then the whole-image SAD (in thousands, 8-bit mattes as ``mattekit predict`` writes them) of the same
matting model with (1) the automatic trimap (segmenter -> morphology -> matte -> hard fusion, the path of
``mattekit predict photo.png``) and (2) each given trimap set.  The automatic path's figures are the
bounds of tests/test_joint.py; the table goes to docs/benchmarks.md.  The segmenter is the wheel's
U²-Net-p (``U2NET_HOME`` is pointed at an empty folder so a user's own rembg models do not change it).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from mattekit.evaluate import read_alpha
from mattekit.joint import TrimapMaker, matte
from mattekit.metrics import to_uint8
from mattekit.predictor import MattingInput, load_input, load_model
from mattekit.segment import SalientSegmenter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def whole_sad(alpha: np.ndarray, gt: np.ndarray) -> float:
    """Whole-image SAD in thousands of the 8-bit matte against the 8-bit ground truth."""
    return float(np.abs(to_uint8(alpha).astype(np.float64) - gt).sum() / 255 / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="shared-sampling")
    args = parser.parse_args()
    os.environ["U2NET_HOME"] = tempfile.mkdtemp()
    segmenter = SalientSegmenter()
    maker = TrimapMaker(make_segmenter=lambda: segmenter)
    model = load_model(args.model)
    sets = sorted(p.name for p in (args.data / "trimap_training_lowres").iterdir() if p.is_dir())
    machine = platform.processor() or platform.machine()
    print(f"{args.model}; segmenter {segmenter.model.describe()}; {machine}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start\n")
    print("| photo | mask IoU | unknown share | auto SAD | " + " | ".join(f"{s} SAD" for s in sets)
          + " | auto s |")
    print("|---|---:|---:|---:|" + "---:|" * len(sets) + "---:|")
    totals: dict[str, list[float]] = {}
    for image_path in sorted((args.data / "input_training_lowres").glob("*.png")):
        gt = read_alpha(args.data / "gt_training_lowres" / image_path.name).astype(np.float64)
        data = load_input(image_path)
        begin = time.perf_counter()
        mask = segmenter(data.image)
        estimate = maker.estimate(data.image, mask)
        alpha = matte(model, MattingInput(data.image, None, data.source_alpha, mask), maker)
        seconds = time.perf_counter() - begin
        truth = gt >= 128
        iou = float(((mask >= 0.5) & truth).sum() / ((mask >= 0.5) | truth).sum())
        row = {"auto": whole_sad(alpha, gt)}
        for name in sets:
            given = load_input(image_path, args.data / "trimap_training_lowres" / name / image_path.name)
            row[name] = whole_sad(matte(model, given), gt)
        for key, value in row.items():
            totals.setdefault(key, []).append(value)
        unknown = float(np.mean(estimate.trimap == 128))
        given_sads = " | ".join(f"{row[s]:.2f}" for s in sets)
        print(f"| {image_path.stem} | {iou:.3f} | {unknown:.1%} | {row['auto']:.2f} | {given_sads} | "
              f"{seconds:.1f} |", flush=True)
    means = {key: np.mean(values) for key, values in totals.items()}
    given_means = " | ".join(f"{means[s]:.2f}" for s in sets)
    print(f"| **mean** | | | **{means['auto']:.2f}** | {given_means} | |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
