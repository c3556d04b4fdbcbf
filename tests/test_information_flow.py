"""Information-flow matting and trimap trimming (issue 16): the pieces against direct computations, the
whole solve against a direct sparse solve and a synthetic composite, degenerate inputs, and trimming
against ground truth."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from mattekit.cli import main
from mattekit.engine import TileOptions
from mattekit.errors import MattekitError
from mattekit.evaluate import read_alpha
from mattekit.io import read_gray, read_image
from mattekit.models import create_model
from mattekit.models.information_flow import (
    LLE_CONDITIONING,
    FlowParameters,
    InformationFlowMatting,
    WholeImageFlows,
    _Problem,
    build_system,
    information_flow_alpha,
    lle_weights,
    local_laplacian,
    solve,
)
from mattekit.predictor import MattingInput, load_input, run_model
from mattekit.trimap import (
    BACKGROUND,
    EDGE_COLOR_FROM,
    EDGE_COLOR_TO,
    EDGE_STEPS,
    FOREGROUND,
    UNKNOWN,
    read_trimap,
    trim,
    trim_edges,
    trim_patches,
)


def _crop(dev_dir: Path, name: str, trimap_set: str = "Trimap1", size: int = 96):
    """A real image, trimap and ground truth cropped where foreground, background and unknown are most
    evenly mixed (on a grid of window positions), so that small solves still see all three."""
    trimap = read_trimap(dev_dir / "trimap_training_lowres" / trimap_set / f"{name}.png")
    image, _ = read_image(dev_dir / "input_training_lowres" / f"{name}.png")
    truth = read_alpha(dev_dir / "gt_training_lowres" / f"{name}.png") / 255.0

    def balance(top: int, left: int) -> int:
        part = trimap[top : top + size, left : left + size]
        return min(int((part == value).sum()) for value in (BACKGROUND, UNKNOWN, FOREGROUND))

    height, width = trimap.shape
    grid = [(t, x) for t in range(0, height - size, 16) for x in range(0, width - size, 16)]
    top, left = max(grid, key=lambda corner: balance(*corner))
    window = np.s_[top : top + size, left : left + size]
    return image[window], trimap[window], truth[window]


def test_lle_weights_equal_the_direct_solve() -> None:
    """The rank-3 (Woodbury) solve gives the weights of the K×K regularised Gram system, summing to one."""
    rng = np.random.default_rng(0)
    center = rng.random((50, 3))
    neighbors = rng.random((50, 20, 3))
    weights = lle_weights(center, neighbors)
    for p in range(50):
        z = neighbors[p] - center[p]
        direct = np.linalg.solve(z @ z.T + LLE_CONDITIONING * np.eye(20), np.ones(20))
        assert np.allclose(weights[p], direct / direct.sum(), atol=1e-9)
    assert np.allclose(weights.sum(axis=1), 1.0)
    # A colour inside its neighbours' hull is rebuilt from them (up to the conditioning term).
    inside = neighbors.mean(axis=1)
    rebuilt = np.einsum("nk,nkc->nc", lle_weights(inside, neighbors), neighbors)
    assert np.abs(rebuilt - inside).max() < 0.02


def test_local_flow_equals_pymatting_matting_laplacian(dev_dir: Path) -> None:
    """The unknown rows of the local flow (mattekit's kernel) are pymatting's closed-form matting Laplacian
    restricted to the unknowns, and its right-hand side is that Laplacian times the known alphas; the
    crop touches the image border, where windows are cut."""
    from pymatting import cf_laplacian

    image, trimap, _ = _crop(dev_dir, "GT05", size=48)
    image, trimap = image[:, :40], trimap[:, :40].copy()
    trimap[:, 0] = UNKNOWN  # unknown pixels on the crop's border
    problem = _Problem(image, trimap)
    matrix, fixed = local_laplacian(image, problem, 1e-6)
    reference = cf_laplacian(image.astype(np.float64), epsilon=1e-6, radius=1).tocsr()[problem.unknown]
    known = np.flatnonzero(trimap.ravel() != UNKNOWN)
    assert np.abs(matrix.toarray() - reference[:, problem.unknown].toarray()).max() < 1e-9  # rounding
    assert np.abs(fixed - reference[:, known] @ problem.known_alpha[known]).max() < 1e-9


def test_conjugate_gradient_matches_a_direct_solve(dev_dir: Path) -> None:
    image, trimap, _ = _crop(dev_dir, "GT05", size=48)
    matrix, rhs, start = build_system(image, trimap, FlowParameters())
    assert abs(matrix - matrix.T).max() < 1e-9  # symmetric, as conjugate gradient needs
    direct = spla.spsolve(matrix.tocsc(), rhs)
    for preconditioner in ("ichol", "jacobi"):
        assert np.abs(solve(matrix, rhs, start, preconditioner) - direct).max() < 2e-3


def test_windows_take_the_whole_image_s_flows(dev_dir: Path) -> None:
    """A window solve (the engine's tiles) keeps the whole image's K-to-U and intra-U flows and holds the
    unknown pixels outside it fixed: on the whole image as its own window it builds the whole image's
    system, and a smaller window's intra-U neighbours are the whole image's, those outside it held at
    their K-to-U estimates, or at the previous pass's alpha when there is one."""
    image, trimap, _ = _crop(dev_dir, "GT05", size=64)
    hints = trim_edges(image, trimap)
    params = FlowParameters()
    flows = WholeImageFlows(image, trimap, params, "ichol", hints)
    everyone = np.arange(int((trimap == UNKNOWN).sum()))
    whole = build_system(image, trimap, params, hints)
    window = build_system(image, trimap, params, window=flows._window(everyone, flows.estimate))
    assert abs(whole[0] - window[0]).max() < 1e-12
    assert np.abs(whole[1] - window[1]).max() < 1e-12 and np.array_equal(whole[2], window[2])
    solved = flows.solve((0, 64, 0, 64))
    assert np.array_equal(solved, information_flow_alpha(image, trimap, params, hints=hints))
    # The left half: its unknowns' intra-U rows are the whole image's affinities, and those to unknowns
    # in the right half pull towards the values held there.
    columns = np.nonzero(trimap == UNKNOWN)[1]
    left, right = everyone[columns < 32], everyone[columns >= 32]
    affinities = flows.affinities[left]
    assert affinities[:, right].nnz > 0  # some neighbours lie outside the window
    for held in (flows.estimate, flows._held(solved)):
        part = flows._window(left, held)
        assert np.allclose(part.intra.diagonal(), np.asarray(affinities.sum(axis=1)).ravel())
        assert np.allclose(part.intra_outside, affinities[:, right] @ held[right])
        assert np.array_equal(part.estimate, flows.estimate[left])
    assert np.array_equal(flows._held(solved), solved[trimap == UNKNOWN])


def test_recovers_a_synthetic_composite() -> None:
    """Two flat colours mixed by a smooth ramp: the colour-mixture flow alone pins every alpha."""
    height, width = 40, 60
    alpha = np.clip((np.arange(width) - 20) / 20, 0, 1)[None, :].repeat(height, axis=0)
    fg, bg = np.array([0.9, 0.3, 0.1]), np.array([0.1, 0.2, 0.7])
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
    trimap = np.full((height, width), UNKNOWN, np.uint8)
    trimap[:, :15], trimap[:, 45:] = BACKGROUND, FOREGROUND
    result = information_flow_alpha(image, trimap)
    assert np.abs(result - alpha).max() < 0.02


def test_quality_on_a_real_crop(dev_dir: Path) -> None:
    """Much closer to the ground truth than a flat guess, in the unknown region of a real photo."""
    image, trimap, truth = _crop(dev_dir, "GT02", size=128)
    unknown = trimap == UNKNOWN
    error = np.abs(information_flow_alpha(image, trimap) - truth)[unknown].mean()
    assert error < 0.25 * np.abs(0.5 - truth[unknown]).mean()


@pytest.mark.parametrize(
    ("fill", "expected"), [(BACKGROUND, 0.0), (FOREGROUND, 1.0)], ids=["only-background", "only-foreground"]
)
def test_one_known_class_gives_that_class(fill: int, expected: float) -> None:
    image = np.random.default_rng(1).random((20, 20, 3)).astype(np.float32)
    trimap = np.full((20, 20), fill, np.uint8)
    trimap[5:15, 5:15] = UNKNOWN
    assert np.all(information_flow_alpha(image, trimap)[trimap == UNKNOWN] == expected)


def test_no_known_pixel_is_a_user_error() -> None:
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(MattekitError, match="no pixel as foreground or background"):
        information_flow_alpha(image, np.full((8, 8), UNKNOWN, np.uint8))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 5), (7, 4)])
