"""The weight-free models on real photos: alphamatting.com training images, both trimap sets, scored in
the unknown region with the official metric conventions (issue 2, points 3 and 9; issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mattekit
from mattekit.evaluate import read_alpha
from mattekit.metrics import score
from mattekit.models import DEFAULT_MODEL
from mattekit.predictor import load_model
from mattekit.trimap import read_trimap

# (trimap set, image) -> (SAD, MSE) measured for shared sampling (the default until issue 16) on
# 2026-11-21 with `python benchmarks/classical.py` (two runs, identical); the bounds allow 5% on top.
SHARED_SAMPLING = {
    ("Trimap1", "GT01"): (1.2968, 0.005767),
    ("Trimap1", "GT02"): (1.5721, 0.004854),
    ("Trimap1", "GT03"): (4.5218, 0.005064),
    ("Trimap1", "GT04"): (9.1930, 0.006187),
    ("Trimap1", "GT05"): (0.9630, 0.005647),
    ("Trimap1", "GT06"): (2.3034, 0.006881),
    ("Trimap1", "GT07"): (1.9033, 0.004509),
    ("Trimap1", "GT08"): (12.7972, 0.019488),
    ("Trimap1", "GT09"): (3.6253, 0.004894),
    ("Trimap2", "GT01"): (1.7094, 0.002618),
    ("Trimap2", "GT02"): (3.3138, 0.006599),
    ("Trimap2", "GT03"): (5.5946, 0.004964),
    ("Trimap2", "GT04"): (13.4201, 0.008587),
    ("Trimap2", "GT05"): (1.8759, 0.008730),
    ("Trimap2", "GT06"): (4.5487, 0.011146),
    ("Trimap2", "GT07"): (2.8283, 0.003846),
    ("Trimap2", "GT08"): (17.4916, 0.023079),
    ("Trimap2", "GT09"): (5.2570, 0.005754),
}
# The same for information flow (the default since issue 16), with its edge trimming used as K-to-U hints
# (the third session's choice), measured on 2026-11-30 with `python benchmarks/classical.py --models
# information-flow --rows`.  The hints lower the mean SAD over all 18 cases (5.03 untrimmed -> 4.41); against
# the trimmed pixels made known (the second session's default, 4.40) they raise GT01/Trimap1 (0.646 ->
# 0.803, MSE 0.0019 -> 0.0022) and lower the three others, so that bound rose with the model, by measurement.
# It takes seconds per image, so the suite bounds the four cases with the smallest unknown regions (both
# trimap sets); all 18 are in docs/benchmarks.md.
INFORMATION_FLOW = {
    ("Trimap1", "GT01"): (0.8028, 0.002172),
    ("Trimap1", "GT05"): (0.7789, 0.003777),
    ("Trimap1", "GT07"): (1.6658, 0.003602),
    ("Trimap2", "GT05"): (1.1445, 0.004702),
}
MEASURED = {("shared-sampling", *case): value for case, value in SHARED_SAMPLING.items()}
MEASURED |= {("information-flow", *case): value for case, value in INFORMATION_FLOW.items()}
MARGIN = 1.05


@pytest.fixture(scope="module")
def models() -> dict[str, mattekit.predictor.MattingModel]:
    return {name: load_model(name) for name in ("shared-sampling", "information-flow")}


def test_information_flow_is_the_default() -> None:
    """Chosen by the measured means over alphamatting-dev (docs/benchmarks.md)."""
    assert DEFAULT_MODEL == "information-flow"


@pytest.mark.parametrize(("model_name", "trimap_set", "name"), sorted(MEASURED))
def test_weight_free_models_on_alphamatting(
    dev_dir: Path, models, model_name: str, trimap_set: str, name: str
) -> None:
    trimap_path = dev_dir / "trimap_training_lowres" / trimap_set / f"{name}.png"
    image = dev_dir / "input_training_lowres" / f"{name}.png"
    alpha = mattekit.predict(image, trimap_path, models[model_name])
    trimap = read_trimap(trimap_path)
    truth = read_alpha(dev_dir / "gt_training_lowres" / f"{name}.png")
    result = score(alpha, truth, trimap)
    sad, mse = MEASURED[(model_name, trimap_set, name)]
    assert result.sad <= sad * MARGIN
    assert result.mse <= mse * MARGIN
    # The matte must use the image: a guess of 0.5 everywhere unknown is at least twice as far off.
    guess = np.where(trimap == 128, 0.5, trimap / 255.0)
    assert result.sad < 0.5 * score(guess, truth, trimap).sad
