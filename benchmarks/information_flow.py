"""Information-flow matting: which preconditioner, and how much memory per pixel.

    python benchmarks/information_flow.py solvers GT04 Trimap1     # preconditioners on one system
    python benchmarks/information_flow.py memory GT01 Trimap1      # peak memory growth, IFM vs closed-form
    python benchmarks/information_flow.py speed                    # seconds, IFM vs closed-form, 18 cases
    python benchmarks/information_flow.py speed known              # the same for edges="known" (or "off")

``solvers`` builds the system of one alphamatting-dev case once, then solves it with conjugate gradient
under each preconditioner (pymatting's thresholded incomplete Cholesky at two discard thresholds, pyamg's
smoothed aggregation when pyamg is installed, Jacobi) to a relative residual of 1e-5, starting from the
K-to-U estimate, and compares each answer with a 1e-7 Jacobi solve.  Closed-form's whole solve on the same
case is timed first, for the ratio.  ``memory`` runs each model in a fresh process and reports the growth
of its peak resident memory (ru_maxrss) over the inference alone, per image pixel: the figure of
``MattingModel.bytes_per_pixel`` (docs/engine.md).  ``speed`` times both models case by case, one
right after the other, so that a shared machine's changing load hits both alike, and scores information
flow's mattes (SAD), so that a faster solve is checked against the same 18 figures.  Results go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from mattekit.io import read_image
from mattekit.trimap import UNKNOWN, read_trimap

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting-dev"


def _case(name: str, trimap_set: str) -> tuple[np.ndarray, np.ndarray]:
    image, _ = read_image(DATA / "input_training_lowres" / f"{name}.png")
    return image, read_trimap(DATA / "trimap_training_lowres" / trimap_set / f"{name}.png")


def solvers(name: str, trimap_set: str) -> None:
    from pymatting import estimate_alpha_cf, ichol

    from mattekit.models.information_flow import FlowParameters, build_system

    image, trimap = _case(name, trimap_set)
    print(f"{name}/{trimap_set}: load average {os.getloadavg()[0]:.1f}")
    begin = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        estimate_alpha_cf(image.astype(np.float64), trimap / 255.0)
    print(f"closed-form, whole solve: {time.perf_counter() - begin:.2f} s")
    begin = time.perf_counter()
    matrix, rhs, start = build_system(image, trimap, FlowParameters())
    print(f"information-flow system: {time.perf_counter() - begin:.2f} s, {matrix.shape[0]} unknowns, "
          f"{matrix.nnz} non-zeros")
    diagonal = matrix.diagonal()

    def jacobi() -> LinearOperator:
        return LinearOperator(matrix.shape, matvec=lambda x: x / diagonal, dtype=np.float64)

    def incomplete_cholesky(threshold: float):
        def make() -> LinearOperator:
            with contextlib.redirect_stdout(io.StringIO()):
                factor = ichol(matrix.tocsc(), discard_threshold=threshold)
            return LinearOperator(matrix.shape, matvec=factor, dtype=np.float64)
        return make

    reference, _ = cg(matrix, rhs, x0=start, rtol=1e-7, maxiter=10000, M=jacobi())
    candidates = {"ichol 1e-2": incomplete_cholesky(1e-2), "ichol 1e-3": incomplete_cholesky(1e-3)}
    with contextlib.suppress(ImportError):
        import pyamg

        candidates["pyamg SA"] = lambda: pyamg.smoothed_aggregation_solver(
            matrix, symmetry="symmetric").aspreconditioner()
    candidates["jacobi"] = jacobi
    iterations = [0]

    def count(_: np.ndarray) -> None:
        iterations[0] += 1

    for label, make in candidates.items():
        begin = time.perf_counter()
        operator = make()
        setup = time.perf_counter() - begin
        iterations[0] = 0
        solution, _ = cg(matrix, rhs, x0=start, rtol=1e-5, maxiter=10000, M=operator, callback=count)
        solve = time.perf_counter() - begin - setup
        error = np.abs(np.clip(solution, 0, 1) - np.clip(reference, 0, 1)).max()
        print(f"{label}: setup {setup:.2f} s, solve {solve:.2f} s, {iterations[0]} iterations, "
              f"max |Δα| vs 1e-7 solve {error:.1e}", flush=True)


def _peak_growth(model_name: str, name: str, trimap_set: str) -> None:
    """One model in this process: peak resident memory growth over its inference, per image pixel."""
    from mattekit.predictor import load_model

    model = load_model(model_name)
    image, trimap = _case(name, trimap_set)
    warm = image[:32, :32].copy(), trimap[:32, :32].copy()
    warm[1][8:24, 8:24] = UNKNOWN
    model.infer(warm[0][None], warm[1][None])  # imports and compiled code are not the model's memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.infer(image[None], trimap[None])
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(f"{model_name}: {growth / 2**20:.0f} MiB peak growth, {growth / trimap.size:.0f} bytes per pixel "
          f"({(trimap == UNKNOWN).mean():.1%} unknown)", flush=True)


def memory(name: str, trimap_set: str) -> None:
    print(f"{name}/{trimap_set}: load average {os.getloadavg()[0]:.1f}")
    for model_name in ("closed-form", "information-flow"):
        subprocess.run([sys.executable, __file__, "_one", model_name, name, trimap_set], check=True)


def speed(variant: str = "") -> None:
    """Closed-form and the registered information flow (``speed known``: its ``edges="known"`` variant;
    ``speed off``: without edge trimming), case by case one right after the other, with information
    flow's SAD (the check that a faster solve still gives the same mattes)."""
    from mattekit.evaluate import read_alpha
    from mattekit.metrics import score
    from mattekit.models.information_flow import InformationFlowMatting
    from mattekit.predictor import load_model

    models = {"closed-form": load_model("closed-form"),
              "information-flow": InformationFlowMatting(edges=variant) if variant else load_model(
                  "information-flow")}
    warm_image, warm_trimap = _case("GT01", "Trimap1")
    for model in models.values():  # imports and compiled code are not part of the timing
        model.infer(warm_image[None, :64, :64], warm_trimap[None, :64, :64])
    totals = dict.fromkeys(models, 0.0)
    ratios, sads = [], []
    print(f"information-flow edges={variant or 'default'}; uptime at the start: {os.getloadavg()}")
    print("| case | closed-form s | information-flow s | ratio | SAD | load |")
    print("|---|---:|---:|---:|---:|---:|")
    for trimap_set in ("Trimap1", "Trimap2"):
        for index in range(1, 10):
            image, trimap = _case(f"GT{index:02d}", trimap_set)
            seconds = {}
            for name, model in models.items():
                begin = time.perf_counter()
                alpha = model.infer(image[None], trimap[None])[0]
                seconds[name] = time.perf_counter() - begin
                totals[name] += seconds[name]
            truth = read_alpha(DATA / "gt_training_lowres" / f"GT{index:02d}.png")
            sads.append(score(alpha, truth, trimap).sad)
            ratios.append(seconds["information-flow"] / seconds["closed-form"])
            cells = (seconds["closed-form"], seconds["information-flow"], ratios[-1])
            print(f"| {trimap_set}/GT{index:02d} | " + " | ".join(f"{value:.2f}" for value in cells)
                  + f" | {sads[-1]:.4f} | {os.getloadavg()[0]:.1f} |", flush=True)
    cf, flow = totals["closed-form"], totals["information-flow"]
    print(f"| all 18 | {cf:.1f} | {flow:.1f} | {flow / cf:.2f} (median {np.median(ratios):.2f}, max "
          f"{max(ratios):.2f}, {sum(r > 3 for r in ratios)} over 3) | mean {np.mean(sads):.4f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["solvers", "memory", "speed", "_one"])
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    if args.what == "_one":
        _peak_growth(*args.args)
    else:
        {"solvers": solvers, "memory": memory, "speed": speed}[args.what](*args.args)


if __name__ == "__main__":
    main()
