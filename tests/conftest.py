"""Shared test fixtures: where the real data and the references live.

The data sit in ``../shared`` beside the checkout (CI has them too); ``MATTEKIT_SHARED`` overrides that.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mattekit.models import MattingModel, create_model
from mattekit.models.checkpoint import load_into

SHARED = Path(os.environ.get("MATTEKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEV = SHARED / "data" / "alphamatting-dev"
REFERENCE = SHARED / "reference"

if not DEV.is_dir():
    raise RuntimeError(f"test data not found at {DEV}; set MATTEKIT_SHARED to the shared/ folder")


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    """alphamatting.com training images with ground truth and two trimap sets."""
    return DEV


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Official-code outputs and metric values (see each folder's README)."""
    return REFERENCE


def synthetic_model(name: str, reference_dir: Path) -> MattingModel:
    """``gca`` or ``hop`` with the deterministic synthetic weights of the shared reference: the same on
    every machine, with activations of realistic scale (shared/reference/gca/README.md).  No trained
    weights exist here, but tiled and whole outputs can still be compared."""
    spec = importlib.util.spec_from_file_location("reference_fill", reference_dir / "gca" / "fill.py")
    assert spec is not None and spec.loader is not None
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    model = create_model(name, weights=None, device="cpu")
    load_into(model.net, fill.fill(str(reference_dir / name / f"{name}_keys.json")))
    return model


@pytest.fixture(scope="module")
def gca(reference_dir: Path) -> MattingModel:
    """GCA with the synthetic weights (``synthetic_model``)."""
    return synthetic_model("gca", reference_dir)


@pytest.fixture(scope="module")
def hop(reference_dir: Path) -> MattingModel:
    """HOP with the synthetic weights (``synthetic_model``)."""
    return synthetic_model("hop", reference_dir)
