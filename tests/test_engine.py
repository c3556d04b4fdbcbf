"""The high-resolution engine: tiling geometry, blending, skipping, planning, and tiled vs whole output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mattekit.cli import main
from mattekit.engine import ContextRequest, TileContext, TileOptions, parse_memory, plan
from mattekit.engine.tiling import axis, grid, reflect_index
from mattekit.errors import MattekitError
from mattekit.io import read_gray, write_png
from mattekit.models import Requirements, create_model
from mattekit.models.base import MattingModel
from mattekit.predictor import MattingInput, load_input, run_model
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN

TILED = TileOptions(tile="on", tile_size=64, overlap=16)


class PerPixel(MattingModel):
    """Alpha from each pixel alone (trimap-free), padded like GCA: tiling must not change it at all."""

    requirements = Requirements(trimap=False, pad_multiple=32, pad_border=32)

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        self.calls.append(images.shape)
        return images @ np.array([0.2, 0.5, 0.3], dtype=np.float32)


class Constant(PerPixel):
    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        self.calls.append(images.shape)
        return np.full(images.shape[:3], 0.5, dtype=np.float32)


class TrimapPerPixel(PerPixel):
    """Needs a trimap; unknown pixels get the per-pixel value."""

    requirements = Requirements(trimap=True, pad_multiple=8)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def whole_and_tiled(model: MattingModel, data: MattingInput, tiling: TileOptions) -> tuple[np.ndarray, ...]:
    return run_model(model, data, TileOptions(tile="off")), run_model(model, data, tiling)


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(200, 300, 64, 16), (130, 97, 50, 7), (1, 300, 64, 16), (300, 1, 64, 16), (1, 1, 64, 0),
     (33, 65, 512, 64), (100, 100, 40, 19)],
)
def test_per_pixel_model_is_identical_tiled_and_whole(
    height: int, width: int, tile: int, overlap: int
) -> None:
    data = MattingInput(random_image(height, width), None)
    whole, tiled = whole_and_tiled(PerPixel(), data, TileOptions(tile="on", tile_size=tile, overlap=overlap))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("height", "width"), [(200, 300), (257, 129), (64, 65), (65, 300)])
def test_constant_model_shows_no_seams(height: int, width: int) -> None:
    model = Constant()
    alpha = run_model(model, MattingInput(random_image(height, width), None), TILED)
    np.testing.assert_allclose(alpha, 0.5, rtol=0, atol=1e-6)  # borders and corners included
    assert sum(shape[0] for shape in model.calls) > 1  # several tiles


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(1000, 128, 32), (129, 64, 63), (160, 100, 50), (7, 3, 2)]
)
def test_blending_weights_sum_to_one(length: int, tile: int, overlap: int) -> None:
    tiles = grid(length, length + 3, tile, overlap, None)
    total = np.zeros((length, length + 3))
    for t in tiles.run:
        total[t.top : t.bottom, t.left : t.right] += tiles.weights(t)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)


def test_tiles_cover_the_axis_with_the_overlap_and_stay_inside() -> None:
    rows = axis(1000, 128, 32)
    assert rows.starts[0] == 0 and rows.starts[-1] + rows.size == 1000
    gaps = np.diff(rows.starts)
    assert (rows.size - gaps >= 32).all()  # at least the requested overlap
    assert axis(50, 128, 32).starts == (0,) and axis(50, 128, 32).size == 50


def test_the_blend_ramps_linearly_with_the_distance_to_the_tile_edge() -> None:
    rows = axis(192, 128, 64)  # two tiles overlapping on 64..127
    assert rows.starts == (0, 64)
    ramp = rows.ramps[1][:64]
    np.testing.assert_allclose(ramp, np.arange(1, 65) / 65, atol=1e-6)
    np.testing.assert_allclose(rows.ramps[0][:64], 1.0)  # no neighbour before: no ramp at the border


def test_reflect_index_matches_numpy_reflect_padding() -> None:
    for length in (1, 2, 5, 33):
        values = np.arange(length)
        padded = np.pad(values, (40, 45), mode="reflect")
        np.testing.assert_array_equal(values[reflect_index(-40, length + 45, length)], padded)


def band_trimap(height: int, width: int, column: int, half_width: int) -> np.ndarray:
    """Background left of ``column``, foreground right of it, unknown in a vertical band around it."""
    trimap = np.full((height, width), BACKGROUND, dtype=np.uint8)
    trimap[:, column:] = FOREGROUND
    trimap[:, column - half_width : column + half_width] = UNKNOWN
    return trimap


def test_tiles_without_unknown_pixels_are_not_run() -> None:
    trimap = band_trimap(256, 640, 40, 8)
    model = TrimapPerPixel()
    tiled = run_model(model, MattingInput(random_image(256, 640), trimap), TILED)
    tiles = grid(256, 640, 64, 16, trimap)
    run_cols = {t.col for t in tiles.run}
    assert run_cols == {0} and len(tiles.skipped) == len(tiles.run) * (len(tiles.cols.starts) - 1)
    planned = plan(model, 256, 640, trimap, TILED).grid
    assert planned is not None and sum(shape[0] for shape in model.calls) == len(planned.solves)
    whole = run_model(TrimapPerPixel(), MattingInput(random_image(256, 640), trimap), TileOptions(tile="off"))
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_windows_grow_around_the_unknown_pixels_until_both_known_classes_are_in() -> None:
    trimap = np.full((300, 300), BACKGROUND, dtype=np.uint8)
    trimap[:, 240:] = FOREGROUND  # foreground 60 px wide on the right
    trimap[140:150, 20:30] = UNKNOWN  # a small unknown patch far from it, in the first column of tiles
    tiles = grid(300, 300, 128, 16, trimap, margin=16)
    assert tiles.run and not tiles.short
    for tile in tiles.run:
        top, bottom, left, right = tile.window
        core_unknown = trimap[tile.top : tile.bottom, tile.left : tile.right] == UNKNOWN
        ys, xs = np.nonzero(core_unknown)
        assert tile.focus == (tile.top + ys.min(), tile.top + ys.max() + 1,
                              tile.left + xs.min(), tile.left + xs.max() + 1)
        assert top <= tile.focus[0] - 16 or top == 0
        assert bottom >= tile.focus[1] + 16 and right >= tile.focus[3] + 16 and left == 0
        assert top % 32 == 0 and left % 32 == 0  # aligned like the whole image
        window = trimap[top:bottom, left:right]
        assert (window == FOREGROUND).mean() >= 0.05 and (window == BACKGROUND).mean() >= 0.05
    model = TrimapPerPixel()
    data = MattingInput(random_image(300, 300), trimap)
    alpha = run_model(model, data, TileOptions(tile="on", tile_size=128, overlap=16))
    assert all(shape[2] > 240 for shape in model.calls)  # the windows reach the foreground
    np.testing.assert_allclose(alpha, run_model(TrimapPerPixel(), data, TileOptions(tile="off")), atol=1e-6)


def test_a_growth_step_the_alignment_absorbs_does_not_stop_a_window_short() -> None:
    trimap = np.full((300, 300), UNKNOWN, dtype=np.uint8)
    trimap[:, :12], trimap[:, -12:] = FOREGROUND, BACKGROUND
    # This corner tile's focus grown by 16 and by 32 px is the same window (its start aligned down to
    # 192, its end the image's); grown on, it reaches the foreground 290 px away.
    tiles = grid(300, 300, 64, 16, trimap, margin=16)
    corner = [t for t in tiles.run if t.focus[1] == 300 and t.focus[3] == 288]
    assert corner and not tiles.short
    assert all(t.window[2] == 0 for t in corner)


class HeldPerPixel(TrimapPerPixel):
    """A per-pixel model solved in two passes with a held ring, counting its held solves."""

    held_ring, window_passes = 2, 2

    def infer_held(self, image: np.ndarray, known: np.ndarray, value: np.ndarray) -> np.ndarray:
        self.calls.append(image.shape)
        return np.where(known, value, image @ np.array([0.2, 0.5, 0.3], dtype=np.float32))


def inside(box: tuple[int, ...], other: tuple[int, ...]) -> bool:
    return other[0] <= box[0] and box[1] <= other[1] and other[2] <= box[2] and box[3] <= other[3]


def test_tiles_whose_windows_lie_in_a_larger_window_read_its_solve() -> None:
    trimap = np.full((300, 300), UNKNOWN, dtype=np.uint8)
    trimap[:, :12], trimap[:, -12:] = FOREGROUND, BACKGROUND  # the known classes only at the far edges
    data = MattingInput(random_image(300, 300), trimap)
    options = TileOptions(tile="on", tile_size=64, overlap=16)
    tiles = plan(HeldPerPixel(), 300, 300, trimap, options).grid
    assert tiles is not None
    short = set(tiles.short)
    windows = {t.window for t in tiles.run if t not in short}
    largest = {w for w in windows if not any(w != v and inside(w, v) for v in windows)}
    solves = len(largest) + len(short)
    assert len(tiles.solves) == solves < len(tiles.run) / 3  # windows grown across the image
    for solved, group in tiles.solves.items():
        assert solved in group and all(inside(t.window, solved.window) for t in group)
        assert solved not in short or group == (solved,)  # a guided window serves its own focus only
    model = HeldPerPixel()
    alpha = run_model(model, data, options)
    held_solves = solves - len(short)  # a short window keeps its guided answer in the held pass
    guide = 1 if short else 0  # one coarse whole-image call guides the short windows
    assert sum(shape[0] if len(shape) == 4 else 1 for shape in model.calls) == guide + solves + held_solves
    np.testing.assert_allclose(alpha, run_model(HeldPerPixel(), data, TileOptions(tile="off")), atol=1e-6)


def test_windows_stop_growing_at_the_largest_side_that_fits() -> None:
    trimap = np.full((300, 300), BACKGROUND, dtype=np.uint8)
    trimap[:, 240:] = FOREGROUND
    trimap[140:150, 20:30] = UNKNOWN
    tiles = grid(300, 300, 128, 16, trimap, margin=16, max_side=100)
    assert tiles.short == tiles.run  # no foreground within 100 px: these tiles get the coarse guide
    for tile in tiles.run:
        top, bottom, left, right = tile.window
        assert bottom - top <= 100 + 31 and right - left <= 100 + 31  # plus the alignment


def test_known_regions_equal_the_trimap_and_nothing_runs_without_unknown() -> None:
    trimap = np.full((300, 200), BACKGROUND, dtype=np.uint8)
    trimap[100:, :] = FOREGROUND
    model = TrimapPerPixel()
    alpha = run_model(model, MattingInput(random_image(300, 200), trimap), TILED)
    assert model.calls == []
    np.testing.assert_array_equal(alpha, trimap / 255.0)


def test_progress_reports_every_batch() -> None:
    seen: list[tuple[int, int]] = []
    data = MattingInput(random_image(200, 300), None)
    options = TileOptions(tile="on", tile_size=64, overlap=16, batch=4)
    run_model(PerPixel(), data, options, lambda done, total: seen.append((done, total)))
    total = seen[-1][1]
    assert [done for done, _ in seen] == [*range(4, total, 4), total]


def test_batches_hold_several_tiles() -> None:
    model = PerPixel()
    data = MattingInput(random_image(200, 300), None)
    run_model(model, data, TileOptions(tile="on", tile_size=64, batch=5))
    assert model.calls[0][0] == 5 and model.calls[0][1:3] == (128, 128)  # 64 + 2 x 32 border, multiple of 32


class Hungry(PerPixel):
    """Claims 1 KB per pixel, so that the planner's choices are predictable."""

    def bytes_per_pixel(self, unknown: float = 1.0) -> float:
        return 1000


