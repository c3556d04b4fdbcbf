"""Networks on the CPU: seconds per model call, with and without the cached spectral-norm weights, and
with one or two torch threads.

    python benchmarks/network_cpu.py --before /tmp/before          # a checkout of the code to compare with
    python benchmarks/network_cpu.py --threads 1 2 --size 576       # the thread count on a busy machine

GCA (random initialisation: the time does not depend on the values) runs ``NetworkModel.infer`` on one
``--size`` input (128 = a 64 px tile with the official 32 px border; 576 = a 512 px tile), ``--calls``
times after one warm-up call, in a fresh process per configuration; configurations alternate
(``--rounds``) so that a change of machine load hits all of them alike.  Prints a markdown table of the
median seconds per call (wall and CPU) with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASE = """
import json, sys, time
import numpy as np
import torch
torch.set_num_threads({threads})
from mattekit.models import create_model
model = create_model("gca", device="cpu")
rng = np.random.default_rng(0)
images = rng.random((1, {size}, {size}, 3), dtype=np.float32)
trimaps = rng.choice(np.array([0, 128, 255], np.uint8), size=(1, {size}, {size}))
model.infer(images, trimaps)
wall, cpu = [], []
for _ in range({calls}):
    start, start_cpu = time.perf_counter(), time.process_time()
    model.infer(images, trimaps)
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({{"wall": wall, "cpu": cpu}}))
"""


def run(code_path: Path, threads: int, size: int, calls: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(code_path)}
    case = CASE.format(threads=threads, size=size, calls=calls)
    out = subprocess.run([sys.executable, "-c", case], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with (its folder)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    here = Path(__file__).resolve().parents[1]
    code = {"this checkout": here} | ({"before": args.before} if args.before else {})
    configs = [(name, threads) for name in code for threads in args.threads]
    samples: dict[tuple[str, int], dict[str, list[float]]] = {c: {"wall": [], "cpu": []} for c in configs}
    load_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, threads in configs:
            result = run(code[name], threads, args.size, args.calls)
            for key in ("wall", "cpu"):
                samples[(name, threads)][key] += result[key]
    print(f"GCA, {args.size}x{args.size} input, {len(os.sched_getaffinity(0))} usable cores, load average "
          f"{load_start:.1f} -> {os.getloadavg()[0]:.1f}; medians of {args.rounds} x {args.calls} calls\n")
    print("| code | torch threads | wall s / call | CPU s / call |")
    print("|---|---:|---:|---:|")
    for (name, threads), result in samples.items():
        print(f"| {name} | {threads} | {statistics.median(result['wall']):.3f} | "
              f"{statistics.median(result['cpu']):.3f} |")


if __name__ == "__main__":
    main()
