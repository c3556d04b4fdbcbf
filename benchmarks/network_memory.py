"""Peak memory of one network forward pass per input pixel, on the CPU (what ``bytes_per_pixel`` records).

Each (architecture, size) runs in its own process: build the model, run one warm-up pass at 64 px, note
the resident set, reset the peak (Linux ``/proc/self/clear_refs``), run ``infer`` on a ``size`` x ``size``
image and read the peak (``VmHWM``).  The growth over the resident set, divided by the pixels, is the
figure; two sizes show whether it is linear in the area.

    python benchmarks/network_memory.py hattmatting --sizes 384 768 --option backbone=resnext50_32x4d
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def measure(architecture: str, size: int, options: dict[str, str]) -> dict[str, float]:
    """One forward pass in this process: peak growth in bytes and seconds."""
    from mattekit.models import create_model

    model = create_model(architecture, device="cpu", **options)
    rng = np.random.default_rng(0)

    def trimap(side: int) -> np.ndarray | None:  # all unknown, for the networks that take a trimap
        return np.full((1, side, side), 128, np.uint8) if model.requirements.trimap else None

    model.infer(rng.random((1, 64, 64, 3), dtype=np.float32), trimap(64))
    image = rng.random((1, size, size, 3), dtype=np.float32)
    trimaps = trimap(size)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    model.infer(image, trimaps)
    seconds = time.perf_counter() - start
    growth = (_status_kb("VmHWM") - before) * 1024
    return {"size": size, "growth_bytes": growth, "bytes_per_pixel": growth / size**2, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("architecture")
    parser.add_argument("--sizes", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--option", action="append", default=[], help="factory option KEY=VALUE")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.option)
    if args.one:
        print(json.dumps(measure(args.architecture, args.sizes[0], options)))
        return
    for size in args.sizes:
        command = [sys.executable, __file__, args.architecture, "--one", "--sizes", str(size)]
        command += [f"--option={item}" for item in args.option]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        load = Path("/proc/loadavg").read_text().split()[0]
        print(
            f"{args.architecture} {options} {size}px: {result['bytes_per_pixel']:.0f} B/pixel, "
            f"{result['growth_bytes'] / 2**20:.0f} MiB, {result['seconds']:.1f} s (load {load})",
            flush=True,
        )


if __name__ == "__main__":
    main()
