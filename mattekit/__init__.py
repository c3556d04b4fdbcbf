"""mattekit: image matting from the command line and from Python.

The API in one line: ``alpha = mattekit.predict(image, trimap, model="shared-sampling")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mattekit.errors import MattekitError

if TYPE_CHECKING:
    from mattekit.predictor import load_input, load_model, predict

__version__ = "0.1.0"

__all__ = ["MattekitError", "__version__", "load_input", "load_model", "predict"]

_PREDICTOR = ("load_input", "load_model", "predict")


def __getattr__(name: str) -> Any:
    """The predictor's functions, imported on first use: the predictor brings numpy and the engine, which
    ``mattekit --help``, ``eval`` and ``import mattekit.<module>`` do not need (PEP 562)."""
    if name in _PREDICTOR:
        from mattekit import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'mattekit' has no attribute {name!r}")
