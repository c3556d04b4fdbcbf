"""The training data chain: layouts, composition, generated trimaps, reproducible batches."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from train_tiny import make_composition, make_validation  # noqa: E402  (tests/ is on sys.path under pytest)

from mattekit.errors import MattekitError
from mattekit.io import read_image, read_image_uint8
from mattekit.train import load_recipe
from mattekit.train.data import (
    Resampler,
    Sample,
    StreamSampler,
    TrainingSet,
    affine_matrix,
    crop_around_unknown,
    detect_layout,
    find_source,
    generate_trimap,
    random_trimap,
    sample_rng,
    seed_worker,
    serial_opencv,
    standard_sample,
)
from mattekit.train.task import get_task
from mattekit.trimap import FOREGROUND, UNKNOWN


@pytest.fixture(scope="module")
def composition_dir(dev_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_composition(dev_dir, tmp_path_factory.mktemp("composition"))


def _dataset(root: Path, *settings: str) -> TrainingSet:
    recipe = load_recipe("gca", ["crop_size=64", *settings])
    return TrainingSet(find_source(root, recipe.data), recipe, get_task("gca")(recipe))


def test_layouts_are_detected_and_mistakes_named(composition_dir: Path, tmp_path: Path) -> None:
    assert detect_layout(composition_dir) == "composition"
    source = find_source(composition_dir, load_recipe("gca").data)
    assert len(source.foregrounds) == 4 and len(source.backgrounds) == 3 and len(source) == 3
    (tmp_path / "image").mkdir()
    (tmp_path / "alpha").mkdir()
    assert detect_layout(tmp_path) == "composited"
    cv2.imwrite(str(tmp_path / "image" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(MattekitError, match="a.png: no file of that name"):
        find_source(tmp_path, load_recipe("gca").data)
    with pytest.raises(MattekitError, match="unknown training layout"):
        detect_layout(tmp_path / "image")


def test_composite_is_alpha_f_plus_one_minus_alpha_b_exactly(composition_dir: Path) -> None:
    dataset = _dataset(composition_dir)
    for index in range(3):
        rng = sample_rng(dataset.recipe.seed, 0, index)
        loaded = dataset.load(index, rng)
        # colours stay 8-bit through the geometric stages
        assert loaded.fg.dtype == loaded.bg.dtype == np.uint8 and loaded.alpha.dtype == np.float32
        fields = standard_sample(loaded, dataset.recipe, rng, layers=True)
        a, f, b = fields["alpha"], fields["fg"], fields["bg"]
        assert fields["image"].shape == (3, 64, 64) and a.shape == (1, 64, 64)
        np.testing.assert_array_equal(fields["image"], (a * f + (1 - a) * b).astype(np.float32))
        assert 0 < (fields["trimap"] == UNKNOWN).mean() < 1  # the crop is centred on the unknown region
        # GCA's batch is the same sample without the layers its loss does not use
        batch = dataset[(0, index)]
        assert sorted(batch) == ["alpha", "image", "trimap"]
        for key in batch:
            np.testing.assert_array_equal(batch[key], fields[key])


def test_8bit_reader_matches_the_float_reader(tmp_path: Path) -> None:
    """The chain's uint8 reader (OpenCV for 8-bit PNG/JPEG) gives the float reader's codes, EXIF applied."""
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)).resize((90, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: stored landscape, shown portrait
    picture.save(tmp_path / "a.jpg", exif=exif)
    picture.convert("P").save(tmp_path / "b.png")
    picture.convert("LA").save(tmp_path / "c.png")
    names = ["a.jpg", "b.png", "c.png"]
    for orientation in range(1, 9):  # OpenCV applies a PNG's EXIF orientation as mattekit's reader does
        exif[0x0112] = orientation
        picture.save(tmp_path / f"o{orientation}.png", exif=exif)
        names.append(f"o{orientation}.png")
    for name in names:
        codes = read_image_uint8(tmp_path / name)
        assert codes.dtype == np.uint8 and codes.shape[2] == 3
        np.testing.assert_array_equal(codes, np.rint(read_image(tmp_path / name)[0] * 255))
    assert read_image_uint8(tmp_path / "a.jpg").shape == (90, 60, 3)


@pytest.mark.parametrize(("fg_size", "bg_size"), [(1, 1), (5, 9), (29, 29), (15, 3)])
def test_generated_trimap_band_has_the_documented_width(fg_size: int, bg_size: int) -> None:
    # A straight vertical edge: background left of column 50, foreground from it, a 1-px soft column.
    alpha = np.zeros((40, 100), np.float32)
    alpha[:, 50:] = 1.0
    alpha[:, 50] = 0.5
    trimap = generate_trimap(alpha, fg_size, bg_size)
    unknown_columns = np.flatnonzero(trimap[20] == UNKNOWN)
    # An odd k x k erosion eats (k - 1) / 2 pixels of each region, plus the soft column itself.
    assert len(unknown_columns) == (fg_size - 1) // 2 + (bg_size - 1) // 2 + 1
    assert np.all(trimap[:, 51 + (fg_size - 1) // 2 :] == FOREGROUND)


def test_random_trimap_draws_both_ends_of_the_erosion_range() -> None:
    alpha = np.zeros((40, 100), np.float32)
    alpha[:, 50:] = 1.0
    widths = set()
    for seed in range(300):
        trimap = random_trimap(Sample(alpha=alpha), (1, 29), np.random.default_rng(seed)).trimap
        widths.add(int((trimap[20] == UNKNOWN).sum()))
    # kernels 1..29 on each side: bands from 0 (1 and 1 or 2) to 28 (29 and 29) pixels
    assert min(widths) == 0 and max(widths) == 28


def test_affine_matrix_is_the_identity_without_transform_and_flips_about_the_centre() -> None:
    np.testing.assert_allclose(
        affine_matrix(10, 20, 0, (1, 1), 0, (1, 1)), [[1, 0, 0], [0, 1, 0]], atol=1e-12
    )
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    flipped = cv2.warpAffine(
        image,
        affine_matrix(3, 4, 0, (1, 1), 0, (-1, 1)),
        (4, 3),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    # about the official centre c = w/2 + 0.5 (half a pixel right of the true one), column x reads 2c - x
    for x in range(4):
        expected = image[:, 5 - x] if 5 - x < 4 else np.zeros(3)
        np.testing.assert_array_equal(flipped[:, x], expected)


def test_crop_is_centred_on_an_unknown_pixel() -> None:
    alpha = np.zeros((300, 300), np.float32)
    alpha[100:200, 100:200] = 1
    trimap = generate_trimap(alpha, 9, 9)
    sample = Sample(alpha=alpha, image=np.zeros((300, 300, 3), np.float32), trimap=trimap)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        crop = crop_around_unknown(sample, 64, rng, Resampler("official", rng))
        assert crop.trimap.shape == (64, 64)
        # the cell drawn is unknown at the 1/4 grid, so the crop's centre lies within 4 px of the band
        centre = crop.trimap[28:36, 28:36]
        assert (centre == UNKNOWN).any()


def test_same_seed_same_batches_whatever_the_workers(composition_dir: Path) -> None:
    dataset = _dataset(composition_dir, 'data.interpolation="random"')

    def batches(workers: int, start: int = 0) -> list[dict[str, torch.Tensor]]:
        loader = DataLoader(
            dataset,
            batch_size=2,
            sampler=StreamSampler(len(dataset), 0, start=start),
            num_workers=workers,
            worker_init_fn=seed_worker,
        )
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == 3:
                return out
        raise AssertionError("the stream ended")

    serial_opencv()  # as the trainer does before forking workers
    single, parallel, resumed = batches(0), batches(2), batches(0, start=2)
    for a, b in zip(single, parallel, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    for a, b in zip(single[1:], resumed[:2], strict=True):  # starting at sample 2 = the stream from batch 1
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
    other = _dataset(composition_dir, "seed=1")[(0, 0)]
    assert not np.array_equal(other["image"], dataset[(0, 0)]["image"])


def test_stream_sampler_shards_every_epoch_like_distributed_sampler() -> None:
    whole = StreamSampler(7, seed=3)
    shards = [StreamSampler(7, seed=3, rank=r, world=2) for r in range(2)]
    first = [iter(s) for s in shards]
    taken = [next(first[r]) for _ in range(4) for r in range(2)]
    # each process gets ceil(7 / 2) = 4 per epoch; together they cover the epoch (one index repeated)
    assert {index for _, index in taken} == set(range(7))
    assert all(epoch == 0 for epoch, _ in taken)
    assert next(first[0])[0] == 1
    order = whole.permutation(0)
    assert sorted(order) == list(range(7)) and whole.permutation(1) != order
    assert math.ceil(7 / 2) == shards[0].per_rank


def test_composited_layout_keeps_its_own_trimap(dev_dir: Path, tmp_path: Path) -> None:
    """image/ alpha/ trimap/: no composition, and the given trimap is cropped with the image, not remade."""
    make_validation(dev_dir, tmp_path, names=("GT03", "GT05"), size=(120, 90))
    recipe = load_recipe("gca", ["crop_size=64", "data.hue=0"])  # no jitter: pixels stay comparable
    source = find_source(tmp_path, recipe.data)
    assert source.layout == "composited" and len(source.trimaps) == 2
    fields = TrainingSet(source, recipe, get_task("gca")(recipe))[(0, 0)]
    assert set(fields) == {"image", "alpha", "trimap"}
    stem = source.images[0].stem
    image = cv2.cvtColor(cv2.imread(str(tmp_path / "image" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
    trimap = cv2.imread(str(tmp_path / "trimap" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    windows = np.lib.stride_tricks.sliding_window_view(trimap, (64, 64))
    found = [
        (top, left)
        for top, left in np.argwhere((windows == fields["trimap"][0]).all(axis=(2, 3)))
        if np.array_equal(
            image[top : top + 64, left : left + 64], np.rint(fields["image"] * 255).transpose(1, 2, 0)
        )
    ]
    assert found, "the crop is not a window of the given image and trimap"
