"""SPAMattNet and TGN (issue 13): the pieces with exact answers (Eq. 4 distance map, CFC gate, hard-mining
loss), the networks end to end, Table IX's size of SPAMattNet*, and TGN trimaps from the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import mattekit
from mattekit.cli import main
from mattekit.evaluate import evaluate_trimaps
from mattekit.io import read_gray
from mattekit.joint import CLASS_VALUES, TrimapMaker, matte
from mattekit.metrics import to_uint8, trimap_confusion, trimap_scores
from mattekit.models import create_model
from mattekit.models.spamattnet import (
    CrossFusionContext,
    alpha_loss,
    distance_map,
    hard_mining_loss,
    progressive_refinement,
    region_weights,
    window_merge,
    window_partition,
)
from mattekit.predictor import load_input, load_model
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, from_mask, read_trimap
from mattekit.zoo import network_size

F_, U_, B_ = 2, 1, 0  # trimap classes as the networks see them


def test_distance_map_of_eq_4_on_a_hand_made_window() -> None:
    # 3x3 window, row-major indices 0..8:   F U B
    #                                       F U B
    #                                       U U B
    window = torch.tensor([[F_, U_, B_, F_, U_, B_, U_, U_, B_]])
    dis = distance_map(window)[0]
    r2, r5, r8 = math.sqrt(2), math.sqrt(5), math.sqrt(8)
    # Query 1 (unknown, at row 0 col 1): F keys 0 (d 1) and 3 (d r2), nearest F 1; B keys 2 (d 1), 5 (d r2),
    # 8 (d r5), nearest B 1; unknown keys 0.
    expected_1 = [1, 0, 1, r2, 0, r2, 0, 0, r5]
    # Query 6 (unknown, row 2 col 0): F keys 0 (d 2), 3 (d 1), nearest 1; B keys 2 (d r8), 5 (d r5), 8 (d 2),
    # nearest 2.
    expected_6 = [2, 0, r8 / 2, 1, 0, r5 / 2, 0, 0, 1]
    # Query 0 (foreground, not unknown): minus the distance to every F and B key.
    expected_0 = [0, 0, -2, -1, 0, -r5, 0, 0, -r8]
    torch.testing.assert_close(dis[1], torch.tensor(expected_1, dtype=torch.float32))
    torch.testing.assert_close(dis[6], torch.tensor(expected_6, dtype=torch.float32))
    torch.testing.assert_close(dis[0], torch.tensor(expected_0, dtype=torch.float32))
    # A window with no foreground: D_F vanishes, only the background term is left, and nothing is NaN.
    no_fg = distance_map(torch.tensor([[U_, B_, U_, U_]]))[0]
    torch.testing.assert_close(no_fg[0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.isfinite(distance_map(torch.full((1, 4), U_))).all()


def test_region_weights_are_gcas_eq_6_per_row() -> None:
    unknown = torch.tensor([[True, False, False, False], [True, True, True, True]])
    m = region_weights(unknown)
    # 1 unknown of 4: sqrt(1/3) for the unknown key, sqrt(3) for the known ones; all unknown: clipped to 10.
    root3 = math.sqrt(3)
    torch.testing.assert_close(m[0], torch.tensor([1 / root3, root3, root3, root3]))
    torch.testing.assert_close(m[1], torch.full((4,), 10.0))


def _identity_gate(cfc: CrossFusionContext, channels: int) -> None:
    """Make CFC's linear layer the identity: weight I, bias 0, and u = v = e1 so that sigma = u.(I v) = 1."""
    module = cfc.linear.module
    with torch.no_grad():
        module.weight_bar.copy_(torch.eye(2 * channels).reshape(module.weight_bar.shape))
        module.bias.zero_()
        module.weight_u.copy_(torch.eye(2 * channels)[0])
        module.weight_v.copy_(torch.eye(2 * channels)[0])
    cfc.eval()


