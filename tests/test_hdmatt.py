"""HDMatt: context patch sampling (Eq. 1-2), TGNL (Eq. 3), the engine's context path, the loss (Eq. 4)."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from mattekit.compose import estimate_foreground
from mattekit.engine import TileContext, TileOptions, plan
from mattekit.errors import MattekitError
from mattekit.io import read_gray
from mattekit.models import create_model
from mattekit.models.hdmatt import (
    ContextPatchSampling,
    Embedded,
    HDMattEncoder,
    HDMattModel,
    HDMattNet,
    TrimapGuidedNonLocal,
    hdmatt_loss,
    network_input,
    region_cells,
)
from mattekit.models.network import count_flops
from mattekit.predictor import load_input, run_model
from mattekit.train.data import Sample
from mattekit.train.hdmatt import HDMattTask
from mattekit.train.recipe import load_recipe
from mattekit.trimap import UNKNOWN


def brute_force_correlation(query_unknown: Tensor, context: Tensor) -> Tensor:
    """Eq. 1 as written: the sum over every pair of positions (s, s') of q_U,s . c_i,s'."""
    queries = query_unknown.flatten(2)  # (B, C, S)
    contexts = context.flatten(2)  # (N, C, S')
    scores = torch.zeros(len(queries), len(contexts), dtype=torch.float64)
    for b, q in enumerate(queries.double()):
        for i, c in enumerate(contexts.double()):
            scores[b, i] = sum(q[:, s] @ c[:, t] for s in range(q.shape[1]) for t in range(c.shape[1]))
    return scores


def test_top_k_is_the_brute_force_ranking_of_eq_1() -> None:
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(3, 4, 3, 3, generator=generator)
    query[:, :, 0] = 0  # a row of the query outside the unknown region
    context = torch.randn(9, 4, 3, 3, generator=generator)
    allowed = np.ones((3, 9), dtype=bool)
    allowed[1, [2, 5]] = False
    allowed[2, 1:] = False  # one candidate only: fewer than K
    scores = brute_force_correlation(query, context)
    for k, counts in ((3, (3, 3, 1)), (None, (9, 7, 1))):
        chosen = ContextPatchSampling(k)(query, context, allowed)
        for b, count in enumerate(counts):
            candidates = np.flatnonzero(allowed[b])
            ranking = candidates[np.argsort(-scores[b, candidates].numpy(), kind="stable")]
            assert chosen[b].tolist() == ranking[:count].tolist()


def test_tgnl_matches_eq_3_by_hand_with_no_foreground_in_the_context() -> None:
    # One query row of two cells: the first unknown (key 1, value 0.5), the second known.  Two context
    # patches of two cells each, unknown then background, no foreground at all.
    query_key = torch.tensor([[[1.0, 5.0]]])
    query_value = torch.tensor([[[0.5, 7.0]]])
    query_unknown = torch.tensor([[[1.0, 0.0]]])
    context_key = torch.tensor([[[[math.log(2), 0.0]]], [[[math.log(3), 1.0]]]])
    context_value = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])
    unknown, foreground, background = [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]
    regions = torch.tensor([[unknown, foreground, background]] * 2)[:, :, None, :]
    out = TrimapGuidedNonLocal()(query_key, query_value, query_unknown, context_key, context_value, regions)
    f_u, f_f, f_b = out[:, 0]
    # Logits q_U . c are (ln 2, 0, ln 3, 1) for the unknown query cell.  Masked keys keep logit 0 and
    # value 0, so they still take softmax mass (one softmax over both patches).
    e = math.e
    torch.testing.assert_close(f_u[0], torch.tensor(0.5 + (2 * 1 + 3 * 3) / 7))
    torch.testing.assert_close(f_f[0], torch.tensor(0.5))  # no foreground: uniform over zero values
    torch.testing.assert_close(f_b[0], torch.tensor(0.5 + (2 + 4 * e) / (3 + e)))
    # The known query cell has q_U = 0 and q~_U = 0: uniform attention over the masked values.
    torch.testing.assert_close(out[:, 0, 1], torch.tensor([(1 + 3) / 4, 0.0, (2 + 4) / 4]))
    assert torch.isfinite(out).all()


def test_region_cells_keep_thin_unknown_bands() -> None:
    trimap = np.zeros((16, 16), dtype=np.uint8)
    trimap[:, 9:] = 255
    trimap[3, 0] = UNKNOWN  # one unknown pixel in the first cell
    inputs = network_input(np.zeros((1, 16, 16, 3), np.float32), trimap[None], torch.device("cpu"))
    cells = region_cells(inputs[:, 3:])
    assert cells[0, :, 0, 0].tolist() == [1, 0, 0]  # unknown wins
    assert cells[0, :, 1, 1].tolist() == [0, 1, 0]  # 7 of 8 columns foreground
    assert cells[0, :, 1, 0].tolist() == [0, 0, 1]
    assert cells.sum(dim=1).eq(1).all()


@pytest.fixture(scope="module")
def small_net() -> HDMattNet:
    torch.manual_seed(0)
    return HDMattNet().eval()


def random_patches(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((count, size, size, 3), dtype=np.float32)
    trimaps = rng.choice(np.array([0, UNKNOWN, 255], dtype=np.uint8), (count, size, size))
    return images, trimaps


def test_a_query_never_takes_its_own_tile_from_the_pool(small_net: HDMattNet, monkeypatch) -> None:
    """The paper samples *other* patches of the image ("Introduction", "Context Patch Sampling")."""
    model = HDMattModel(small_net, torch.device("cpu"))
    images, trimaps = random_patches(5, 32, seed=1)
    boxes = np.array([[0, 32, 32 * i, 32 * (i + 1)] for i in range(5)])
    chosen: list[list[int]] = []
    sampling = small_net.cpc.sampling
    original = type(sampling).forward

    def spy(self: ContextPatchSampling, query: Tensor, context: Tensor, allowed: np.ndarray) -> list[Tensor]:
        picks = original(self, query, context, allowed)
        chosen.extend(p.tolist() for p in picks)
        return picks

    monkeypatch.setattr(type(sampling), "forward", spy)
    # Queries 0 and 3 of the pool are matted; each may take any tile but its own.
    context = TileContext(images, trimaps, boxes, boxes[[0, 3]])
    alpha = model.infer_context(images[[0, 3]], trimaps[[0, 3]], context)
    assert chosen[0] and 0 not in chosen[0] and 3 not in chosen[1] and len(chosen[0]) == 3
    assert alpha.shape == (2, 32, 32) and np.isfinite(alpha).all()
    # Alone in its pool (an image of one tile) a query is its own context.
    alone = TileContext(images[:1], trimaps[:1], boxes[:1], boxes[:1])
    single = model.infer_context(images[:1], trimaps[:1], alone)
    with torch.inference_mode():
        own = network_input(images[:1], trimaps[:1], torch.device("cpu"))
        expected = small_net(own, small_net.embed_context(own), np.ones((1, 1), dtype=bool))
    np.testing.assert_allclose(single, expected[:, 0].numpy(), atol=1e-6)


class PerPixelNet(nn.Module):
    """HDMattNet's interface with alpha from each query pixel alone; records what the context path got."""

    def __init__(self) -> None:
        super().__init__()
        self.cpc = ContextPatchSampling(3)
        self.pixel = nn.Conv2d(6, 1, 1)
        with torch.no_grad():
            self.pixel.weight.copy_(torch.tensor([0.3, -0.2, 0.5, -1.0, 0.4, 1.0]).view(1, 6, 1, 1))
            self.pixel.bias.fill_(0.1)
        self.allowed: list[np.ndarray] = []

    def embed_context(self, x: Tensor) -> Embedded:
        return Embedded(x[:, :3, ::8, ::8], x[:, :3, ::8, ::8], region_cells(x[:, 3:]))

    def forward(self, query: Tensor, pool: Embedded, allowed: np.ndarray, candidates: None = None) -> Tensor:
        assert len(pool.key) == allowed.shape[1] and len(query) == allowed.shape[0]
        self.allowed.append(allowed)
        return torch.sigmoid(self.pixel(query))


def test_tiled_hdmatt_with_a_per_pixel_stub_equals_the_whole_image(dev_dir: Path) -> None:
    data = load_input(dev_dir / "input_training_lowres" / "GT04.png",
                      dev_dir / "trimap_training_lowres" / "Trimap1" / "GT04.png")
    stub = PerPixelNet()
    model = HDMattModel(stub, torch.device("cpu"))  # type: ignore[arg-type]
    tiling = plan(model, *data.image.shape[:2], data.trimap, TileOptions())
    assert tiling.grid is not None and (tiling.tile_size, tiling.overlap) == (320, 64)
    tiled = run_model(model, data, TileOptions())
    pools = list(stub.allowed)
    whole = run_model(model, data, TileOptions(tile="off"))
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    assert sum(len(a) for a in pools) == len(tiling.grid.run) > 1
    # Every tile runs and the pool holds them all (fewer than 30), so each query is refused exactly its own.
    assert all((~a).sum(axis=1).tolist() == [1] * len(a) for a in pools)


def test_hdmatt_is_always_tiled_with_its_patch_size() -> None:
    model = create_model("hdmatt", device="cpu")
    trimap = np.full((500, 700), UNKNOWN, dtype=np.uint8)
    default = plan(model, 500, 700, trimap, TileOptions(max_memory="100GB"))
    assert default.grid is not None and (default.tile_size, default.overlap) == (320, 64)
    assert all(t.window == (t.top, t.bottom, t.left, t.right) for t in default.grid.run)  # whole patches
    chosen = plan(model, 500, 700, trimap, TileOptions(tile_size=480, overlap=32))
    assert (chosen.tile_size, chosen.overlap) == (480, 32)
    # A tight budget takes fewer patches per call, never smaller ones; too tight is a one-line error.
    tight = plan(model, 500, 700, trimap, TileOptions(max_memory="500MB"))
    assert tight.tile_size == 320 and tight.batch < default.batch and tight.estimated_peak <= 500e6
    with pytest.raises(MattekitError, match="320 px"):
        plan(model, 500, 700, trimap, TileOptions(max_memory="100MB"))


def test_dim_loss_weighted_by_the_mask_matches_eq_4_by_hand() -> None:
    target = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    alpha = torch.tensor([0.5, 1.0]).view(1, 1, 1, 2)
    foreground, background = torch.ones(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    image = target.expand(1, 3, 1, 2)
    # Pixel 0: |alpha error| 0.5 and a composite off by 0.5 in each of three channels.
    first = 0.5 * 0.5 + 0.5 * math.sqrt(3 * 0.25)
    for weight, expected in (([1.0, 1.0], first / 2), ([1.0, 0.0], first), ([0.0, 3.0], 0.0)):
        mask = torch.tensor(weight).view(1, 1, 1, 2)
        loss = hdmatt_loss(alpha, target, image, foreground, background, mask)
        assert loss.item() == pytest.approx(expected, abs=1e-5)


# --- training ---------------------------------------------------------------------------------------------


class Step:
    """The trainer's StepContext reduced to what a CPU step needs: backward and one Adam step."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        self.step = 0
        self.models = {"generator": net}
        self.device = torch.device("cpu")
        self.optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def optimize(self, name: str, loss: Tensor) -> None:
        assert torch.isfinite(loss)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1


def dev_samples(dev_dir: Path, names: tuple[str, ...], side: int) -> list[Sample]:
    """Composition samples from the dev set: each photo's estimated foreground and ground-truth alpha over
    the next photo as background, downscaled to ``side`` px, with the photo's Trimap1."""
    def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data = load_input(dev_dir / "input_training_lowres" / f"{name}.png",
                          dev_dir / "trimap_training_lowres" / "Trimap1" / f"{name}.png")
        alpha = read_gray(dev_dir / "gt_training_lowres" / f"{name}.png")
        size = (side, round(side * alpha.shape[0] / alpha.shape[1]))
        small = [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (data.image, alpha)]
        return small[0], small[1], cv2.resize(data.trimap, size, interpolation=cv2.INTER_NEAREST)

    loaded = [load(name) for name in names]
    samples = []
    for i, (image, alpha, trimap) in enumerate(loaded):
        background = cv2.resize(loaded[(i + 1) % len(loaded)][0], image.shape[1::-1])
        foreground = estimate_foreground(image, alpha)
        samples.append(Sample(alpha=alpha, fg=foreground, bg=background, trimap=trimap))
    return samples


def test_hdmatt_recipe_is_the_papers() -> None:
    recipe = load_recipe("hdmatt")
    assert (recipe.lr, recipe.schedule, recipe.weight_decay, recipe.batch_size, recipe.steps) == (
        5e-4, "cosine", 1e-4, 32, 200_000)
    assert recipe.crop_size == 320 and recipe.options.crop_sides == (640, 480, 320)
    assert (recipe.options.k, recipe.options.candidates, recipe.options.cpc) == (3, 8, "tgnl")
    ablation = load_recipe("hdmatt", ["options.cpc=none", "options.k=1"])
    assert HDMattTask(ablation).build_modules()["generator"].cpc is None


def test_samples_hold_a_query_around_unknown_pixels_and_its_candidates(dev_dir: Path) -> None:
    sizes = ["crop_size=64", "options.crop_sides=[128, 96, 64]", "options.candidates=5"]
    recipe = load_recipe("hdmatt", sizes)
    sample = dev_samples(dev_dir, ("GT01", "GT02"), 200)[0]
    fields = HDMattTask(recipe).make_sample(sample, np.random.default_rng(3))
    assert fields["image"].shape == fields["fg"].shape == fields["bg"].shape == (3, 64, 64)
    assert fields["alpha"].shape == fields["trimap"].shape == (1, 64, 64)
    assert fields["candidates"].shape == (5, 3, 64, 64)
    assert fields["candidate_trimaps"].shape == (5, 1, 64, 64)
    assert fields["trimap"][0, 32, 32] == UNKNOWN  # centred on an unknown pixel
    # The composite is alpha F + (1 - alpha) B (up to the linear resize of each to the patch).
    composite = fields["alpha"] * fields["fg"] + (1 - fields["alpha"]) * fields["bg"]
    assert np.abs(composite - fields["image"]).mean() < 0.01


def test_hdmatt_loss_falls_on_dev_data(dev_dir: Path) -> None:
    """A few Adam steps on one batch of dev composites (32 px patches; the ResNet-34 trunk frozen at its
    random initialisation to keep the CPU cost low: ASPP, CPC and decoder learn)."""
    torch.manual_seed(0)
    sizes = ["crop_size=32", "options.crop_sides=[64, 48, 32]", "options.candidates=3"]
    task = HDMattTask(load_recipe("hdmatt", sizes))
    net = task.build_modules()["generator"].train()
    net.encoder.backbone.requires_grad_(False)
    rng = np.random.default_rng(0)
    fields = [task.make_sample(sample, rng) for sample in dev_samples(dev_dir, ("GT01", "GT02"), 160)]
    batch = {name: torch.from_numpy(np.stack([f[name] for f in fields])) for name in fields[0]}
    ctx = Step(net, task.recipe.lr)
    losses = [task.training_step(batch, ctx)["loss"].item() for _ in range(4)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.75 * losses[0], losses


def test_flops_add_up_to_the_context_patches_and_the_cpc_by_hand() -> None:
    """The figure `models info` reports, against model A (no CPC) plus the CPC's products counted by hand."""
    model = create_model("hdmatt", device="cpu")
    full, what = model.flops(), model.flops_note
    without = create_model("hdmatt", device="cpu", cpc="none").flops()
    with torch.device("meta"):
        encoder, patch = HDMattEncoder().eval(), torch.zeros(1, 6, 320, 320)
    encode = count_flops(lambda: encoder(patch))
    cells, k = 40 * 40, 3
    by_hand = (
        k * encode  # the context patches through the encoder
        + 2 * cells * 256 * (64 + 128) * (1 + k)  # theta or phi, and delta, on the query and each context
        + 2 * 64 * k  # Eq. 1 on the spatial sums
        + 2 * cells * 64 * k * cells  # TGNL logits, shared by the three regions
        + 3 * 2 * 128 * k * cells * cells  # TGNL propagation, per region
        + 2 * cells * 9 * 256 * (384 - 256)  # the decoder's first conv takes [f_U, f_F, f_B] instead of ASPP
    )
    assert full - without == by_hand
    assert "K = 3" in what and 300e9 < full < 400e9
