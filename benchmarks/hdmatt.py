"""HDMatt cost: peak memory of one engine call (what ``HDMattModel.estimate_memory`` is fitted to) and FLOPs.

The 6000² row next to GCA's comes from ``benchmarks/highres.py`` unchanged (HDMatt with random weights)::

    python benchmarks/highres.py run --models gca hdmatt --sizes 6000 --trimaps 0.1 --strategies tiled \\
        --threads 1 --out hdmatt-highres.json

This file measures the memory model::

    python benchmarks/hdmatt.py memory --pools 4 8 --batches 1 4   # peak RSS growth of a call

Each case runs in its own process: build the model, make a pool of ``pool`` 320² patches and ``batch``
query patches, reset the peak (``/proc/self/clear_refs``), run ``infer_context`` once (the first call, so
nothing freed by an earlier call is reused) and report the growth of the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _status(field: str) -> int:
    """A VmRSS / VmHWM figure of this process in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(pool: int, batch: int, size: int) -> dict:
    """Peak RSS growth of one ``infer_context`` call with a fresh pool, in this process."""
    import torch

    from mattekit.engine import TileContext
    from mattekit.models import create_model
    from mattekit.trimap import UNKNOWN

    torch.set_num_threads(1)
    model = create_model("hdmatt", device="cpu")
    rng = np.random.default_rng(0)

    def context() -> TileContext:
        images = rng.random((pool, size, size, 3), dtype=np.float32)
        trimaps = rng.choice(np.array([0, UNKNOWN, 255], np.uint8), (pool, size, size))
        boxes = np.arange(pool * 4).reshape(pool, 4)
        return TileContext(images, trimaps, boxes, boxes[:batch])

    data = context()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    model.infer_context(data.images[:batch], data.trimaps[:batch], data)
    growth = _status("VmHWM") - before
    estimate = model.estimate_memory(size, size, batch)
    return {"pool": pool, "batch": batch, "size": size,
            "growth_mb": round(growth / 1e6, 1), "estimate_mb": round(estimate / 1e6, 1)}


def command_memory(args: argparse.Namespace) -> None:
    for pool in args.pools:
        for batch in args.batches:
            case = json.dumps({"pool": pool, "batch": batch, "size": args.size})
            done = subprocess.run([sys.executable, __file__, "case", case], capture_output=True, text=True,
                                  check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps({**result, "load": round(os.getloadavg()[0], 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    memory = commands.add_parser("memory", help="peak RSS growth of one engine call")
    memory.add_argument("--pools", nargs="+", type=int, default=[4, 8])
    memory.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    memory.add_argument("--size", type=int, default=320)
    case = commands.add_parser("case", help="(internal) one case, as JSON")
    case.add_argument("json")
    args = parser.parse_args()
    if args.command == "memory":
        command_memory(args)
    else:
        print(json.dumps(measure(**json.loads(args.json))))


if __name__ == "__main__":
    main()
