"""Shared test fixtures: where the real data and the references live.

The data sit in ``../shared`` beside the checkout (CI has them too); ``MATTEKIT_SHARED`` overrides that.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