def test_tiny_images(shape: tuple[int, int]) -> None:
    """Fewer pixels than neighbours asked for: every flow takes what there is, no exception."""
    rng = np.random.default_rng(2)
    image = rng.random((*shape, 3)).astype(np.float32)
    trimap = np.full(shape, UNKNOWN, np.uint8).ravel()
    trimap[0], trimap[-1] = FOREGROUND, BACKGROUND
    if trimap.size == 1:
        trimap[0] = UNKNOWN
        with pytest.raises(MattekitError):
            information_flow_alpha(image, trimap.reshape(shape))
        return
    alpha = information_flow_alpha(image, trimap.reshape(shape))
    assert alpha.shape == shape and np.all((alpha >= 0) & (alpha <= 1)) and np.isfinite(alpha).all()


def test_one_pixel_wide_band_is_sensible(dev_dir: Path, capsys) -> None:
    """A 1-px unknown line between foreground and background lands between them, with nothing printed."""
    image, _, truth = _crop(dev_dir, "GT05", size=64)
    trimap = np.where(truth > 0.5, FOREGROUND, BACKGROUND).astype(np.uint8)
    rows = np.arange(64)
    cols = np.argmax(truth > 0.5, axis=1)
    band = cols > 0
    trimap[rows[band], cols[band]] = UNKNOWN
    alpha = information_flow_alpha(image, trimap)
    assert np.all((alpha >= 0) & (alpha <= 1))
    assert np.abs(alpha - truth)[trimap == UNKNOWN].mean() < 0.35
    assert capsys.readouterr().out == ""


