"""mattekit.metrics against the official DIM evaluation code (values from MATLAB code run under Octave) and
against numbers computed by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from mattekit import metrics
from mattekit.errors import MattekitError
from mattekit.evaluate import read_alpha
from mattekit.io import write_png
from mattekit.metrics import (
    _areas,
    _keep_largest_component,
    _label,
    connectivity_error,
    gradient_error,
    score,
    to_uint8,
)
from mattekit.trimap import read_trimap

METRIC_NAMES = ("sad", "mse", "grad", "conn")


def _reference_rows(reference_dir: Path) -> list[dict[str, str]]:
    with open(reference_dir / "metrics" / "official_metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference_rows(reference_dir: Path) -> list[dict[str, str]]:
    return _reference_rows(reference_dir)


def test_every_reference_row_matches_the_official_code(reference_dir: Path, reference_rows) -> None:
    """All 28 rows, all four metrics, to 1e-5 relative (the official code sums in single precision)."""
    folder = reference_dir / "metrics"
    assert len(reference_rows) == 28
    failures = []
    for row in reference_rows:
        pred, gt = read_alpha(folder / row["pred"]), read_alpha(folder / row["gt"])
        scores = score(pred, gt, read_trimap(folder / row["trimap"])).as_dict()
        for name in METRIC_NAMES:
            expected = float(row[name])
            error = abs(scores[name] - expected) / expected if expected else abs(scores[name])
            if error > 1e-5:
                failures.append(f"{row['pred']} {name}: {scores[name]!r} vs official {expected!r}")
    assert not failures, "\n".join(failures)


def _ramp_case() -> tuple[np.ndarray, np.ndarray]:
    """A 40x60 ground truth with soft edges (codes 0..200) and a trimap with a 20x30 unknown block."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 201, size=(40, 60)).astype(np.uint8)
    trimap = np.zeros((40, 60), dtype=np.uint8)
    trimap[:, 30:] = 255
    trimap[10:30, 15:45] = 128
    return gt, trimap


def test_perfect_prediction_scores_zero_everywhere() -> None:
    gt, trimap = _ramp_case()
    assert score(gt.copy(), gt, trimap).as_dict() == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_constant_offset_gives_the_hand_computed_sad_and_mse() -> None:
    """+10 codes on every pixel: SAD = 10 * 600 unknown pixels / 255 / 1000, MSE = (10 / 255)^2; the
    gradient of a min-max scaled matte ignores an offset, so Grad is exactly 0."""
    gt, trimap = _ramp_case()
    scores = score(gt + np.uint8(10), gt, trimap)
    assert scores.sad == pytest.approx(10 * 600 / 255 / 1000, rel=1e-12)
    assert scores.mse == pytest.approx((10 / 255) ** 2, rel=1e-12)
    assert scores.grad == 0.0
    full = score(gt + np.uint8(10), gt, trimap, region="full")
    assert full.sad == pytest.approx(10 * 40 * 60 / 255 / 1000, rel=1e-12)
    assert full.mse == pytest.approx((10 / 255) ** 2, rel=1e-12)


def test_connectivity_of_one_disconnected_pixel_by_hand() -> None:
    """Ground truth opaque everywhere, prediction 0 at one unknown pixel: that pixel leaves the largest
    component at the first threshold (0.1), so l = 0 there; phi_pred = 1 - 0 (d = 0 < 0.15) and
    phi_gt = 1 - 1 = 0, a difference of 1; every other pixel has l = 1 and phi = 1 in both.  Conn = 1/1000."""
    gt = np.full((4, 4), 255, dtype=np.uint8)
    pred = gt.copy()
    pred[1, 2] = 0
    trimap = np.full((4, 4), 128, dtype=np.uint8)
    assert score(pred, gt, trimap).conn == pytest.approx(1 / 1000, rel=1e-12)
    # outside the unknown region the same pixel does not count
    trimap[1, 2] = 255
    assert score(pred, gt, trimap).conn == 0.0