def test_auto_runs_whole_images_that_fit_and_tiles_the_others() -> None:
    model = Hungry()
    small = plan(model, 100, 100, None, TileOptions(max_memory="1GB"))
    assert small.grid is None
    big = plan(model, 4000, 4000, None, TileOptions(max_memory="1GB"))
    assert big.grid is not None and big.estimated_peak <= 1e9
    assert big.estimated_peak >= 1000 * (big.tile_size + 64) ** 2
    cramped = plan(model, 4000, 4000, None, TileOptions(max_memory="0.6GB"))
    assert cramped.grid is not None and cramped.tile_size < big.tile_size and cramped.estimated_peak <= 0.6e9
    assert "skipped" in "\n".join(big.describe())


def test_context_models_are_always_tiled_and_get_a_pool() -> None:
    pools: list[TileContext] = []

    class WithContext(PerPixel):
        context = ContextRequest(pool=3)

        def infer_context(
            self, images: np.ndarray, trimaps: np.ndarray | None, context: TileContext
        ) -> np.ndarray:
            pools.append(context)
            return self.infer(images, trimaps)

    data = MattingInput(random_image(200, 300), None)
    alpha = run_model(WithContext(), data, TileOptions(tile_size=64, overlap=16, batch=2))
    np.testing.assert_allclose(alpha, run_model(PerPixel(), data, TileOptions(tile="off")), atol=1e-6)
    assert pools and all(p.images.shape == (3, 128, 128, 3) and p.boxes.shape == (3, 4) for p in pools)
    assert pools[0].query_boxes.shape == (2, 4)


