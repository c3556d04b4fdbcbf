"""KNN matting: mattekit's system (known pixels eliminated) against pymatting's ``estimate_alpha_knn``.

    python benchmarks/knn.py            # the 18 alphamatting-dev cases at full size

For each case both solvers run one after the other (so that a shared machine's load hits both alike):
seconds, SAD against the ground truth over the unknown region (thousands, as matting papers print it),
and the largest and mean |mattekit − pymatting| over the unknown pixels.  Results go to docs/engine.md
("KNN matting in one system").
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pymatting

from mattekit.io import read_gray, read_image
from mattekit.models.knn_matting import knn_alpha
from mattekit.trimap import UNKNOWN, read_trimap

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def main() -> None:
    print(f"load {os.getloadavg()[0]:.2f}")
    print("| case | pymatting s | mattekit s | SAD pymatting | SAD mattekit | max diff | mean diff (/255) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    totals = np.zeros(2)
    for photo in sorted(path.stem for path in (DATA / "input_training_lowres").glob("*.png")):
        for kind in ("Trimap1", "Trimap2"):
            image = read_image(DATA / "input_training_lowres" / f"{photo}.png")[0].astype(np.float64)
            trimap = read_trimap(DATA / "trimap_training_lowres" / kind / f"{photo}.png")
            truth = read_gray(DATA / "gt_training_lowres" / f"{photo}.png")
            unknown = trimap == UNKNOWN
            start = time.perf_counter()
            theirs = np.clip(pymatting.estimate_alpha_knn(image, trimap / 255.0), 0, 1)
            middle = time.perf_counter()
            ours = knn_alpha(image, trimap / 255.0)
            end = time.perf_counter()
            sads = [float(np.abs(alpha - truth)[unknown].sum() / 1000) for alpha in (theirs, ours)]
            totals += sads
            difference = np.abs(ours - theirs)[unknown]
            print(f"| {photo} {kind} | {middle - start:.1f} | {end - middle:.1f} | {sads[0]:.2f} | "
                  f"{sads[1]:.2f} | {difference.max():.4f} | {255 * difference.mean():.2f} |", flush=True)
    print(f"total SAD: pymatting {totals[0]:.2f}, mattekit {totals[1]:.2f}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