def test_cfc_gate_is_elu_times_sigmoid() -> None:
    cfc = CrossFusionContext(2, dims=2)
    _identity_gate(cfc, 2)
    first = torch.tensor([-1.0, 2.0]).reshape(1, 2, 1, 1)
    second = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)
    out = cfc(first, second).flatten()
    torch.testing.assert_close(out, torch.tensor([(math.exp(-1) - 1) * 0.5, 2.0 * 0.75]))
    # 1D: the same gate on (N, L, C) tokens, fused along the last dimension.
    tokens = CrossFusionContext(2, dims=1)
    _identity_gate(tokens, 2)
    out = tokens(first.reshape(1, 1, 2).repeat(1, 3, 1), second.reshape(1, 1, 2).repeat(1, 3, 1))
    torch.testing.assert_close(out, torch.tensor([(math.exp(-1) - 1) * 0.5, 1.5]).repeat(1, 3, 1))


def test_hard_mining_and_alpha_losses() -> None:
    pred = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.0]).reshape(1, 1, 2, 3)
    gt = torch.zeros_like(pred)
    unknown = torch.tensor([1.0, 1, 1, 1, 0, 0]).reshape(1, 1, 2, 3)
    assert alpha_loss(pred, gt, unknown).item() == pytest.approx(0.25)
    assert hard_mining_loss(pred, gt, unknown).item() == pytest.approx(0.35)  # top 50%: 0.4, 0.3
    # Per image, then averaged: an image with 3 unknown pixels keeps ceil(1.5) = 2 of them.
    batch = torch.stack([pred[0], pred[0]])
    second = torch.tensor([1.0, 1, 1, 0, 0, 0]).reshape(1, 2, 3)
    mask = torch.stack([unknown[0], second])
    assert hard_mining_loss(batch, torch.zeros_like(batch), mask).item() == pytest.approx((0.35 + 0.25) / 2)


def test_windows_round_trip_and_progressive_refinement() -> None:
    x = torch.arange(2 * 3 * 16 * 24, dtype=torch.float32).reshape(2, 3, 16, 24)
    windows = window_partition(x, 8)
    assert windows.shape == (12, 64, 3) and torch.equal(windows[0, 9], x[0, :, 1, 1])
    assert torch.equal(window_merge(windows, 8, 16, 24), x)
    os8 = torch.zeros(1, 1, 60, 60)
    os8[..., 20, 20] = 0.5  # one uncertain pixel: the 1/4 alpha takes over within 15 px of it
    certain = progressive_refinement(os8, torch.ones_like(os8), torch.full_like(os8, 0.75))
    assert certain[0, 0, 35, 35] == 1 and certain[0, 0, 36, 20] == 0  # 15 px square; nothing left uncertain
    merged = progressive_refinement(os8, torch.full_like(os8, 0.25), torch.full_like(os8, 0.75))
    # Now the whole 31 px square is uncertain, so the full-resolution alpha takes over 7 px beyond it.
    assert merged[0, 0, 42, 42] == 0.75 and merged[0, 0, 43, 20] == 0 and merged[0, 0, 0, 0] == 0.75


