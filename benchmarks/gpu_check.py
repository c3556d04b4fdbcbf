"""GPU check: GCA / HOP parity with the CPU, 6000 px end to end, and where the engine's time goes.

Run by ``benchmarks/gpu_check.sh`` on a machine with a CUDA GPU (it prints one JSON line per check and
writes them all to ``--out``).  Weights are the deterministic synthetic ones of
``shared/reference/gca/fill.py`` (no trained weights here), so parity compares the same network on two
devices and the 6000 px run measures speed and memory, not quality.

1. **Parity**: the shared reference image through GCA and HOP on the CPU (float32) and on the GPU
   (float32 with TF32 off, and ``half=True``): max and mean |GPU - CPU| over the unknown region.
2. **6000 px end to end**: ``mattekit.predict`` from PNG files to an alpha PNG (GT01 upscaled to
   6000 x 6000, Trimap1 upscaled, ~10 % unknown), auto tiling, float32 and half: seconds and peak GPU
   memory (``torch.cuda.max_memory_allocated``).
3. **Phases** of that run: decode, plan, host-side input preparation, host to device, network, device to
   host, blend (the rest of the tiled run), encode; the network phase's achieved FLOP/s against the GPU's
   rated throughput (``--rated-tflops``, else a table of known GPUs), FLOPs counted by
   ``torch.utils.flop_counter`` on one 576 px tile.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from highres import CACHE, SHARED, prepare  # benchmarks/ is on sys.path when run as a script
from torch.utils.flop_counter import FlopCounterMode

from mattekit.engine import TileOptions, plan, run_tiled, run_whole
from mattekit.io import write_png
from mattekit.models import create_model
from mattekit.models.checkpoint import load_into
from mattekit.models.network import NetworkModel, normalize_images, one_hot_trimaps
from mattekit.predictor import finish_alpha, load_input, run_model
from mattekit.trimap import UNKNOWN

#: Dense (no sparsity) rated TFLOP/s by GPU name fragment: (float32 without tensor cores, float16 tensor).
RATED_TFLOPS = {"H200": (67.0, 989.0), "H100": (67.0, 989.0), "A100": (19.5, 312.0), "L4": (30.3, 121.0)}


def synthetic(arch: str, device: str, half: bool = False) -> NetworkModel:
    """``arch`` with the shared reference's synthetic weights on ``device``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference_fill", SHARED / "reference" / "gca" / "fill.py")
    assert spec is not None and spec.loader is not None
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    model = create_model(arch, weights=None, device="cpu")
    load_into(model.net, fill.fill(str(SHARED / "reference" / arch / f"{arch}_keys.json")))
    assert isinstance(model, NetworkModel)
    return NetworkModel(model.net, model.requirements, torch.device(device), half, model.attention_stride)


def parity() -> list[dict]:
    rows = []
    for arch in ("gca", "hop"):
        folder = SHARED / "reference" / arch
        data = load_input(folder / f"{arch}_image.png", folder / f"{arch}_trimap.png")
        assert data.trimap is not None
        unknown = data.trimap == UNKNOWN
        cpu = run_model(synthetic(arch, "cpu"), data, TileOptions(tile="off"))
        for half in (False, True):
            gpu = run_model(synthetic(arch, "cuda", half), data, TileOptions(tile="off"))
            difference = np.abs(gpu - cpu)[unknown]
            rows.append({"check": "parity", "arch": arch, "half": half,
                         "max_abs": float(difference.max()), "mean_abs": float(difference.mean())})
    return rows


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a phase's seconds are its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timed(NetworkModel):
    """A NetworkModel whose ``infer`` records the seconds of each of its phases."""

    def reset(self) -> None:
        self.phases = {"prepare": 0.0, "host_to_device": 0.0, "network": 0.0, "device_to_host": 0.0}
        self.pixels = 0

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        assert trimaps is not None
        clock = time.perf_counter()
        image, trimap = normalize_images(images), one_hot_trimaps(trimaps)
        if self.device.type == "cuda":
            image, trimap = image.pin_memory(), trimap.pin_memory()
        clock = self._tick("prepare", clock)
        image, trimap = image.to(self.device), trimap.to(self.device)
        synchronize(self.device)
        clock = self._tick("host_to_device", clock)
        with torch.inference_mode(), self._precision():
            alpha = self.net(image, trimap)
        synchronize(self.device)
        clock = self._tick("network", clock)
        result = alpha[:, 0].float().cpu().numpy()
        self._tick("device_to_host", clock)
        self.pixels += images.shape[0] * images.shape[1] * images.shape[2]
        return result

    def _tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[phase] += now - since
        return now