@pytest.mark.parametrize(
    ("text", "size"), [("6GB", 6 * 10**9), ("6GiB", 6 * 2**30), ("6g", 6 * 2**30), ("512 MB", 512 * 10**6),
                       ("1.5gb", 15 * 10**8), ("1000", 1000), (4096, 4096)],
)
def test_parse_memory(text: str | int, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "six GB", "6 parsecs", "0GB", "-1GB", "6GB6"])
def test_bad_memory_sizes_are_one_line_user_errors(text: str) -> None:
    with pytest.raises(MattekitError) as error:
        parse_memory(text)
    assert "\n" not in str(error.value) and "--max-memory" in str(error.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (TileOptions(tile="sometimes"), "--tile"),
        (TileOptions(tile="on", tile_size=64, overlap=64), "--overlap"),
        (TileOptions(tile="on", tile_size=0), "--tile-size"),
        (TileOptions(overlap=512), "--overlap"),
        (TileOptions(overlap=-1), "--overlap"),
        (TileOptions(tile="on", batch=0), "--batch"),
        (TileOptions(max_memory="1MB"), "--max-memory"),
    ],
)
def test_bad_tiling_options_are_one_line_user_errors(options: TileOptions, words: str) -> None:
    with pytest.raises(MattekitError) as error:
        plan(Hungry(), 4000, 4000, None, options)
    assert "\n" not in str(error.value) and words in str(error.value)



