"""High-resolution benchmark: whole image vs tiles vs downscale-then-upscale, seconds, peak memory, SAD.

Real photos (alphamatting.com training images, ``shared/data/alphamatting-dev``) are upscaled to square
sizes (2048, 4096, 6000) with either their own ``Trimap1`` (upscaled, nearest) or a trimap cut from the
ground-truth alpha with a chosen unknown fraction (a band grown around the transition until it covers that
share of the image).  Each case runs in its own process, so that its peak resident memory (``ru_maxrss``)
and, on a GPU, peak allocated memory are its own; it reads the PNGs, mattes, and writes the alpha PNG, so
the seconds are end to end.  SAD (sum of absolute differences over the unknown region, in thousands as
matting papers print it) compares each result with the whole-image result of the same model, not with the
ground truth: the GCA weights are the synthetic ones of ``shared/reference/gca/fill.py`` (no trained
weights may be shipped or downloaded here), so only consistency with the whole-image pass is meaningful.

    python benchmarks/highres.py run --sizes 2048 6000 --trimaps trimap1 0.1 --out results.json
    python benchmarks/highres.py run --models shared-sampling --sizes 3x --trimaps trimap1 trimap2 \
        --photos GT01 GT04 --out results.json              # dev photos upscaled 3x, both trimaps
    python benchmarks/highres.py sweep --out sweep.json     # issue 9's sweep, most valuable cases first
    python benchmarks/highres.py sweep-table sweep.json      # whole / auto / tiled side by side
    python benchmarks/highres.py context --model closed-form --look out/   # tiles vs whole, half size
    python benchmarks/highres.py memory --scales 0.25 1    # each solver's peak memory per pixel
    python benchmarks/highres.py plan --size 6000           # tile-size sweep: pixels to run, no inference
    python benchmarks/highres.py table results.json          # markdown rows for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mattekit.engine import Plan, TileOptions, plan
from mattekit.engine.tiling import grid
from mattekit.io import read_gray, write_png
from mattekit.models import MattingModel, create_model
from mattekit.predictor import MattingInput, finish_alpha, load_input, run_model
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, read_trimap

SHARED = Path(os.environ.get("MATTEKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEV = SHARED / "data" / "alphamatting-dev"
CACHE = Path(os.environ.get("MATTEKIT_BENCH_CACHE", "/tmp/mattekit-highres"))
#: Downscale-then-upscale runs the whole image at this long side (HDMatt's Fig. 6 setting).
DOWNSCALE_SIDE = 1024
#: The weight-free solvers (no weights needed, so every one of them can be measured here).
CLASSICAL = ("closed-form", "knn", "large-kernel", "learning-based", "random-walk", "shared-sampling")


def target_size(photo: str, size: str | int) -> tuple[int, int]:
    """(width, height) for ``size``: ``6000`` is a 6000 x 6000 square, ``3x`` the photo scaled by 3."""
    if isinstance(size, str) and size.endswith("x"):
        height, width = read_gray(DEV / "gt_training_lowres" / f"{photo}.png").shape
        return round(width * float(size[:-1])), round(height * float(size[:-1]))
    return int(size), int(size)


def make_trimap(photo: str, size: str | int, kind: str) -> np.ndarray:
    """A trimap for ``photo`` at ``size``: ``trimap1`` / ``trimap2`` upscaled, or a band of unknown pixels
    around the ground-truth transition covering the fraction ``kind`` (e.g. ``0.1``) of the image."""
    dsize = target_size(photo, size)
    if kind in ("trimap1", "trimap2"):
        trimap = read_trimap(DEV / "trimap_training_lowres" / f"Trimap{kind[-1]}" / f"{photo}.png")
        return cv2.resize(trimap, dsize, interpolation=cv2.INTER_NEAREST)
    alpha = ground_truth(photo, size)
    transition = ((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8)
    distance = cv2.distanceTransform(1 - transition, cv2.DIST_L2, 5)  # to the nearest transition pixel
    band = distance <= np.quantile(distance, float(kind))
    trimap = np.where(alpha >= 0.5, FOREGROUND, BACKGROUND).astype(np.uint8)
    trimap[band] = UNKNOWN
    return trimap


def ground_truth(photo: str, size: str | int) -> np.ndarray:
    """The photo's ground-truth alpha upscaled like the photo (cubic, clipped to [0, 1])."""
    alpha = read_gray(DEV / "gt_training_lowres" / f"{photo}.png")
    return np.clip(cv2.resize(alpha, target_size(photo, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def prepare(photo: str, size: str | int, kind: str) -> tuple[Path, Path]:
    """Upscaled photo and trimap PNGs in the cache (made once)."""
    image_path = CACHE / f"{photo}_{size}.png"
    trimap_path = CACHE / f"{photo}_{size}_{kind}_trimap.png"
    if not image_path.exists():
        image = load_input(DEV / "input_training_lowres" / f"{photo}.png").image
        write_png(image_path, cv2.resize(image, target_size(photo, size), interpolation=cv2.INTER_CUBIC))
    if not trimap_path.exists():
        write_png(trimap_path, make_trimap(photo, size, kind) / 255.0)
    return image_path, trimap_path


def build_model(name: str, device: str) -> MattingModel:
    """``gca`` / ``hop`` with the deterministic synthetic weights of the shared reference, or a weight-free
    solver."""
    if name not in ("gca", "hop"):
        return create_model(name)
    spec = importlib.util.spec_from_file_location("reference_fill", SHARED / "reference" / "gca" / "fill.py")
    assert spec is not None and spec.loader is not None
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    weights = CACHE / f"{name}_fill.pt"
    if not weights.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        import torch

        torch.save(fill.fill(str(SHARED / "reference" / name / f"{name}_keys.json")), weights)
    return create_model(name, weights=weights, device=device)


def downscaled(model: MattingModel, data: MattingInput) -> np.ndarray:
    """Matte at ``DOWNSCALE_SIDE`` px long side in one pass, upscale bilinearly, fix the known regions."""
    height, width = data.image.shape[:2]
    scale = DOWNSCALE_SIDE / max(height, width)
    small = (round(width * scale), round(height * scale))
    assert data.trimap is not None
    small_input = MattingInput(
        cv2.resize(data.image, small, interpolation=cv2.INTER_AREA),
        cv2.resize(data.trimap, small, interpolation=cv2.INTER_NEAREST),
    )
    alpha = run_model(model, small_input, TileOptions(tile="off"))
    return finish_alpha(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR), data)


def run_case(case: dict) -> dict:
    """One measurement, in this process: read, matte, write; seconds, peak memory, plan."""
    if case.get("threads"):
        import torch

        torch.set_num_threads(case["threads"])
    model = build_model(case["model"], case["device"])
    cuda = str(model.device).startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    image_path, trimap_path = prepare(case["photo"], case["size"], case["trimap"])
    if case["strategy"] == "pass512":
        return {**case, **one_pass(model, image_path, trimap_path)}
    tiles = {"whole": "off", "tiled": "on", "downscale": "off", "auto": "auto"}[case["strategy"]]
    options = TileOptions(tile=tiles, tile_size=case.get("tile_size"), overlap=case.get("overlap"))
    start = time.perf_counter()
    data = load_input(image_path, trimap_path)
    how = plan(model, *data.image.shape[:2], data.trimap, options)
    alpha = downscaled(model, data) if case["strategy"] == "downscale" else run_model(model, data, options)
    out = CACHE / "alpha" / f"{_case_name(case)}.png"
    write_png(out, alpha)
    seconds = time.perf_counter() - start
    np.save(out.with_suffix(".npy"), alpha)
    result = {
        **case,
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "unknown": round(float((data.trimap == UNKNOWN).mean()), 4),
    }
    result["decision"] = "whole" if how.grid is None or case["strategy"] == "downscale" else "tiled"
    if how.grid is not None and case["strategy"] in ("tiled", "auto"):
        result |= {
            "tile_size": how.tile_size, "overlap": how.overlap, "batch": how.batch,
            "tiles_run": len(how.grid.run), "tiles_skipped": len(how.grid.skipped),
            "model_megapixels": round(how.model_pixels / 1e6, 1), "short_of_context": len(how.grid.short),
        }
    if cuda:
        result["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return result


def one_pass(model: MattingModel, image_path: Path, trimap_path: Path) -> dict:
    """Seconds of one ``infer`` call on a 512 x 512 input cut around the first unknown pixels, after a
    warm-up call: the unit of the engine's overhead ratio."""
    data = load_input(image_path, trimap_path)
    assert data.trimap is not None
    rows, cols = np.nonzero(data.trimap == UNKNOWN)
    top = min(max(rows[0] - 256, 0), data.trimap.shape[0] - 512)
    left = min(max(cols[0] - 256, 0), data.trimap.shape[1] - 512)
    image = data.image[None, top : top + 512, left : left + 512]
    trimap = data.trimap[None, top : top + 512, left : left + 512]
    model.infer(image, trimap)
    start = time.perf_counter()
    model.infer(image, trimap)
    return {"seconds": round(time.perf_counter() - start, 3)}


def _case_name(case: dict) -> str:
    name = "_".join(str(case[key]) for key in ("model", "device", "photo", "size", "trimap", "strategy"))
    fixed = [f"{key}{case[key]}" for key in ("tile_size", "overlap", "threads") if case.get(key)]
    return "_".join([name, *fixed])


def scores(case: dict, tile_size: int | None = None) -> dict:
    """SAD (thousands, over the unknown region) against the ground truth and against the whole-image
    result of the same case, and the worst tile's mean |result - whole| over the image's (tiled results,
    on the grid of the plan's ``tile_size``)."""
    out = CACHE / "alpha" / f"{_case_name(case)}.npy"
    if case["strategy"] == "pass512" or not out.exists():
        return {}
    _, trimap_path = prepare(case["photo"], case["size"], case["trimap"])
    unknown = read_trimap(trimap_path) == UNKNOWN
    alpha = np.load(out)
    truth = ground_truth(case["photo"], case["size"])
    result = {"sad_vs_truth": round(float(np.abs(alpha - truth)[unknown].sum() / 1000), 3)}
    reference = case | {"strategy": "whole", "tile_size": None, "overlap": None}
    whole = CACHE / "alpha" / f"{_case_name(reference)}.npy"
    if case["strategy"] != "whole" and whole.exists():
        difference = np.abs(alpha - np.load(whole))
        result["sad_vs_whole"] = round(float(difference[unknown].sum() / 1000), 3)
        if case["strategy"] in ("tiled", "auto"):
            tile = tile_size or case.get("tile_size") or 512
            result["worst_tile"] = round(worst_tile(difference, unknown, tile), 2)
    return result


def worst_tile(difference: np.ndarray, unknown: np.ndarray, tile: int, overlap: int | None = None) -> float:
    """The largest ratio of a tile core's mean difference over its unknown pixels to the image's mean
    (cores with at least 1 % unknown pixels and a mean above half an 8-bit level)."""
    mean = difference[unknown].mean()
    marks = np.where(unknown, UNKNOWN, BACKGROUND).astype(np.uint8)
    cores = grid(*unknown.shape, tile, min(32, tile // 4) if overlap is None else overlap, marks)
    worst = 0.0
    for t in cores.run:
        part = unknown[t.top : t.bottom, t.left : t.right]
        tile_mean = difference[t.top : t.bottom, t.left : t.right][part].mean()
        if part.mean() >= 0.01 and tile_mean > 0.5 / 255:
            worst = max(worst, float(tile_mean / mean))
    return worst


def command_run(args: argparse.Namespace) -> None:
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    for model in args.models:
        for device in args.devices:
            for size in args.sizes:
                for kind in args.trimaps:
                    for photo in args.photos:
                        for strategy in args.strategies:
                            case = {"model": model, "device": device, "photo": photo, "size": size,
                                    "trimap": kind, "strategy": strategy,
                                    "tile_size": args.tile_size, "overlap": args.overlap,
                                    "threads": args.threads}
                            results.append(_measure(case, args.timeout))
                            args.out.write_text(json.dumps(results, indent=1))


def _measure(case: dict, timeout: float) -> dict:
    """Run a case in a fresh process; failures (out of memory, timeout, no GPU) become a reason."""
    load = round(os.getloadavg()[0], 2)
    command = [sys.executable, __file__, "case", json.dumps(case)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "failed": f"over {timeout:.0f} s", "load_before": load}
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if done.returncode < 0:
            reason = f"killed by signal {-done.returncode} (out of memory?)"
        return {**case, "failed": reason, "load_before": load}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result |= {"load_before": load, "load_after": round(os.getloadavg()[0], 2)}
    result |= scores(case, result.get("tile_size"))
    print(json.dumps(result), flush=True)
    return result


#: Issue 9's sweep: the default model first, on every dev photo with both trimaps.
DEFAULT = "information-flow"
SWEEP_MODELS = (DEFAULT, "shared-sampling", "closed-form", "knn", "learning-based", "random-walk",
                "large-kernel", "gca", "hop")
PHOTOS = tuple(f"GT0{i}" for i in range(1, 10))
#: Photos every other model runs on first (2 photos x 2 trimaps): the trolls' wide hair (GT04, the photo
#: that came out white) and a small object with a thin unknown band (GT07).
FIRST_PHOTOS = ("GT04", "GT07")


def sweep_cases(models: list[str], photos: list[str], size: str,
                trimaps: tuple[str, ...] = ("trimap1", "trimap2")) -> list[dict]:
    """Issue 9's cases in order of value: the default model on every photo and trimap, then each other
    model on ``FIRST_PHOTOS`` with each of ``trimaps``, then each other model on the remaining photos."""
    def cases(model: str, chosen: list[str]) -> list[dict]:
        return [{"model": model, "photo": photo, "size": size, "trimap": kind}
                for photo in chosen for kind in trimaps]

    first = [p for p in FIRST_PHOTOS if p in photos]
    others = [m for m in models if m != DEFAULT]
    order = cases(DEFAULT, photos) if DEFAULT in models else []
    order += [c for m in others for c in cases(m, first)]
    order += [c for m in others for c in cases(m, [p for p in photos if p not in first])]
    return order


def command_sweep(args: argparse.Namespace) -> None:
    """Whole, auto and forced tiles of each case side by side, each in its own process, appended to --out
    (cases already there are skipped, so a sweep resumes).  Auto is run only when its plan is neither: when
    it plans one pass it is the whole run, when it plans the forced tiles' windows it is the tiled run
    (the row says so, with the estimate)."""
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {_sweep_key(r) for r in results}
    deadline = time.time() + args.minutes * 60 if args.minutes else None
    todo = sweep_cases(args.models, args.photos, args.size, tuple(args.trimaps))
    todo += [{"model": DEFAULT, "photo": args.big_photo, "size": "6000", "trimap": "trimap1",
              "strategies": ["tiled"]}] if args.big else []
    for base in todo:
        for strategy in base.pop("strategies", args.strategies):
            case = {**base, "device": "cpu", "strategy": strategy, "tile_size": None, "overlap": None,
                    "threads": None}
            if _sweep_key(case) in done:
                continue
            if deadline is not None and time.time() > deadline:
                print(f"stopped at the {args.minutes} min limit before {_sweep_key(case)}", flush=True)
                return
            same_as = _auto_same_as(case) if strategy == "auto" else None
            if same_as is not None:
                run, how = same_as
                result = {**case, "decision": run, "planned_gb": round(how.estimated_peak / 1e9, 2),
                          "same_as": run, "load_before": round(os.getloadavg()[0], 2)}
                print(json.dumps(result), flush=True)
            else:
                result = _measure(case, args.timeout)
            results.append(result)
            done.add(_sweep_key(case))
            args.out.write_text(json.dumps(results, indent=1))


def _sweep_key(case: dict) -> str:
    return "/".join(str(case.get(k)) for k in ("model", "photo", "size", "trimap", "strategy"))


def _auto_same_as(case: dict) -> tuple[str, Plan] | None:
    """("whole", plan) when ``--tile auto`` plans one pass for ``case`` in this process (the budget: half
    the RAM free now), ("tiled", plan) when it plans the windows that ``--tile on`` plans, else None."""
    image_path, trimap_path = prepare(case["photo"], case["size"], case["trimap"])
    model = build_model(case["model"], "cpu")
    data = load_input(image_path, trimap_path)
    height, width = data.image.shape[:2]
    auto, forced = (plan(model, height, width, data.trimap, TileOptions(tile=t)) for t in ("auto", "on"))
    if auto.grid is None:
        return "whole", auto
    return ("tiled", auto) if _windows(auto) == _windows(forced) else None


def _windows(how: Plan) -> tuple:
    """What a tiled plan runs: its windows, those short of context, the batch, the largest window."""
    assert how.grid is not None
    return [t.window for t in how.grid.run], [t.window for t in how.grid.short], how.batch, how.max_side


def command_sweep_table(args: argparse.Namespace) -> None:
    """One markdown row per case: whole / auto / tiled side by side (seconds, peak RSS, SAD against the
    ground truth), tiled SAD over whole SAD, SAD of tiled against whole, worst tile, load."""
    rows: dict[tuple, dict[str, dict]] = {}
    for r in json.loads(args.results.read_text()):
        rows.setdefault((r["model"], r["photo"], r["size"], r["trimap"]), {})[r["strategy"]] = r
    print("| model | photo | size | trimap (unknown) | auto runs | s whole / auto / tiled | "
          "peak RSS GB whole / auto / tiled | SAD vs truth whole / auto / tiled | tiled ÷ whole | "
          "tiled vs whole | worst tile | tiles run / short | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |")
    for (model, photo, size, kind), by in rows.items():
        whole, auto, tiled = (by.get(k, {}) for k in ("whole", "auto", "tiled"))
        if auto.get("same_as") in ("whole", "tiled"):
            auto = {**by.get(auto["same_as"], {}), "decision": auto["same_as"], "same_as": auto["same_as"]}

        def cell(key: str, runs: tuple[dict, ...] = (whole, auto, tiled)) -> str:
            missing = {r_id: r.get("failed", "—") if key == "seconds" else "—" for r_id, r in enumerate(runs)}
            return " / ".join(str(r.get(key, missing[i])) for i, r in enumerate(runs))

        unknown = next((r["unknown"] for r in (whole, auto, tiled) if "unknown" in r), None)
        ratio = ("—" if "sad_vs_truth" not in tiled or not whole.get("sad_vs_truth")
                 else f"{tiled['sad_vs_truth'] / whole['sad_vs_truth']:.3f}")
        decision = auto.get("decision", "—") + (f" (= {auto['same_as']} run)" if auto.get("same_as") else "")
        loads = [f"{r['load_before']}" for r in (whole, auto, tiled) if "load_before" in r]
        tiles = f"{tiled['tiles_run']} / {tiled['short_of_context']}" if "tiles_run" in tiled else "—"
        row = [model, photo, size, f"{kind} ({unknown:.0%})" if unknown is not None else kind, decision,
               cell("seconds"), cell("peak_rss_gb"), cell("sad_vs_truth"), ratio,
               tiled.get("sad_vs_whole", "—"), tiled.get("worst_tile", "—"), tiles, ", ".join(loads)]
        print("| " + " | ".join(str(c) for c in row) + " |")


def command_context(args: argparse.Namespace) -> None:
    """Tiled against whole on a dev photo at ``--scale`` of its size: SAD against the ground truth, SAD
    against the whole matte, the worst tile, model megapixels; with ``--look DIR``, PNGs of whole, tiled
    and 4 x |tiled - whole| with the worst tile boxed (for the eye)."""
    dev = load_input(DEV / "input_training_lowres" / f"{args.photo}.png",
                     DEV / "trimap_training_lowres" / args.trimap / f"{args.photo}.png")
    assert dev.trimap is not None
    height, width = dev.trimap.shape
    size = (int(width * args.scale), int(height * args.scale))  # as tests/test_highres.py's half_size
    data = MattingInput(cv2.resize(dev.image, size, interpolation=cv2.INTER_AREA),
                        cv2.resize(dev.trimap, size, interpolation=cv2.INTER_NEAREST))
    truth = cv2.resize(read_gray(DEV / "gt_training_lowres" / f"{args.photo}.png"), size,
                       interpolation=cv2.INTER_AREA)
    unknown = data.trimap == UNKNOWN
    model = build_model(args.model, "cpu")
    whole = run_model(model, data, TileOptions(tile="off"))
    whole_sad = float(np.abs(whole - truth)[unknown].sum() / 1000)
    print(f"load {os.getloadavg()[0]:.2f}; {args.model} {args.photo} {args.trimap} x{args.scale} {size}: "
          f"whole SAD {whole_sad:.3f}", flush=True)
    options = TileOptions(tile="on", tile_size=args.tile_size, overlap=args.overlap)
    start = time.perf_counter()
    how = plan(model, *unknown.shape, data.trimap, options)
    tiled = run_model(model, data, options)
    seconds = time.perf_counter() - start
    difference = np.abs(tiled - whole)
    sad = float(np.abs(tiled - truth)[unknown].sum() / 1000)
    assert how.grid is not None
    print(json.dumps({
        "sad_vs_truth": round(sad, 3), "ratio": round(sad / whole_sad, 3),
        "sad_vs_whole": round(float(difference[unknown].sum() / 1000), 3),
        "mean_difference_255": round(float(difference[unknown].mean() * 255), 2),
        "worst_tile": round(worst_tile(difference, unknown, args.tile_size, args.overlap), 2),
        "tiles": len(how.grid.run), "short": len(how.grid.short),
        "model_megapixels": round(how.model_pixels / 1e6, 2), "seconds": round(seconds, 1),
    }), flush=True)
    if args.look:
        _look(args.look / f"{args.model}_{args.photo}_{args.trimap}", whole, tiled, unknown, args.tile_size,
              args.overlap)


def _look(
    stem: Path, whole: np.ndarray, tiled: np.ndarray, unknown: np.ndarray, tile: int, overlap: int
) -> None:
    """whole | tiled | 4 x |tiled - whole| side by side, the worst tile core boxed in red."""
    difference = np.abs(tiled - whole)
    mean = difference[unknown].mean()
    marks = np.where(unknown, UNKNOWN, BACKGROUND).astype(np.uint8)
    tiles = grid(*unknown.shape, tile, overlap, marks).run
    cores = [np.s_[t.top : t.bottom, t.left : t.right] for t in tiles]
    worst = tiles[int(np.argmax([difference[c][unknown[c]].mean() / mean for c in cores]))]
    panels = [np.repeat((np.clip(a, 0, 1)[..., None] * 255).astype(np.uint8), 3, axis=2)
              for a in (whole, tiled, np.clip(4 * difference, 0, 1))]
    top, bottom, left, right = worst.top, worst.bottom, worst.left, worst.right
    cv2.rectangle(panels[2], (left, top), (right - 1, bottom - 1), (255, 0, 0), 1)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_png(stem.parent / f"{stem.name}.png", np.hstack(panels) / 255.0)


def command_plan(args: argparse.Namespace) -> None:
    """Pixels the model would run for each tile size and overlap (no inference), as a share of the image."""
    model = build_model(args.model, "cpu")
    for kind in args.trimaps:
        for photo in args.photos:
            trimap = make_trimap(photo, args.size, kind)
            for tile in args.tile_sizes:
                for overlap in args.overlaps:
                    how = plan(model, args.size, args.size, trimap,
                               TileOptions(tile="on", tile_size=tile, overlap=overlap))
                    assert how.grid is not None
                    pixels = how.model_pixels
                    unknown = round(float((trimap == UNKNOWN).mean()), 3)
                    print(json.dumps({
                        "photo": photo, "trimap": kind, "unknown": unknown,
                        "tile": tile, "overlap": overlap, "run": len(how.grid.run),
                        "skipped": len(how.grid.skipped), "model_megapixels": round(pixels / 1e6, 1),
                        "share_of_image": round(pixels / args.size**2, 3),
                    }), flush=True)


def memory_case(case: dict) -> list[dict]:
    """Peak resident-memory growth of one ``infer`` call of each of ``case["models"]`` on a photo of the
    dev set scaled by ``case["scale"]``, in this process (Linux).

    A first call on a 64 px crop compiles pymatting's numba kernels, so that their memory is not counted.
    Before each measured call freed memory goes back to the system (``malloc_trim``) and the kernel's
    peak-RSS mark is reset (``/proc/self/clear_refs``); the growth
    is that peak afterwards minus the resident memory just before the call.
    """
    data = load_input(DEV / "input_training_lowres" / f"{case['photo']}.png",
                      DEV / "trimap_training_lowres" / case["trimap"] / f"{case['photo']}.png")
    assert data.trimap is not None
    height, width = data.trimap.shape
    size = (round(width * case["scale"]), round(height * case["scale"]))
    image = cv2.resize(data.image, size, interpolation=cv2.INTER_CUBIC)
    trimap = cv2.resize(data.trimap, size, interpolation=cv2.INTER_NEAREST)
    unknown = float((trimap == UNKNOWN).mean())
    rows, cols = np.nonzero(trimap == UNKNOWN)
    crop = slice(max(rows[0] - 32, 0), rows[0] + 32), slice(max(cols[0] - 32, 0), cols[0] + 32)
    results = []
    for name in case["models"]:
        model = build_model(name, "cpu")
        model.infer(image[crop][None], trimap[crop][None])
        # Hand memory freed by the models before back to the system, or this call would reuse it unseen.
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_bytes("VmRSS")
        start = time.perf_counter()
        model.infer(image[None], trimap[None])
        seconds = time.perf_counter() - start
        growth = _status_bytes("VmHWM") - before
        estimate = model.estimate_memory(size[1], size[0], 1, unknown=unknown)
        results.append({
            "model": name, "photo": case["photo"], "trimap": case["trimap"], "scale": case["scale"],
            "pixels": size[0] * size[1], "unknown": round(unknown, 3), "seconds": round(seconds, 1),
            "growth_mb": round(growth / 1e6, 1), "bytes_per_pixel": round(growth / (size[0] * size[1])),
            "estimate_mb": round(estimate / 1e6, 1), "estimate_ratio": round(estimate / growth, 2),
            **_window_solver_memory(model, image, trimap, unknown),
        })
    return results


def _window_solver_memory(model: MattingModel, image: np.ndarray, trimap: np.ndarray, unknown: float) -> dict:
    """Peak growth of building the model's window solver (tiled runs) and what it keeps, per pixel, and
    the planner's estimate over that peak; nothing for models without one."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_bytes("VmRSS")
    solver = model.window_solver(image, trimap)
    if solver is None:
        return {}
    peak, kept = _status_bytes("VmHWM") - before, _status_bytes("VmRSS") - before
    pixels = trimap.size
    estimate = model.window_solver_bytes_per_pixel(unknown) * pixels
    return {"solver_bytes_per_pixel": round(peak / pixels),
            "solver_kept_bytes_per_pixel": round(kept / pixels),
            "solver_estimate_ratio": round(estimate / peak, 2)}


def _status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (``VmRSS`` now, ``VmHWM`` its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def command_memory(args: argparse.Namespace) -> None:
    """Each solver's peak memory growth per pixel at several sizes and unknown fractions."""
    print(f"load {os.getloadavg()[0]:.2f}", flush=True)
    for scale in args.scales:
        for photo_trimap in args.cases:
            photo, trimap = photo_trimap.split("/")
            case = {"models": args.models, "photo": photo, "trimap": trimap, "scale": scale}
            command = [sys.executable, __file__, "memory-case", json.dumps(case)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            for row in json.loads(done.stdout.strip().splitlines()[-1]):
                print(json.dumps(row), flush=True)
    print(f"load {os.getloadavg()[0]:.2f}", flush=True)


def command_table(args: argparse.Namespace) -> None:
    """Markdown rows for docs/benchmarks.md."""
    print("| model | photo | size | trimap (unknown) | strategy | runs | tiles run / skipped / short | s | "
          "peak RSS GB | SAD vs truth | SAD vs whole | worst tile | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in json.loads(args.results.read_text()):
        tiles = (f"{r['tiles_run']} / {r['tiles_skipped']} / {r['short_of_context']}"
                 if "tiles_run" in r else "")
        if "failed" in r:
            cells = ["", "", "", "", f"failed: {r['failed']}", "", "", ""]
        else:
            cells = [r.get("decision", ""), tiles, r["seconds"], r.get("peak_rss_gb", ""),
                     r.get("sad_vs_truth", ""), r.get("sad_vs_whole", ""), r.get("worst_tile", ""),
                     f"{r['load_before']}-{r['load_after']}"]
        unknown = f" ({r['unknown']:.0%})" if "unknown" in r else ""
        row = [r["model"], r["photo"], r["size"], f"{r['trimap']}{unknown}", r["strategy"], *cells]
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure cases, appending to --out")
    run.add_argument("--models", nargs="+", default=["gca"])
    run.add_argument("--devices", nargs="+", default=["cpu"])
    run.add_argument("--sizes", nargs="+", default=["2048", "4096", "6000"],
                     help="6000 = a 6000 x 6000 square, 3x = the photo scaled by 3")
    run.add_argument("--trimaps", nargs="+", default=["trimap1"])
    run.add_argument("--photos", nargs="+", default=["GT01"])
    run.add_argument("--strategies", nargs="+", default=["whole", "tiled", "auto"],
                     help="auto, whole, tiled, downscale, pass512 (one 512 x 512 call: overhead ratio)")
    run.add_argument("--tile-size", type=int)
    run.add_argument("--overlap", type=int)
    run.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    run.add_argument("--timeout", type=float, default=1800)
    run.add_argument("--out", type=Path, default=Path("highres-results.json"))
    sweep_parser = commands.add_parser("sweep", help="issue 9's sweep: whole / auto / tiled per case")
    sweep_parser.add_argument("--models", nargs="+", default=list(SWEEP_MODELS))
    sweep_parser.add_argument("--photos", nargs="*", default=list(PHOTOS), help="none: only --big")
    sweep_parser.add_argument("--size", default="3x")
    sweep_parser.add_argument("--trimaps", nargs="+", default=["trimap1", "trimap2"])
    sweep_parser.add_argument("--strategies", nargs="+", default=["whole", "tiled", "auto"])
    sweep_parser.add_argument("--big", action="store_true",
                              help="also the default model at 6000 x 6000, forced tiles")
    sweep_parser.add_argument("--big-photo", default="GT01")
    sweep_parser.add_argument("--minutes", type=float, help="start no case after this many minutes")
    sweep_parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    sweep_parser.add_argument("--out", type=Path, default=Path("sweep-results.json"))
    sweep_table = commands.add_parser("sweep-table", help="markdown rows from a sweep's results")
    sweep_table.add_argument("results", type=Path)
    context = commands.add_parser("context", help="tiled vs whole on a dev photo at a scale")
    context.add_argument("--model", default="closed-form")
    context.add_argument("--photo", default="GT04")
    context.add_argument("--trimap", default="Trimap1")
    context.add_argument("--scale", type=float, default=0.5)
    context.add_argument("--tile-size", type=int, default=96)
    context.add_argument("--overlap", type=int, default=16)
    context.add_argument("--look", type=Path, help="write PNG panels into this folder")
    case = commands.add_parser("case", help="(internal) one case, as JSON")
    case.add_argument("json")
    sweep = commands.add_parser("plan", help="tile-size sweep of the pixels to run, no inference")
    sweep.add_argument("--model", default="gca")
    sweep.add_argument("--size", type=int, default=6000)
    sweep.add_argument("--trimaps", nargs="+", default=["trimap1", "0.05", "0.1", "0.2"])
    sweep.add_argument("--photos", nargs="+", default=["GT01", "GT06", "GT07"])
    sweep.add_argument("--tile-sizes", nargs="+", type=int, default=[192, 256, 320, 448, 512, 704, 960])
    sweep.add_argument("--overlaps", nargs="+", type=int, default=[32, 64])
    memory = commands.add_parser("memory", help="peak memory growth per pixel of each solver")
    memory.add_argument("--models", nargs="+", default=list(CLASSICAL))
    memory.add_argument("--scales", nargs="+", type=float, default=[1.0, 2.0])
    memory.add_argument("--cases", nargs="+", default=["GT01/Trimap1", "GT04/Trimap2"])
    memory_case_parser = commands.add_parser("memory-case", help="(internal) one memory case, as JSON")
    memory_case_parser.add_argument("json")
    table = commands.add_parser("table", help="markdown rows from a results file")
    table.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "case":
        print(json.dumps(run_case(json.loads(args.json))))
    elif args.command == "memory-case":
        print(json.dumps(memory_case(json.loads(args.json))))
    else:
        handlers = {"run": command_run, "plan": command_plan, "table": command_table,
                    "memory": command_memory, "sweep": command_sweep, "sweep-table": command_sweep_table,
                    "context": command_context}
        handlers[args.command](args)


if __name__ == "__main__":
    main()
