"""How many threads a run computes with: the cores this process may use that are not busy now.

Oversubscribing a busy CPU is far worse than using fewer threads: on two cores already loaded by other
work, two torch threads slowed a tiled 6000x6000 GCA run from 61 s to 262-324 s while one thread held
80 s (docs/benchmarks.md).  So the default is the usable cores (the process's CPU affinity, capped by a
cgroup CPU quota as containers set) less the ones busy now, and at least one; ``--threads N`` overrides
it.  "Busy" is the smaller of the 1-minute load average and the other tasks runnable at this instant: the
average alone lags by a minute, so a run started right after another (a script calling the CLI per file)
would count its predecessor's finished work and take one thread on an idle machine.  The CLI applies
it; the Python API leaves the libraries' own settings alone unless :func:`apply` is called.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

#: cgroup v2 CPU limit of this process's container: "<quota> <period>" or "max <period>".
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
#: Linux load figures: "<1 min> <5 min> <15 min> <runnable now>/<tasks> <last pid>".
_LOADAVG = Path("/proc/loadavg")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = _CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read
    return max(1, cores)


def busy_cores() -> float:
    """Cores other work keeps busy: the 1-minute load average, unless fewer other tasks are runnable now."""
    try:
        fields = _LOADAVG.read_text().split()
        average, runnable_now = float(fields[0]), int(fields[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # not Linux
    return min(average, runnable_now - 1)  # the reading task itself is one of the runnable ones


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """The usable cores less those busy now (``load``, default :func:`busy_cores`, rounded), at least one."""
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    return max(1, min(cores, round(cores - load)))


def apply(threads: int) -> None:
    """Compute with ``threads`` threads in torch (intra-op), numba (pymatting's parallel kernels) and
    OpenMP (pykdtree's neighbour searches), for whichever of them is imported: call it after the model is
    built."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "pykdtree.kdtree" in sys.modules:  # information flow's; OpenMP would otherwise take every core
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="openmp")