def flops_per_pixel(arch: str) -> float:
    """FLOPs per input pixel of one forward pass on a 576 x 576 input (a 512 px tile with its padding)."""
    model = synthetic(arch, "cpu")
    image = torch.zeros(1, 3, 576, 576)
    trimap = torch.zeros(1, 3, 576, 576)
    trimap[:, 1] = 1
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.net(image, trimap)
    return counter.get_total_flops() / 576**2


def end_to_end(
    device: str, size: int, half: bool, rated: float | None, flops: float, options: TileOptions
) -> dict:
    image_path, trimap_path = prepare("GT01", size, "trimap1")
    base = synthetic("gca", device, half)
    model = Timed(base.net, base.requirements, base.device, half, base.attention_stride)
    model.reset()
    warm = load_input(image_path, trimap_path)
    run_model(model, warm, options)  # warm-up: CUDA context, cuDNN's algorithm choice
    model.reset()
    synchronize(model.device)
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    phases: dict[str, float] = {}
    start = clock = time.perf_counter()
    data = load_input(image_path, trimap_path)
    phases["decode"], clock = time.perf_counter() - clock, time.perf_counter()
    how = plan(model, size, size, data.trimap, options)
    phases["plan"], clock = time.perf_counter() - clock, time.perf_counter()
    if how.grid is None:
        alpha = finish_alpha(run_whole(model, data.image, data.trimap), data)
    else:
        alpha = finish_alpha(run_tiled(model, data.image, data.trimap, how), data)
    tiled = time.perf_counter() - clock
    clock = time.perf_counter()
    write_png(CACHE / "alpha" / f"gpu_check_gca_{device}_{size}_half{int(half)}.png", alpha)
    phases["encode"] = time.perf_counter() - clock
    total = time.perf_counter() - start
    phases |= model.phases
    phases["blend_and_gather"] = tiled - sum(model.phases.values())
    achieved = flops * model.pixels / model.phases["network"] / 1e12
    row = {"check": f"gca_{size}", "device": device, "half": half, "seconds": round(total, 3),
           "tiles": 0 if how.grid is None else len(how.grid.run), "batch": how.batch,
           "model_megapixels": round(model.pixels / 1e6, 1),
           "phases_s": {k: round(v, 3) for k, v in phases.items()},
           "network_tflops": round(achieved, 2)}
    if model.device.type == "cuda":
        row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    if rated is not None:
        row["network_share_of_rated"] = round(achieved / rated, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rated-tflops", type=float, nargs=2, metavar=("FP32", "FP16"),
                        help="the GPU's dense rated TFLOP/s (default: from a table of known GPUs)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    parser.add_argument("--size", type=int, default=6000, help="side of the end-to-end photo")
    parser.add_argument("--max-memory", help="memory budget of the end-to-end run (default: the engine's)")
    parser.add_argument("--device", default="cuda",
                        help="cpu only rehearses the end-to-end and phase timing (no parity, no half)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA GPU visible to torch")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    rated = args.rated_tflops or next((v for k, v in RATED_TFLOPS.items() if k in name), None)
    flops = flops_per_pixel("gca")
    rows: list[dict] = [{"check": "device", "name": name, "torch": torch.__version__, "rated_tflops": rated,
                         "gca_gflop_per_megapixel": round(flops / 1e3, 1)}]
    print(json.dumps(rows[-1]), flush=True)
    for row in parity() if cuda else []:
        rows.append(row)
        print(json.dumps(row), flush=True)
    for half in (False, True) if cuda else (False,):
        rated_here = None if rated is None else rated[int(half)]
        options = TileOptions(max_memory=args.max_memory)
        rows.append(end_to_end(args.device, args.size, half, rated_here, flops, options))
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