def test_equal_components_are_chosen_in_matlab_column_major_order() -> None:
    """bwconncomp numbers components in column-major order and max() keeps the first: of two 2-pixel
    components, the one in column 0 wins although the other comes first in row-major order."""
    binary = np.zeros((4, 4), dtype=bool)
    binary[0, 2:4] = True  # first in row-major order
    binary[2:4, 0] = True  # first in column-major order
    _keep_largest_component(binary, np.empty(binary.shape, dtype=np.uint16))
    assert np.array_equal(binary, np.isin(np.arange(16).reshape(4, 4), [8, 12]))


def test_component_areas_match_opencv_statistics_beyond_65535_components() -> None:
    """Areas from uint16 labels and banded histograms, and the int32 fallback for more components."""
    rng = np.random.default_rng(2)
    few = rng.random((300, 700)) < 0.55
    many = np.zeros((600, 600), dtype=bool)
    many[::2, ::2] = True  # 90000 single-pixel components
    for binary in (few, many):
        _, _, stats, _ = cv2.connectedComponentsWithStats(binary.view(np.uint8), connectivity=4)
        assert np.array_equal(_areas(*_label(binary, np.empty(binary.shape, dtype=np.uint16))), stats[:, 4])
        largest = binary.copy()
        _keep_largest_component(largest, np.empty(binary.shape, dtype=np.uint16))
        _, labels = cv2.connectedComponents(binary.view(np.uint8), connectivity=4)
        assert np.array_equal(largest, labels == np.argmax(stats[1:, 4]) + 1)


def test_conn_labelled_two_thresholds_at_a_time_equals_one_at_a_time(
    reference_dir: Path, dev_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path large mattes take (buffer sets reused in turn by two threads) on GT04, whose thresholded
    sets have hundreds of components."""
    pred = read_alpha(reference_dir / "metrics" / "pred" / "Trimap1" / "GT04.png")
    gt = read_alpha(dev_dir / "gt_training_lowres" / "GT04.png")
    mask = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / "GT04.png") == 128
    monkeypatch.setattr(metrics, "PARALLEL_PIXELS", 1 << 40)
    one = connectivity_error(pred, gt, mask)
    monkeypatch.setattr(metrics, "PARALLEL_PIXELS", 0)
    monkeypatch.setattr(metrics.os, "cpu_count", lambda: 2)
    assert connectivity_error(pred, gt, mask) == one == pytest.approx(11.11114407, rel=1e-5)


def test_grad_in_strips_equals_grad_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip seams must not show: 7-row strips give the whole-image filter's value."""
    gt, trimap = _ramp_case()
    noise = np.random.default_rng(3).integers(-30, 30, gt.shape)
    pred = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
    mask = trimap == 128
    whole = gradient_error(pred, gt, mask)
    monkeypatch.setattr(metrics, "STRIP_ROWS", 7)
    assert gradient_error(pred, gt, mask) == pytest.approx(whole, rel=1e-9)


def test_to_uint8_follows_the_png_writer_and_scales_16_bit() -> None:
    """Floats round as mattekit's PNG writer (rint, so 127.5 -> 128); 16-bit codes scale by 255/65535."""
    assert to_uint8(np.array([[0.5, 1.0, 0.0, 1.2]], np.float32)).tolist() == [[128, 255, 0, 255]]
    assert to_uint8(np.array([[257 * 3, 65535, 128]], np.uint16)).tolist() == [[3, 255, 0]]


def test_float_matte_scores_like_the_file_written_for_it(tmp_path: Path) -> None:
    gt, trimap = _ramp_case()
    alpha = np.clip(gt / 255.0 + np.random.default_rng(1).normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
    written = read_alpha(write_png(tmp_path / "pred.png", alpha))
    assert score(alpha, gt, trimap) == score(written, gt, trimap)


def test_size_mismatch_is_a_user_error_naming_the_file() -> None:
    gt, trimap = _ramp_case()
    with pytest.raises(MattekitError, match=r"pred\.png: sizes differ.*prediction 59x40"):
        score(gt[:, :59], gt, trimap, name="pred.png")
