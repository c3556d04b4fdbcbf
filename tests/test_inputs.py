"""Input robustness: every image mode, EXIF orientation, every trimap encoding, degenerate trimaps and
bad files (issue 2, point 6)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import mattekit
from mattekit.errors import MattekitError
from mattekit.io import read_image
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN, read_trimap

RNG = np.random.default_rng(0)


def _scene(height: int = 40, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A smooth photo-like uint8 image and a trimap with all three regions."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 4 % 256, yy * 6 % 256, (xx + yy) * 3 % 256], axis=2).astype(np.uint8)
    trimap = np.full((height, width), BACKGROUND, np.uint8)
    trimap[:, width // 3 :] = UNKNOWN
    trimap[:, 2 * width // 3 :] = FOREGROUND
    return image, trimap


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs: object) -> Path:
    picture = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    picture.save(path, **kwargs)
    return path


# --- image modes -----------------------------------------------------------------------------------


def test_grayscale_palette_la_and_cmyk_images_become_rgb(tmp_path: Path) -> None:
    image, _ = _scene()
    gray = image[..., 0]
    rgb = Image.fromarray(image)
    cases = {
        "gray.png": Image.fromarray(gray),
        "palette.png": rgb.quantize(64),
        "la.png": Image.fromarray(np.stack([gray, np.full_like(gray, 255)], 2), "LA"),
        "cmyk.tif": rgb.convert("CMYK"),
    }
    for name, picture in cases.items():
        picture.save(tmp_path / name)
        loaded, alpha = read_image(tmp_path / name)
        assert loaded.shape == (40, 60, 3) and loaded.dtype == np.float32, name
        expected = np.asarray(picture.convert("RGB"), np.float32) / 255
        assert np.abs(loaded - expected).max() < 1 / 255 + 1e-6, name
    assert np.array_equal(read_image(tmp_path / "gray.png")[0][..., 0], gray / np.float32(255))


def test_sixteen_bit_images_keep_their_precision(tmp_path: Path) -> None:
    values = RNG.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), values[..., ::-1])
    cv2.imwrite(str(tmp_path / "gray16.png"), values[..., 0])
    rgb, _ = read_image(tmp_path / "rgb16.png")
    gray, _ = read_image(tmp_path / "gray16.png")
    # 8-bit decoding would be off by up to 128/65535; full precision is exact to float32 rounding.
    assert np.abs(rgb - values / 65535).max() < 1e-6
    assert np.abs(gray[..., 0] - values[..., 0] / 65535).max() < 1e-6


def test_input_alpha_is_kept_not_dropped(tmp_path: Path) -> None:
    image, trimap = _scene()
    source_alpha = np.full(trimap.shape, 255, np.uint8)
    source_alpha[:10] = 0  # a transparent strip already cut out of the photo
    path = _save(tmp_path / "rgba.png", np.dstack([image, source_alpha]))
    _, alpha_channel = read_image(path)
    assert alpha_channel is not None and alpha_channel[:10].max() == 0
    alpha = mattekit.predict(path, trimap)
    assert alpha[:10].max() == 0.0, "transparent input pixels must stay transparent"
    assert np.all(alpha[10:][trimap[10:] == FOREGROUND] == 1.0)


def test_exif_orientation_applies_to_image_and_trimap(tmp_path: Path) -> None:
    image, trimap = _scene(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotates 90 degrees clockwise
    Image.fromarray(image).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    Image.fromarray(trimap).save(tmp_path / "trimap.png", exif=exif)
    rotated, _ = read_image(tmp_path / "photo.jpg")
    assert rotated.shape == (50, 30, 3)
    expected = np.rot90(image, k=-1) / 255
    assert np.abs(rotated - expected).mean() < 0.02  # JPEG noise only
    assert np.array_equal(read_trimap(tmp_path / "trimap.png"), np.rot90(trimap, k=-1))
    assert mattekit.predict(tmp_path / "photo.jpg", tmp_path / "trimap.png").shape == (50, 30)


# --- trimap encodings ------------------------------------------------------------------------------


def test_trimap_encodings_all_give_the_canonical_trimap(tmp_path: Path) -> None:
    _, trimap = _scene()
    unknown127 = np.where(trimap == UNKNOWN, 127, trimap).astype(np.uint8)
    labels = (trimap // 127).astype(np.uint8)  # 0, 1, 2
    assert set(np.unique(labels)) == {0, 1, 2}
    floats = trimap.astype(np.float32) / 255
    rgb = np.dstack([trimap] * 3)
    rgba = np.dstack([trimap] * 3 + [np.full_like(trimap, 255)])
    sources: dict[str, object] = {
        "0/128/255 array": trimap,
        "127 unknown": _save(tmp_path / "t127.png", unknown127),
        "label map png": _save(tmp_path / "labels.png", labels),
        "label map array": labels,
        "float array": floats,
        "float tiff": _save(tmp_path / "float.tif", floats, mode="F"),
        "rgb png": _save(tmp_path / "rgb.png", rgb),
        "rgba png": _save(tmp_path / "rgba.png", rgba),
        "palette png": Image.fromarray(trimap).convert("P"),
        "16-bit png": tmp_path / "t16.png",
    }
    cv2.imwrite(str(tmp_path / "t16.png"), trimap.astype(np.uint16) * 257)
    for name, source in sources.items():
        assert np.array_equal(read_trimap(source), trimap), name


def test_noisy_jpeg_trimap_is_quantised(tmp_path: Path, dev_dir: Path) -> None:
    published = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / "GT04.png")
    Image.fromarray(published).save(tmp_path / "trimap.jpg", quality=70)
    noisy = np.asarray(Image.open(tmp_path / "trimap.jpg"))
    assert len(np.unique(noisy)) > 3, "the JPEG must really be noisy for this test to mean anything"
    recovered = read_trimap(tmp_path / "trimap.jpg")
    assert set(np.unique(recovered)) <= {BACKGROUND, UNKNOWN, FOREGROUND}
    # JPEG ringing moves values only next to region borders; the thresholds absorb the rest.
    assert np.mean(recovered == published) > 0.999


def test_published_palette_trimaps_read_as_published(dev_dir: Path) -> None:
    path = dev_dir / "trimap_training_lowres" / "Trimap1" / "GT01.png"
    assert Image.open(path).mode == "P"
    trimap = read_trimap(path)
    assert set(np.unique(trimap)) == {BACKGROUND, UNKNOWN, FOREGROUND}
    assert np.array_equal(trimap, np.asarray(Image.open(path).convert("L")))


# --- degenerate trimaps ----------------------------------------------------------------------------


def test_trimap_without_unknown_returns_the_trimap(tmp_path: Path) -> None:
    image, trimap = _scene()
    binary = np.where(trimap == UNKNOWN, FOREGROUND, trimap).astype(np.uint8)
    alpha = mattekit.predict(image, binary)
    assert np.array_equal(alpha, binary / np.float32(255))


@pytest.mark.parametrize("missing", [FOREGROUND, BACKGROUND])
def test_trimap_missing_a_known_class_still_gives_an_alpha(missing: int) -> None:
    image, trimap = _scene()
    trimap = np.where(trimap == missing, UNKNOWN, trimap).astype(np.uint8)
    alpha = mattekit.predict(image, trimap)
    assert alpha.dtype == np.float32 and np.isfinite(alpha).all()
    # Only one class is known, so the energy minimum is that class everywhere.
    assert np.all(alpha == (1.0 if missing == BACKGROUND else 0.0))


def test_trimap_with_nothing_known_is_a_clear_error() -> None:
    image, trimap = _scene()
    with pytest.raises(MattekitError, match="no pixel as foreground or background"):
        mattekit.predict(image, np.full_like(trimap, UNKNOWN))


# --- bad files -------------------------------------------------------------------------------------


def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    image, trimap = _scene()
    good = _save(tmp_path / "good.png", image)
    small = _save(tmp_path / "small.png", trimap[:20])
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases = [
        ((good, small), "small.png: trimap is 60x20 but the image is 60x40"),
        ((not_image, trimap), "notes.png: not an image file"),
        ((truncated, trimap), "truncated.png: cannot decode"),
        ((tmp_path / "missing.png", trimap), "missing.png: no such file"),
    ]
    for (img, tri), message in cases:
        with pytest.raises(MattekitError, match=message) as info:
            mattekit.predict(img, tri)
        assert "\n" not in str(info.value)
    with pytest.raises(MattekitError, match="good.png: 60x40 is 2,400 pixels, over the limit of 1,000 pixel"):
        mattekit.predict(good, trimap, max_pixels=1000)


def test_api_accepts_paths_pil_images_and_arrays(tmp_path: Path) -> None:
    image, trimap = _scene()
    path = _save(tmp_path / "image.png", image)
    trimap_path = _save(tmp_path / "trimap.png", trimap)
    results = [
        mattekit.predict(path, trimap_path),
        mattekit.predict(str(path), str(trimap_path)),
        mattekit.predict(Image.open(path), Image.open(trimap_path)),
        mattekit.predict(image, trimap),
        mattekit.predict(image.astype(np.float32) / 255, trimap),
    ]
    for alpha in results:
        assert alpha.dtype == np.float32 and alpha.shape == (40, 60)
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0
        np.testing.assert_allclose(alpha, results[0], atol=1e-5)