@pytest.mark.slow
def test_gca_tiled_stays_close_to_whole_image(gca: MattingModel, dev_dir: Path) -> None:
    data = load_input(dev_dir / "input_training_lowres" / "GT01.png",
                      dev_dir / "trimap_training_lowres" / "Trimap1" / "GT01.png")
    assert data.trimap is not None
    size = (352, 224)  # not multiples of 32; 2 x 2 tiles of 192 px
    small = MattingInput(cv2.resize(data.image, size, interpolation=cv2.INTER_AREA),
                         cv2.resize(data.trimap, size, interpolation=cv2.INTER_NEAREST))
    whole, tiled = whole_and_tiled(gca, small, TileOptions(tile="on", tile_size=192, overlap=32))
    unknown = small.trimap == UNKNOWN
    difference = np.abs(tiled - whole)[unknown]
    print(f"GCA tiled vs whole over {unknown.sum()} unknown px: mean {difference.mean():.2e}, "
          f"max {difference.max():.2e}, spread of the whole-image alpha {whole[unknown].std():.2e}")
    # Measured: mean 1.3e-4, max 7.2e-4, while the alpha varies by 5e-2 (std); a crop or blending error
    # would show at that scale.
    assert difference.mean() < 1e-3 and difference.max() < 1e-2
    np.testing.assert_array_equal(tiled[~unknown], small.trimap[~unknown] / 255.0)


def _photo_pair(dev_dir: Path, folder: Path) -> tuple[Path, Path]:
    """GT01 and its Trimap1, 400 px wide, as PNGs in ``folder``."""
    data = load_input(dev_dir / "input_training_lowres" / "GT01.png",
                      dev_dir / "trimap_training_lowres" / "Trimap1" / "GT01.png")
    assert data.trimap is not None
    size = (400, 248)
    image, trimap = folder / "GT01.png", folder / "GT01_trimap.png"
    write_png(image, cv2.resize(data.image, size, interpolation=cv2.INTER_AREA))
    write_png(trimap, cv2.resize(data.trimap, size, interpolation=cv2.INTER_NEAREST) / 255.0)
    return image, trimap


def test_cli_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, trimap = _photo_pair(dev_dir, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(image), "-t", str(trimap), "-o", str(out), "--dry-run", "--tile-size", "128"]
    assert main([*args, "--tile", "on"]) == 0
    printed = capsys.readouterr().out
    assert "tiles of 128 px, overlap 32 px" in printed and "skipped" in printed and "peak memory" in printed
    assert main([*args, "--max-memory", "10GB"]) == 0
    assert "one whole-image pass" in capsys.readouterr().out
    assert not out.exists()


def test_cli_tiled_output_matches_the_api(tmp_path: Path, dev_dir: Path) -> None:
    image, trimap = _photo_pair(dev_dir, tmp_path)
    options = ["-m", "closed-form", "--tile", "on", "--tile-size", "128", "--overlap", "16", "--batch", "2"]
    assert main(["predict", str(image), "-t", str(trimap), "-o", str(tmp_path), *options]) == 0
    expected = run_model(create_model("closed-form"), load_input(image, trimap),
                         TileOptions(tile="on", tile_size=128, overlap=16, batch=2))
    np.testing.assert_allclose(read_gray(tmp_path / "GT01_alpha.png"), expected, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--max-memory", "6 parsecs"], "--max-memory"),
        (["--tile", "maybe"], "--tile"),
        (["--overlap", "600"], "--overlap"),
        (["--batch", "0"], "--batch"),
        (["--tile-size", "0"], "--tile-size"),
    ],
)
def test_cli_bad_tiling_options_are_one_line_errors(
    tmp_path: Path, dev_dir: Path, capsys: pytest.CaptureFixture[str], option: list[str], words: str
) -> None:
    image, trimap = _photo_pair(dev_dir, tmp_path)
    assert main(["predict", str(image), "-t", str(trimap), "-o", str(tmp_path), *option]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and words in error and "Traceback" not in error