@pytest.mark.parametrize("name", ["spamattnet", "spamattnet-star"])
def test_networks_matte_an_odd_sized_photo(name: str, dev_dir: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, device="cpu")
    trimap = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / "GT05.png")
    ys, xs = np.nonzero(trimap == UNKNOWN)
    top, left = ys[len(ys) // 2] - 20, xs[len(xs) // 2] - 25  # 40x51 around an unknown pixel
    window = np.s_[top : top + 40, left : left + 51]
    image = np.asarray(Image.open(dev_dir / "input_training_lowres" / "GT05.png"))[window]
    trimap = trimap[window]
    alpha = mattekit.predict(image, trimap, model)
    assert alpha.shape == (40, 51) and np.isfinite(alpha).all()
    assert np.all(alpha[trimap == 255] == 1) and np.all(alpha[trimap == 0] == 0)
    unknown = alpha[trimap == 128]
    assert unknown.min() >= 0 and unknown.max() <= 1 and unknown.std() > 0  # a real, image-dependent output


def test_spamattnet_star_size_is_table_ix() -> None:
    size = network_size("spamattnet-star")
    # Table IX: 26.0M parameters, 49.8G at 512² -- multiply-adds, half of FlopCounterMode's FLOPs.
    assert abs(size.parameters / 26.0e6 - 1) <= 0.05, size.parameters
    assert abs(size.flops / 2 / 49.8e9 - 1) <= 0.05, size.flops


def test_tgn_probabilities_and_the_trimap_command(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tgn", device="cpu")
    image = np.random.default_rng(0).random((1, 48, 80, 3), dtype=np.float32)
    mask = np.zeros((1, 48, 80), np.float32)
    mask[:, 10:40, 20:60] = 1
    probabilities = model.probabilities(image, mask)
    assert probabilities.shape == (1, 3, 48, 80)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    weights = tmp_path / "tgn.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(weights))

    Image.fromarray((image[0, 3:45, 5:76] * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray((mask[0, 3:45, 5:76] * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    photo, rough = str(tmp_path / "photo.png"), str(tmp_path / "mask.png")
    assert main(["trimap", photo, "--mask", rough, "--model", "tgn", "--weights", str(weights),
                 "-o", str(tmp_path / "tgn.png")]) == 0
    made = read_trimap(tmp_path / "tgn.png")
    # The same weights through the API (odd size: padded to 16 and cropped back) give the same trimap.
    expected = TrimapMaker(model).estimate(load_input(photo).image, read_gray(rough))
    assert made.shape == (42, 71) and set(np.unique(made)) <= {BACKGROUND, UNKNOWN, FOREGROUND}
    np.testing.assert_array_equal(made, expected.trimap)
    np.testing.assert_array_equal(expected.trimap, CLASS_VALUES[expected.probabilities.argmax(axis=0)])
    # Without a trimap model the mask goes through the morphology, as before.
    assert main(["trimap", photo, "--mask", rough, "-o", str(tmp_path / "m.png")]) == 0
    np.testing.assert_array_equal(read_trimap(tmp_path / "m.png"), from_mask(mask[0, 3:45, 5:76], 10, 10))
    # Joint inference through predict: TGN's trimap, shared-sampling, soft fusion (Eq. 15), as the API does.
    out = tmp_path / "joint"
    assert main(["predict", photo, "--mask", rough, "--model", "shared-sampling", "--trimap-model", "tgn",
                 "--trimap-weights", str(weights),
                 "--fusion", "soft", "-o", str(out)]) == 0
    data = load_input(photo, mask=rough)
    fused = matte(load_model("shared-sampling"), data, TrimapMaker(model), "soft")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo_alpha.png")), to_uint8(fused))
    # TGN without weights is refused, not silently random.
    assert main(["trimap", photo, "--mask", rough, "--model", "tgn", "-o", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_trimap_metrics_of_table_i(tmp_path: Path, dev_dir: Path, capsys) -> None:
    gt = np.array([[0, 0, 128, 255], [0, 128, 128, 255]], np.uint8)
    pred = np.array([[0, 128, 128, 255], [0, 128, 255, 255]], np.uint8)
    confusion = trimap_confusion(pred, gt)
    np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 2, 1], [0, 0, 2]])
    scores = trimap_scores(confusion)
    assert scores.pixel_accuracy == pytest.approx(6 / 8)
    # IoU: background 2 / (3 + 2 - 2), unknown 2 / (3 + 3 - 2), foreground 2 / (2 + 3 - 2).
    ious = (scores.iou_background, scores.iou_unknown, scores.iou_foreground)
    assert ious == pytest.approx((2 / 3, 0.5, 2 / 3))
    assert scores.mean_iou == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    # Through the CLI: the benchmark's own Trimap1 against the 15x15 trimap of the ground truth.
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("GT01", "GT02"):
        trimap_file = dev_dir / "trimap_training_lowres" / "Trimap1" / f"{name}.png"
        Image.open(trimap_file).save(tmp_path / "pred" / f"{name}_trimap.png")
        Image.open(dev_dir / "gt_training_lowres" / f"{name}.png").save(tmp_path / "gt" / f"{name}.png")
    assert main(["eval", "--trimaps", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 0
    out = capsys.readouterr().out
    report = evaluate_trimaps(tmp_path / "pred", tmp_path / "gt")
    assert [name for name, _ in report.rows] == ["GT01", "GT02"] and not report.problems
    first = report.rows[0][1]
    assert f"{100 * first.pixel_accuracy:.2f}" in out and f"{100 * report.pooled.mean_iou:.2f}" in out
    assert 0.9 < report.pooled.pixel_accuracy < 1  # a hand-made trimap is close to, not equal to, the rule
