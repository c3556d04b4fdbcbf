"""pymatting's numba kernels, and mattekit's own (:mod:`mattekit.kernels`): compiled on the first import,
read from numba's cache afterwards.

pymatting declares every kernel with ``@njit(signature, cache=True)``, as :mod:`mattekit.kernels` does, so
``import pymatting`` compiles all of them (about a minute on two cores) unless numba finds them cached;
numba writes the cache
itself, beside pymatting's sources (``pymatting/**/__pycache__/*.nbi|*.nbc``), or under
``$NUMBA_CACHE_DIR`` when that is set, or in the user's cache (``~/.cache/numba``) when the package folder
is read-only.  So only the first run compiles.  Everything in mattekit imports pymatting through
:func:`import_pymatting`, which, when the kernels are not cached yet, runs the import inside the context
an application registered with :func:`on_compile` (the CLI shows "compiling solvers, first run only") and
adds the time to :data:`compile_seconds` (the CLI's summary reports it); mattekit's kernels come with it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

#: Seconds this process spent compiling pymatting's kernels (0.0 when they came from the cache).
compile_seconds = 0.0

_announce: Callable[[], AbstractContextManager[object]] = nullcontext


def on_compile(announce: Callable[[], AbstractContextManager[object]]) -> None:
    """Run a first-run compilation inside ``announce()`` (e.g. a spinner saying what is going on)."""
    global _announce
    _announce = announce


def kernels_cached() -> bool:
    """Whether numba holds a cache index for every pymatting source file that declares cached kernels, and
    for :mod:`mattekit.kernels`, where numba would look for it (False: importing them will compile)."""
    spec = find_spec("pymatting")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: the import error will say so, nothing compiles
    try:  # numba's own rules for where a source file's cache lives, in the order numba tries them
        from numba.core import caching

        locators = (getattr(caching, "CacheImpl", None) or caching._CacheImpl)._locator_classes
    except (ImportError, AttributeError):  # a numba we do not know: assume cached (no note, time not counted)
        return True
    own = Path(__file__).with_name("kernels.py")
    for source in [*Path(spec.submodule_search_locations[0]).rglob("*.py"), own]:
        if "cache=True" not in source.read_text(encoding="utf-8", errors="replace"):
            continue
        found = (locator.from_function(kernels_cached, str(source)) for locator in locators)
        location = next((where for where in found if where is not None), None)
        if location is None or not any(Path(location.get_cache_path()).glob(f"{source.stem}.*.nbi")):
            return False
    return True


def import_pymatting() -> ModuleType:
    """``pymatting``, imported on first use with :mod:`mattekit.kernels`; a compilation of their kernels
    is announced and timed."""
    global compile_seconds
    if "pymatting" in sys.modules or kernels_cached():
        import_module("mattekit.kernels")
        return import_module("pymatting")
    start = time.perf_counter()
    with _announce():
        import_module("mattekit.kernels")
        module = import_module("pymatting")
    compile_seconds += time.perf_counter() - start
    return module
