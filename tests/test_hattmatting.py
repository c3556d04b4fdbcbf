"""HAttMatting (issue 14): the network, its discriminator and losses, and trimap-free prediction.

No trained weights exist, so the network runs with seeded random weights; what is checked is shape,
range, the SSIM against scikit-image, the PatchGAN's receptive field, and that a weights file goes through
``mattekit predict`` to the network's own output, with and without a trimap.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from skimage.metrics import structural_similarity

from mattekit.cli import main
from mattekit.engine import TileOptions, plan
from mattekit.errors import MattekitError
from mattekit.io import read_gray
from mattekit.models import create_model, get_model_info
from mattekit.models.hattmatting import (
    HAttMatting,
    LossWeights,
    PatchDiscriminator,
    discriminator_loss,
    generator_loss,
    loss_weights,
    ssim,
)
from mattekit.models.network import normalize_images
from mattekit.predictor import predict
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, read_trimap

#: The lighter backbone used on the CPU; the REC ResNeXt-101 is checked by its size only.
BACKBONE = "resnext50_32x4d"
#: An odd-sized crop, so the predictor has to pad to a multiple of 32 and crop back.
CROP = 150


def _crop(dev_dir: Path, name: str, size: int = CROP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of a real image, its ground-truth alpha and Trimap1, centred on the unknown region."""
    trimap = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / f"{name}.png")
    image = np.asarray(Image.open(dev_dir / "input_training_lowres" / f"{name}.png").convert("RGB"))
    alpha = np.asarray(Image.open(dev_dir / "gt_training_lowres" / f"{name}.png").convert("L"))
    ys, xs = np.nonzero(trimap == UNKNOWN)
    top = int(np.clip(ys.mean() - size / 2, 0, trimap.shape[0] - size))
    left = int(np.clip(xs.mean() - size / 2, 0, trimap.shape[1] - size))
    window = np.s_[top : top + size, left : left + size]
    return image[window], alpha[window], trimap[window]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HAttMatting]:
    """A seeded ResNeXt-50 HAttMatting saved as safetensors, and the network itself in eval mode."""
    torch.manual_seed(0)
    net = HAttMatting(BACKBONE).eval()
    path = tmp_path_factory.mktemp("weights") / "hattmatting.safetensors"
    save_file(net.state_dict(), str(path))
    return path, net


def test_registered_trimap_free_with_weights() -> None:
    needs = get_model_info("hattmatting").requirements
    assert (needs.trimap, needs.weights, needs.pad_multiple) == (False, True, 32)


def test_generator_shapes_range_and_backbone_grid(weights: tuple[Path, HAttMatting]) -> None:
    _, net = weights
    torch.manual_seed(1)
    with torch.no_grad():
        features = net.backbone(torch.randn(2, 3, 64, 96))
        alpha = net(torch.randn(2, 3, 64, 96))
    # Output stride 16 (block4 dilated): ASPP x4 lands on block1's 1/4 grid.
    assert features.layer1.shape == (2, 256, 16, 24) and features.layer4.shape == (2, 2048, 4, 6)
    assert alpha.shape == (2, 1, 64, 96)
    assert torch.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1
    assert alpha.std() > 0  # not a constant map


def test_resnext101_size() -> None:
    with torch.device("meta"):
        net = HAttMatting("resnext101_32x8d")
    backbone = sum(p.numel() for p in net.backbone.parameters())
    # torchvision's resnext101_32x8d without its 1000-way fc (2048 x 1000 + 1000).
    assert backbone == 88_791_336 - 2_049_000


