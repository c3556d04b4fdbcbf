"""Known-unknown-edge trimming on or off, model by model, on alphamatting-dev (both trimap sets).

    python benchmarks/trimming.py information-flow-solver closed-form shared-sampling
    python benchmarks/trimming.py knn --settings edges      # only the trimmed rows (the untrimmed are known)

Each case's trimap is trimmed once (:func:`mattekit.trimap.trim_edges`); each model then mattes the image
with the trimap as given and with the trimmed one, and both are scored over the original unknown region.
``information-flow-solver`` is information flow without its own edge trimming (what ``--trim`` adds to it
is measured here, since the registered ``information-flow`` trims its edges itself);
``information-flow-known`` is ``InformationFlowMatting(edges="known")``, whose "off" rows are that
variant (the labelled pixels made known; the registered model uses them as K-to-U hints).  One row per
case and setting goes to stdout (``row MODEL off|edges SET NAME sad … s …``), then the means; results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import numpy as np
from information_flow import DATA, _case

from mattekit.evaluate import read_alpha
from mattekit.metrics import score
from mattekit.models.base import MattingModel
from mattekit.models.information_flow import InformationFlowMatting
from mattekit.predictor import load_model
from mattekit.trimap import trim_edges


def _model(name: str) -> MattingModel:
    if name == "information-flow-solver":
        return InformationFlowMatting(edges="off")
    if name == "information-flow-known":  # its own "off" row is the known-pixels variant
        return InformationFlowMatting(edges="known")
    return load_model(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--settings", nargs="+", choices=["off", "edges"], default=["off", "edges"],
                        help="which trimaps each model mattes: as given (off), edge-trimmed, or both")
    args = parser.parse_args()
    models = {name: _model(name) for name in args.models}
    sums: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for trimap_set in ("Trimap1", "Trimap2"):
        for index in range(1, 10):
            name = f"GT{index:02d}"
            image, trimap = _case(name, trimap_set)
            begin = time.perf_counter()
            trimmed = trim_edges(image, trimap)
            print(f"trim {trimap_set} {name} {time.perf_counter() - begin:.2f} s", flush=True)
            truth = read_alpha(DATA / "gt_training_lowres" / f"{name}.png")
            for model_name, model in models.items():
                for setting, given in (("off", trimap), ("edges", trimmed)):
                    if setting not in args.settings:
                        continue
                    begin = time.perf_counter()
                    alpha = model.infer(image[None], given[None])[0]
                    seconds = time.perf_counter() - begin
                    result = score(alpha, truth, trimap)
                    values = np.array([result.sad, result.mse, result.grad, result.conn, seconds])
                    sums[(model_name, setting)].append(values)
                    print(f"row {model_name} {setting} {trimap_set} {name} sad {result.sad:.4f} "
                          f"mse {result.mse:.6f} grad {result.grad:.4f} conn {result.conn:.4f} "
                          f"s {seconds:.2f} load {os.getloadavg()[0]:.1f}", flush=True)
    print("| model | trim | mean SAD | mean MSE | mean Grad | mean Conn | s / image |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (model_name, setting), rows in sums.items():
        sad, mse, grad, conn, seconds = np.mean(rows, axis=0)
        cells = f"{sad:.2f} | {mse:.4f} | {grad:.2f} | {conn:.2f} | {seconds:.2f}"
        print(f"| {model_name} | {setting} | {cells} |")


if __name__ == "__main__":
    main()