def test_registered_model_runs_a_batch(dev_dir: Path) -> None:
    image, trimap, _ = _crop(dev_dir, "GT05", size=48)
    model = create_model("information-flow")
    batch = model.infer(np.stack([image, image[::-1]]), np.stack([trimap, trimap[::-1]]))
    assert batch.shape == (2, 48, 48)
    assert np.allclose(batch[1], model.infer(image[None, ::-1], trimap[None, ::-1])[0])


def test_trim_only_moves_unknown_pixels_and_agrees_with_ground_truth(dev_dir: Path) -> None:
    """Trimmed pixels are almost all right: GT05/Trimap1 measured 0.5 % mean error over 17.8k pixels."""
    trimap = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / "GT05.png")
    image, _ = read_image(dev_dir / "input_training_lowres" / "GT05.png")
    truth = read_alpha(dev_dir / "gt_training_lowres" / "GT05.png") / 255.0
    trimmed = trim_patches(image, trimap)
    assert np.array_equal(trimmed[trimap != UNKNOWN], trimap[trimap != UNKNOWN])
    moved = (trimap == UNKNOWN) & (trimmed != UNKNOWN)
    assert moved.sum() > 0.3 * (trimap == UNKNOWN).sum()
    assert np.abs(trimmed[moved] / 255.0 - truth[moved]).mean() < 0.01