def test_ssim_matches_scikit_image(dev_dir: Path) -> None:
    _, alpha, _ = _crop(dev_dir, "GT02", 96)
    target = alpha.astype(np.float64) / 255
    noisy = np.clip(target + np.random.default_rng(0).normal(0, 0.1, target.shape), 0, 1)
    pred = cv2.GaussianBlur(noisy, (0, 0), 1.0)
    reference = structural_similarity(
        pred, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    ours = ssim(torch.tensor(pred)[None, None].float(), torch.tensor(target)[None, None].float())
    assert 0.2 < reference < 0.95  # a partial match, so the comparison is not at a trivial value
    assert float(ours) == pytest.approx(reference, abs=1e-5)
    assert float(
        ssim(torch.tensor(target)[None, None].float(), torch.tensor(target)[None, None].float())
    ) == (pytest.approx(1.0, abs=1e-6))


def test_patchgan_sees_70_pixel_patches() -> None:
    torch.manual_seed(2)
    disc = PatchDiscriminator().eval()
    image = torch.randn(1, 3, 128, 128, requires_grad=True)
    logits = disc(image, torch.rand(1, 1, 128, 128))
    assert logits.shape == (1, 1, 14, 14)
    logits[0, 0, 7, 7].backward()
    rows = torch.nonzero(image.grad.abs().sum(dim=(0, 1, 3))).ravel()
    cols = torch.nonzero(image.grad.abs().sum(dim=(0, 1, 2))).ravel()
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (70, 70)


def test_loss_schedule_and_hybrid_loss() -> None:
    assert loss_weights(0) == LossWeights(adversarial=0.05, mse=1, ssim=0.1)
    later = LossWeights(adversarial=0.05, mse=1, ssim=0.025)
    assert all(loss_weights(epoch) == later for epoch in range(1, 20))
    logits, target = torch.randn(2, 1, 6, 6), torch.rand(2, 1, 64, 64)
    total, parts = generator_loss(logits, target.clone(), target, later)
    # A perfect matte leaves only the adversarial term: binary cross-entropy towards "real".
    assert float(parts["mse"]) == 0 and float(parts["ssim"]) == pytest.approx(0, abs=1e-6)
    assert float(parts["adversarial"]) == pytest.approx(float(F.softplus(-logits).mean()), rel=1e-6)
    assert float(total) == pytest.approx(0.05 * float(parts["adversarial"]), rel=1e-6)
    fake = torch.randn(2, 1, 6, 6)
    expected = 0.5 * (F.softplus(-logits).mean() + F.softplus(fake).mean())
    assert float(discriminator_loss(logits, fake)) == pytest.approx(float(expected), rel=1e-6)


def _network_alpha(net: HAttMatting, image: np.ndarray) -> np.ndarray:
    """The network run directly: reflect-pad to a multiple of 32 (bottom, right), crop back."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, -height % 32), (0, -width % 32), (0, 0)), mode="reflect")
    with torch.no_grad():
        alpha = net(normalize_images(padded[None].astype(np.float32) / 255))
    return alpha[0, 0, :height, :width].numpy()


def test_predict_cli_without_and_with_trimap(
    weights: tuple[Path, HAttMatting], dev_dir: Path, tmp_path: Path
) -> None:
    path, net = weights
    image, _, trimap = _crop(dev_dir, "GT04")
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(trimap).save(tmp_path / "photo_trimap.png")
    common = ["--model", "hattmatting", "--weights", str(path), "--device", "cpu"]
    assert main(["predict", str(tmp_path / "photo.png"), "-o", str(tmp_path / "free.png"), *common]) == 0
    with_trimap = ["-t", str(tmp_path / "photo_trimap.png"), "-o", str(tmp_path / "fixed.png")]
    assert main(["predict", str(tmp_path / "photo.png"), *with_trimap, *common]) == 0
    free, fixed = read_gray(tmp_path / "free.png"), read_gray(tmp_path / "fixed.png")
    expected = _network_alpha(net, image)
    assert free.shape == (CROP, CROP)
    assert np.abs(free - expected).max() <= 0.5 / 255 + 1e-6  # the 8-bit rounding only
    assert expected.std() > 0.01
    # The trimap does not reach the network: it only fixes the known regions.  Compared with the network's
    # own alpha, as above: two runs' float noise can round a value on an 8-bit boundary either way.
    unknown = trimap == UNKNOWN
    assert np.abs(fixed[unknown] - expected[unknown]).max() <= 0.5 / 255 + 1e-6
    assert (fixed[trimap == FOREGROUND] == 1).all() and (fixed[trimap == BACKGROUND] == 0).all()


def test_backbone_from_the_weights_and_tiling(
    weights: tuple[Path, HAttMatting], dev_dir: Path, tmp_path: Path
) -> None:
    path, net = weights
    model = create_model("hattmatting", weights=path, device="cpu")
    assert len(model.net.backbone.layer3) == 6 and model.net.backbone.layer1[0].conv2.groups == 32
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(MattekitError, match="does not fit HAttMatting"):
        create_model("hattmatting", weights=wrong, device="cpu")
    # A 6000 px square does not fit 4 GB in one pass: the planner tiles it, every tile runs (no trimap).
    how = plan(model, 6000, 6000, None, TileOptions(max_memory="4GB"))
    assert how.grid is not None and how.estimated_peak <= how.budget
    assert len(how.grid.run) == len(how.grid.rows.starts) * len(how.grid.cols.starts)
    image, _, _ = _crop(dev_dir, "GT04")
    alpha = predict(image, model=model, tiling=TileOptions(tile="on", tile_size=96, overlap=16))
    assert alpha.shape == (CROP, CROP) and np.isfinite(alpha).all()


def test_eval_full_region_on_the_image_alone(
    weights: tuple[Path, HAttMatting], dev_dir: Path, tmp_path: Path
) -> None:
    """``eval --region full --image-only``: HAttMatting's Table 1 protocol (whole image, no trimap)."""
    path, net = weights
    image, gt, trimap = _crop(dev_dir, "GT04")
    for folder, array in (("image", image), ("alpha", gt), ("trimap", trimap)):
        (tmp_path / "data" / folder).mkdir(parents=True)
        Image.fromarray(array).save(tmp_path / "data" / folder / "GT04.png")
    common = ["eval", "--data", str(tmp_path / "data"), "--model", "hattmatting", "--weights", str(path)]
    common += ["--device", "cpu", "--region", "full"]
    assert main([*common, "--image-only", "--json", str(tmp_path / "free.json")]) == 0
    assert main([*common, "--json", str(tmp_path / "fixed.json")]) == 0
    free, fixed = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("free", "fixed"))
    assert free["conventions"]["model input"] == "the image alone (no trimap)"
    # Whole-image SAD (in thousands) and MSE of the 8-bit matte the network gives without a trimap.
    pred = np.rint(_network_alpha(net, image) * 255) / 255
    error = pred - gt / 255
    assert free["rows"][0]["sad"] == pytest.approx(np.abs(error).sum() / 1000, rel=1e-4)
    assert free["rows"][0]["mse"] == pytest.approx(np.square(error).mean(), rel=1e-4)
    # Given the trimap, the known regions are fixed to it, which removes most of the error.
    assert fixed["rows"][0]["sad"] < free["rows"][0]["sad"]


def test_models_info_reports_size_and_flops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", "hattmatting"]) == 0
    out = capsys.readouterr().out
    # State_dict values of the REC ResNeXt-101 network, and FLOPs of one 512² pass (counted, not timed).
    assert "104,493,764 (state_dict values)" in out
    assert "FLOPs at 512²      308.6 G" in out