def test_trim_keeps_mixed_pixels_unknown() -> None:
    """Flat foreground and background colours become known; their 50 % mixture stays unknown."""
    image = np.zeros((30, 30, 3), np.float32)
    image[:, :10], image[:, 10:20], image[:, 20:] = [0.1, 0.1, 0.8], [0.5, 0.4, 0.45], [0.9, 0.7, 0.1]
    trimap = np.full((30, 30), UNKNOWN, np.uint8)
    trimap[:, :4], trimap[:, 26:] = BACKGROUND, FOREGROUND
    trimmed = trim_patches(image, trimap)
    assert np.all(trimmed[:, 4:9] == BACKGROUND) and np.all(trimmed[:, 21:26] == FOREGROUND)
    assert np.all(trimmed[:, 11:19] == UNKNOWN)


def _edge_trim_by_definition(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Shahrian et al.'s expansion pixel by pixel: pass i gives each unknown pixel the label of the nearest
    known pixel within its (2i+1)² window whose colour is closer than the pass's threshold."""
    height, width = trimap.shape
    result = trimap.copy()
    for radius in range(1, EDGE_STEPS + 1):
        limit = EDGE_COLOR_FROM - radius * (EDGE_COLOR_FROM - EDGE_COLOR_TO) / EDGE_STEPS
        window = sorted(((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)),
                        key=lambda offset: offset[0] ** 2 + offset[1] ** 2)
        before = result.copy()
        for y, x in zip(*np.nonzero(before == UNKNOWN), strict=True):
            for dy, dx in window:
                r, c = y + dy, x + dx
                if 0 <= r < height and 0 <= c < width and before[r, c] != UNKNOWN and \
                        np.sum((image[r, c] - image[y, x]) ** 2) < limit * limit:
                    result[y, x] = before[r, c]
                    break
    return result


def test_edge_trimming_follows_its_definition() -> None:
    """The vectorised passes (outer ring only away from new labels) give the pixel-by-pixel answer."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 6, (8, 16))  # colours 0, 1 and 5 (close to 0) match the known ends, 2-4 do not
    palette = np.array([[0.1, 0.2, 0.8], [0.9, 0.7, 0.1], [0.5, 0.45, 0.4], [0.3, 0.8, 0.3], [0.7, 0.2, 0.5],
                        [0.12, 0.21, 0.79]])
    image = palette[np.kron(blocks, np.ones((6, 6), int))].astype(np.float32)
    image += rng.normal(0, 0.004, image.shape).astype(np.float32)
    trimap = np.full(image.shape[:2], UNKNOWN, np.uint8)
    trimap[:, :5], trimap[:, -5:] = BACKGROUND, FOREGROUND
    trimap[:4, 20:24] = FOREGROUND
    expected = _edge_trim_by_definition(image, trimap)
    assert (expected != trimap).sum() > 100 and (expected == UNKNOWN).sum() > 100
    assert np.array_equal(trim_edges(image, trimap), expected)


def test_edge_trimming_agrees_with_ground_truth(dev_dir: Path) -> None:
    """GT05/Trimap1 measured: 76.8 % of the unknown pixels labelled, with 0.9 % mean error."""
    trimap = read_trimap(dev_dir / "trimap_training_lowres" / "Trimap1" / "GT05.png")
    image, _ = read_image(dev_dir / "input_training_lowres" / "GT05.png")
    truth = read_alpha(dev_dir / "gt_training_lowres" / "GT05.png") / 255.0
    trimmed = trim(image, trimap, "edges")
    assert np.array_equal(trimmed[trimap != UNKNOWN], trimap[trimap != UNKNOWN])
    moved = (trimap == UNKNOWN) & (trimmed != UNKNOWN)
    assert moved.sum() > 0.7 * (trimap == UNKNOWN).sum()
    assert np.abs(trimmed[moved] / 255.0 - truth[moved]).mean() < 0.012


def test_edge_hints_steer_the_known_to_unknown_estimate(dev_dir: Path) -> None:
    """With ``hints`` the labelled pixels stay unknown but their K-to-U estimate is their label, which the
    default model's solve then mostly keeps (the other flows may overrule it)."""
    image, trimap, _ = _crop(dev_dir, "GT05", size=64)
    hints = trim_edges(image, trimap)
    hinted = (trimap == UNKNOWN) & (hints != UNKNOWN)
    assert hinted.any()
    plain = build_system(image, trimap, FlowParameters())
    matrix, _, estimate = build_system(image, trimap, FlowParameters(), hints)
    assert matrix.shape == plain[0].shape  # the same unknowns
    order = hints[trimap == UNKNOWN]
    assert np.array_equal(estimate[order != UNKNOWN], (order[order != UNKNOWN] == FOREGROUND).astype(float))
    alpha = InformationFlowMatting().infer(image[None], trimap[None])[0]
    assert np.array_equal(alpha, InformationFlowMatting(edges="hints").infer(image[None], trimap[None])[0])
    labels = (hints[hinted] == FOREGROUND).astype(np.float32)
    unhinted = InformationFlowMatting(edges="off").infer(image[None], trimap[None])[0]
    # Measured: 0.0064 from the labels with hints, 0.0137 without, over 1112 hinted pixels.
    assert np.abs(alpha[hinted] - labels).mean() < 0.6 * np.abs(unhinted[hinted] - labels).mean()


def test_predict_cli_trim(tmp_path: Path, dev_dir: Path) -> None:
    image, trimap, _ = _crop(dev_dir, "GT05", size=96)
    from PIL import Image

    Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(trimap).save(tmp_path / "in_trimap.png")
    args = ["predict", str(tmp_path / "in.png"), "-t", str(tmp_path / "in_trimap.png"), "-m", "closed-form"]
    assert main([*args, "-o", str(tmp_path / "plain.png")]) == 0
    assert main([*args, "--trim", "-o", str(tmp_path / "trimmed.png")]) == 0
    plain = read_gray(tmp_path / "plain.png")
    assert main([*args, "--trim", "--trim-method", "patch", "-o", str(tmp_path / "patch.png")]) == 0
    for method, output in (("edges", "trimmed.png"), ("patch", "patch.png")):  # edges: --trim's default
        trimmed = read_gray(tmp_path / output)
        moved = (trimap == UNKNOWN) & (trim(image, trimap, method) != UNKNOWN)
        assert moved.any() and np.all(np.isin(trimmed[moved], (0.0, 1.0)))
        assert not np.array_equal(plain, trimmed)


def test_tiled_stays_close_to_whole_image(dev_dir: Path) -> None:
    """The non-local flows see only their tile, so tiles differ from the whole pass more than closed-form's
    (GT02 at 400×248, 2×2 tiles of 192 px: mean |Δα| 7.4e-3 against 2.0e-4), but not in quality: SAD
    against the ground truth measured 0.415 tiled, 0.392 whole (closed-form: 1.013 and 1.012)."""
    data = load_input(dev_dir / "input_training_lowres" / "GT02.png",
                      dev_dir / "trimap_training_lowres" / "Trimap1" / "GT02.png")
    assert data.trimap is not None
    size = (400, 248)
    small = MattingInput(cv2.resize(data.image, size, interpolation=cv2.INTER_AREA),
                         cv2.resize(data.trimap, size, interpolation=cv2.INTER_NEAREST))
    truth = cv2.resize(read_alpha(dev_dir / "gt_training_lowres" / "GT02.png") / 255.0, size,
                       interpolation=cv2.INTER_AREA)
    model = create_model("information-flow")
    whole = run_model(model, small, TileOptions(tile="off"))
    tiled = run_model(model, small, TileOptions(tile="on", tile_size=192, overlap=32))
    unknown = small.trimap == UNKNOWN
    assert np.abs(tiled - whole)[unknown].mean() < 1.5e-2
    assert np.abs(tiled - truth)[unknown].sum() < 1.1 * np.abs(whole - truth)[unknown].sum()
