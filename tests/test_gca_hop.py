"""GCA-Matting and HOP-Matting against the official-code test vectors in ``shared/reference/{gca,hop}``.

The weights are the synthetic ones ``fill.py`` builds from the official key list (imported from the shared
folder, never copied); the expected alphas came from the official code run with them.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mattekit
from mattekit.device import resolve_device
from mattekit.errors import MattekitError
from mattekit.models import create_model, get_model_info
from mattekit.models.checkpoint import load_into, read_state_dict
from mattekit.models.gca import GCAMatting, GuidedContextualAttention
from mattekit.models.hop import HOPMatting
from mattekit.models.layers import SpectralNorm
from mattekit.models.network import NetworkModel, normalize_images, one_hot_trimaps, parameter_count
from mattekit.predictor import load_input
from mattekit.trimap import BACKGROUND, FOREGROUND, UNKNOWN

# Stated in the reference README: the official state_dict sizes, and the suggested bound on float32 CPU.
OFFICIAL_COUNTS = {"gca": (578, 25_291_776), "hop": (624, 25_357_815)}
TOLERANCE = 1e-5


def _fill_module(reference_dir: Path):
    spec = importlib.util.spec_from_file_location("reference_fill", reference_dir / "gca" / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Filled(dict):
    """Filled state_dicts by architecture, built on first use (filling takes seconds)."""

    def __init__(self, reference_dir: Path) -> None:
        super().__init__()
        self.reference_dir = reference_dir
        self.fill = _fill_module(reference_dir).fill

    def __missing__(self, arch: str) -> dict[str, torch.Tensor]:
        self[arch] = self.fill(str(self.reference_dir / arch / f"{arch}_keys.json"))
        return self[arch]


@pytest.fixture(scope="module")
def filled(reference_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The deterministic official-layout state_dicts of both architectures."""
    return _Filled(reference_dir)


@pytest.fixture
def raw_outputs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Records (padded input image, raw alpha) of every NetworkModel.infer call."""
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    infer = NetworkModel.infer

    def recording(self: NetworkModel, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        raw = infer(self, images, trimaps)
        calls.append((images.copy(), raw))
        return raw

    monkeypatch.setattr(NetworkModel, "infer", recording)
    return calls


def _official_checkpoint(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    """A file laid out as the official trainer saves it: DDP-prefixed keys, optimiser and scheduler state."""
    toy = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(toy.parameters())
    toy(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    torch.save(
        {
            "iter": 200000,
            "loss": torch.tensor(0.01),
            "state_dict": {f"module.{key}": value for key, value in state_dict.items()},
            "opt_state_dict": optimizer.state_dict(),
            "lr_state_dict": scheduler.state_dict(),
        },
        path,
    )
    return path


# --- layout and size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gca", "hop"])
def test_state_dict_is_the_official_layout(arch: str, reference_dir: Path) -> None:
    entries = json.loads((reference_dir / arch / f"{arch}_keys.json").read_text())
    net = create_model(arch, device="cpu").net
    state = net.state_dict()
    assert list(state) == [entry["key"] for entry in entries]
    assert [list(value.shape) for value in state.values()] == [entry["shape"] for entry in entries]
    keys, values = OFFICIAL_COUNTS[arch]
    assert len(state) == keys
    assert parameter_count(net) == values


def test_parameter_count_is_state_dict_values_not_parameters() -> None:
    net = GCAMatting()
    trainable_and_sn = sum(p.numel() for p in net.parameters())
    # The official figure counts BatchNorm statistics too; parameters() alone falls short of it.
    assert trainable_and_sn == 25_269_144
    assert parameter_count(net) == 25_291_776


def test_registry_entries() -> None:
    for name in ("gca", "hop", "hop-all-data"):
        requirements = get_model_info(name).requirements
        assert requirements.weights and requirements.trimap
        assert (requirements.pad_multiple, requirements.pad_border) == (32, 32)
    assert get_model_info("gca").requirements.min_size == 1
    assert get_model_info("hop").requirements.min_size == 448


@pytest.mark.parametrize(("name", "eps"), [("gca", 1e-5), ("hop", 1e-3), ("hop-all-data", 1e-5)])
def test_variants_carry_their_batchnorm_eps(name: str, eps: float) -> None:
    net = create_model(name, device="cpu").net
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == eps for m in norms)


# --- parity with the official outputs -------------------------------------------------------------------


def _expected(reference_dir: Path, arch: str) -> tuple[np.ndarray, np.ndarray]:
    folder = reference_dir / arch
    return np.load(folder / f"{arch}_alpha_raw.npy")[0, 0], np.load(folder / f"{arch}_alpha_final.npy")


@pytest.mark.parametrize(("arch", "suffix"), [("gca", ".pth"), ("hop", ".safetensors")])
def test_predict_matches_the_official_outputs(
    arch: str,
    suffix: str,
    reference_dir: Path,
    filled: dict[str, dict[str, torch.Tensor]],
    raw_outputs: list[tuple[np.ndarray, np.ndarray]],
    tmp_path: Path,
) -> None:
    """The whole user path: weights file, image and trimap files, padding, network, crop, known regions."""
    weights = tmp_path / f"{arch}{suffix}"
    if suffix == ".pth":
        _official_checkpoint(filled[arch], weights)
    else:
        save_file(filled[arch], str(weights))
    folder = reference_dir / arch
    alpha = mattekit.predict(
        str(folder / f"{arch}_image.png"),
        str(folder / f"{arch}_trimap.png"),
        model=arch,
        weights=weights,
        device="cpu",
    )
    expected_raw, expected_final = _expected(reference_dir, arch)
    ((_, raw),) = raw_outputs
    assert raw[0].shape == expected_raw.shape
    assert np.abs(raw[0] - expected_raw).max() <= TOLERANCE
    assert alpha.shape == expected_final.shape
    assert np.abs(alpha - expected_final).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("name", "options", "variant"),
    [("hop-all-data", {}, "hop_alldata"), ("hop", {"global_rate": 1}, "hop_rate1")],
)
def test_hop_variants_match_their_official_samples(
    name: str,
    options: dict[str, int],
    variant: str,
    reference_dir: Path,
    filled: dict[str, dict[str, torch.Tensor]],
) -> None:
    """Same weights, the all-data config (BatchNorm eps 1e-5) or demo.py's global rate 1: raw samples."""
    expected = json.loads((reference_dir / "hop" / "hop_stats.json").read_text())["variants"][variant]
    model = create_model(name, device="cpu", **options)
    load_into(model.net, filled["hop"])
    folder = reference_dir / "hop"
    data = load_input(str(folder / "hop_image.png"), str(folder / "hop_trimap.png"))
    top, bottom, left, right = model.requirements.padding(*data.trimap.shape)
    image = np.pad(data.image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    trimap = np.pad(data.trimap, ((top, bottom), (left, right)), mode="reflect")
    raw = model.infer(image[None], trimap[None])[0]
    samples = np.array(expected["alpha_raw"]["samples_y_x_value"])
    ys, xs = samples[:, 0].astype(int), samples[:, 1].astype(int)
    assert np.abs(raw[ys, xs] - samples[:, 2]).max() <= TOLERANCE
    assert raw.mean() == pytest.approx(expected["alpha_raw"]["mean"], abs=1e-6)
    # The variant matters: the HOP-9x9-RI output differs from this one by far more than the tolerance.
    hop_raw, _ = _expected(reference_dir, "hop")
    assert np.abs(raw - hop_raw).max() > 1e-4


def test_hop_global_rate_sets_the_minimum_size() -> None:
    assert create_model("hop", device="cpu", global_rate=1).requirements.min_size == 224
    assert create_model("hop-all-data", device="cpu").requirements.min_size == 448
    with pytest.raises(MattekitError, match="global_rate must be 1 or 2"):
        create_model("hop", device="cpu", global_rate=4)


def test_images_of_a_batch_are_independent() -> None:
    """The attention runs per image (its unknown-area weights too): a batch gives what single images give.

    The network is freshly initialised: its spectral norms must already give finite outputs.
    """
    torch.manual_seed(0)
    model = create_model("gca", device="cpu")
    for block in (model.net.encoder.gca, model.net.decoder.gca):
        torch.nn.init.ones_(block.W[1].weight)  # the initial 1e-3 would hide the attention's effect
    images = np.random.default_rng(1).random((3, 64, 96, 3), dtype=np.float32)
    trimaps = np.full((3, 64, 96), UNKNOWN, dtype=np.uint8)  # the last one is all unknown
    trimaps[0, :, :20] = BACKGROUND
    trimaps[1, 40:] = FOREGROUND
    batch = model.infer(images, trimaps)
    assert np.isfinite(batch).all()
    for index in range(3):
        single = model.infer(images[index : index + 1], trimaps[index : index + 1])
        np.testing.assert_allclose(batch[index], single[0], atol=1e-6)


# --- shared pre- and post-processing --------------------------------------------------------------------


def _official_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """The official demo's layout, as the reference README states it."""
    if height % 32 == 0 and width % 32 == 0:
        return 32, 32, 32, 32
    return 32, 32 + (-height) % 32, 32, 32 + (-width) % 32


@pytest.mark.parametrize(("height", "width"), [(128, 160), (100, 150), (128, 150), (97, 33), (1, 1)])
def test_padding_is_the_official_layout(height: int, width: int) -> None:
    assert get_model_info("gca").requirements.padding(height, width) == _official_padding(height, width)


@pytest.mark.parametrize(("height", "width"), [(64, 80), (448, 100), (500, 1000)])
def test_hop_padding_reaches_its_minimum_size(height: int, width: int) -> None:
    top, bottom, left, right = get_model_info("hop").requirements.padding(height, width)
    assert (top, left) == (32, 32)
    for size, after in ((height, bottom), (width, right)):
        # The official border and rounding, then grown at the bottom / right to 448 if that is short of it.
        assert size + top + after == max(448, size + 64 + (-size) % 32)


def test_images_are_imagenet_normalised() -> None:
    images = np.random.default_rng(0).random((2, 4, 5, 3), dtype=np.float32)
    tensor = normalize_images(images)
    assert tensor.shape == (2, 3, 4, 5) and tensor.dtype == torch.float32
    expected = (images[1, 2, 3] - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(tensor[1, :, 2, 3].numpy(), expected, rtol=1e-6)


def test_trimaps_become_one_hot_background_unknown_foreground() -> None:
    trimaps = np.array([[[0, 84, 85, 128, 169, 170, 255]]], dtype=np.uint8)
    one_hot = one_hot_trimaps(trimaps)
    assert one_hot.shape == (1, 3, 1, 7)
    assert one_hot[0, :, 0].argmax(dim=0).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert torch.all(one_hot.sum(dim=1) == 1)


def _scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image and a trimap with all three regions, sizes chosen by the test."""
    rng = np.random.default_rng(height * 1000 + width)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([yy, xx, 0.5 + 0.1 * rng.standard_normal((height, width))], axis=-1)
    trimap = np.full((height, width), BACKGROUND, dtype=np.uint8)
    trimap[:, width // 3 :] = UNKNOWN
    trimap[:, 2 * width // 3 :] = FOREGROUND
    return np.clip(image, 0, 1).astype(np.float32), trimap


@pytest.mark.parametrize(("arch", "height", "width"), [("gca", 100, 150), ("hop", 64, 80)])
def test_predict_pads_crops_and_fixes_known_regions(
    arch: str,
    height: int,
    width: int,
    filled: dict[str, dict[str, torch.Tensor]],
    raw_outputs: list[tuple[np.ndarray, np.ndarray]],
    tmp_path: Path,
) -> None:
    """Sizes that are not multiples of 32 (GCA) and below HOP's minimum: the official border and crop."""
    weights = _official_checkpoint(filled[arch], tmp_path / f"{arch}.pth")
    image, trimap = _scene(height, width)
    alpha = mattekit.predict(image, trimap, model=arch, weights=weights, device="cpu")
    ((padded, raw),) = raw_outputs
    top, bottom, left, right = _official_padding(height, width)
    if arch == "hop":  # grown at the bottom and right up to the global block's minimum
        bottom, right = 448 - height - top, 448 - width - left
    assert padded.shape == (1, height + top + bottom, width + left + right, 3)
    np.testing.assert_array_equal(padded[0], np.pad(image, ((top, bottom), (left, right), (0, 0)), "reflect"))
    expected = raw[0, top : top + height, left : left + width].copy()
    expected[trimap == FOREGROUND] = 1
    expected[trimap == BACKGROUND] = 0
    assert alpha.shape == (height, width)
    np.testing.assert_array_equal(alpha, expected)
    unknown = alpha[trimap == UNKNOWN]
    assert np.all((unknown > 0) & (unknown < 1))


# --- checkpoints ----------------------------------------------------------------------------------------


def test_official_checkpoint_loses_only_the_leading_prefix(
    filled: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    state_dict = read_state_dict(_official_checkpoint(filled["gca"], tmp_path / "gca-dist.pth"))
    assert list(state_dict) == list(filled["gca"])
    assert "encoder.conv1.module.weight_bar" in state_dict  # the inner '.module.' is the official name
    assert all(torch.equal(state_dict[key], value) for key, value in filled["gca"].items())
    load_into(GCAMatting(), state_dict)


def test_plain_state_dict_and_safetensors_load(
    filled: dict[str, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    torch.save(filled["hop"], tmp_path / "plain.pth")
    save_file(filled["hop"], str(tmp_path / "zoo.safetensors"))
    for name in ("plain.pth", "zoo.safetensors"):
        state_dict = read_state_dict(tmp_path / name)
        assert sorted(state_dict) == sorted(filled["hop"])  # safetensors stores keys sorted
        net = HOPMatting()
        load_into(net, state_dict)
        assert torch.equal(net.decoder.gca.scale, filled["hop"]["decoder.gca.scale"])


def test_checkpoints_are_read_without_running_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    # A pickled callable is what an attack uses; weights_only loading must refuse it.
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": print}, path)
    with pytest.raises(MattekitError, match="evil.pth"):
        read_state_dict(path)


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_unreadable_files_are_user_errors(content: bytes, tmp_path: Path) -> None:
    for name in ("broken.pth", "broken.safetensors"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(MattekitError, match=name):
            read_state_dict(tmp_path / name)
    with pytest.raises(MattekitError, match="no such checkpoint"):
        read_state_dict(tmp_path / "absent.pth")


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "note": "hello"}, tmp_path / "odd.pth")
    with pytest.raises(MattekitError, match="no state_dict"):
        read_state_dict(tmp_path / "odd.pth")


def test_partial_checkpoint_names_missing_and_unexpected_keys(
    filled: dict[str, dict[str, torch.Tensor]],
) -> None:
    state_dict = dict(filled["gca"])
    for key in list(state_dict)[:5]:
        del state_dict[key]
    state_dict["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(MattekitError) as info:
        load_into(GCAMatting(), state_dict, source="partial.pth")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("partial.pth: ")
    assert "5 missing (encoder.conv1.module.weight_u, encoder.conv1.module.weight_v" in message
    assert "1 unexpected (decoder.extra.weight)" in message


def test_other_architecture_checkpoint_is_refused(filled: dict[str, dict[str, torch.Tensor]]) -> None:
    with pytest.raises(MattekitError, match=r"\d+ missing .*\d+ unexpected"):
        load_into(GCAMatting(), filled["hop"])


def test_prefixed_keys_do_not_load_without_stripping(filled: dict[str, dict[str, torch.Tensor]]) -> None:
    prefixed = {f"module.{key}": value for key, value in filled["gca"].items()}
    with pytest.raises(MattekitError, match="578 missing .*578 unexpected"):
        load_into(GCAMatting(), prefixed)


def test_wrong_shapes_are_named(filled: dict[str, dict[str, torch.Tensor]]) -> None:
    state_dict = dict(filled["gca"])
    state_dict["decoder.conv2.bias"] = torch.zeros(2)
    with pytest.raises(
        MattekitError, match=r"1 with the wrong shape \(decoder.conv2.bias \(2,\) vs \(1,\)\)"
    ):
        load_into(GCAMatting(), state_dict)


def test_missing_weights_file_through_predict_is_a_user_error(tmp_path: Path) -> None:
    image, trimap = _scene(32, 32)
    with pytest.raises(MattekitError, match="no such checkpoint"):
        mattekit.predict(image, trimap, model="gca", weights=tmp_path / "nope.pth", device="cpu")


# --- spectral normalisation, devices, precision ---------------------------------------------------------


def test_transposed_conv_spectral_norm_uses_dim_0() -> None:
    layer = SpectralNorm(torch.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1, bias=False)).eval()
    bar, u, v = layer.module.weight_bar, layer.module.weight_u, layer.module.weight_v
    assert bar.shape == (3, 5, 4, 4) and u.shape == (3,) and v.shape == (80,)
    expected = bar / torch.dot(u, bar.reshape(3, -1) @ v)
    torch.testing.assert_close(layer.normalized_weight(), expected)


def test_spectral_norm_updates_u_v_only_in_training() -> None:
    layer = SpectralNorm(torch.nn.Conv2d(4, 6, 3, bias=False))
    u0 = layer.module.weight_u.detach().clone()
    layer.eval()(torch.ones(1, 4, 5, 5))
    assert torch.equal(layer.module.weight_u, u0)
    layer.train()(torch.ones(1, 4, 5, 5))
    assert not torch.equal(layer.module.weight_u, u0)
    assert layer.module.weight_bar.requires_grad and not layer.module.weight_u.requires_grad


def test_spectral_norm_weight_is_computed_once_for_inference_and_follows_new_weights() -> None:
    layer = SpectralNorm(torch.nn.Conv2d(4, 6, 3, bias=False)).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.inference_mode():
        first, out = layer.normalized_weight(), layer(x)
        assert layer.normalized_weight() is first  # reused, not recomputed
    torch.testing.assert_close(first, layer._compute_weight(), rtol=0, atol=0)
    with torch.no_grad():  # what loading a checkpoint does: in-place copies
        layer.module.weight_bar.mul_(2.0)
        layer.module.weight_u.copy_(-layer.module.weight_u)
    with torch.inference_mode():
        second = layer.normalized_weight()
        torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, second))
    assert second is not first
    torch.testing.assert_close(second, layer._compute_weight(), rtol=0, atol=0)
    torch.testing.assert_close(layer(x), out * -1.0)  # 2W / (-2 sigma): the old weight times -1
    # with gradients on, the weight is computed afresh so that it reaches weight_bar
    assert layer.normalized_weight().requires_grad


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(MattekitError, match=r"^--device cuda: no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(MattekitError, match="unknown device"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(MattekitError, match="no GPU 2"):
        resolve_device("cuda:2")


def test_memory_estimate_grows_with_the_square_of_the_attention_grid() -> None:
    gca, hop = create_model("gca", device="cpu"), create_model("hop", device="cpu")
    for model, stride in ((gca, 16), (hop, 32)):
        small, large = model.estimate_memory(1024, 1024), model.estimate_memory(2048, 2048)
        cells = (2048 // stride) ** 2
        # 3 float32 score maps of (cells x cells): the quadratic part beyond 4x the smaller image's.
        assert large - 4 * small == 3 * 4 * (cells**2 - 4 * (cells // 4) ** 2)
        assert model.estimate_memory(1024, 1024, batch=3) == 3 * small
    # GCA's grid is 4x finer, so at 4K its attention alone is tens of GB: the planner must tile.
    assert gca.estimate_memory(4096, 4096) > 40e9 > hop.estimate_memory(4096, 4096)


def test_half_precision_needs_cuda() -> None:
    with pytest.raises(MattekitError, match="--half"):
        create_model("gca", device="cpu", half=True)


def test_float32_on_gpu_turns_off_tf32_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("gca", device="cpu")
    monkeypatch.setattr(model, "device", torch.device("cuda"))  # the context needs no GPU to be checked
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    with model._precision():
        assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.allow_tf32


def test_attention_softmax_stays_float32_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.dtype] = []
    softmax = torch.nn.functional.softmax

    def spy(scores: torch.Tensor, dim: int) -> torch.Tensor:
        seen.append(scores.dtype)
        return softmax(scores, dim=dim)

    monkeypatch.setattr(torch.nn.functional, "softmax", spy)
    block = GuidedContextualAttention(8, 8).eval()
    unknown = torch.zeros(1, 1, 8, 8)
    unknown[..., 2:5, :] = 1
    # CPU autocast to bfloat16 stands in for CUDA float16 here: the block must opt out of both.
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8), unknown)
    assert seen == [torch.float32]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("architecture", "values"), [("gca", "25,291,776"), ("hop", "25,357,815")])
def test_models_info_reports_the_official_parameter_count(
    architecture: str, values: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mattekit.cli import main

    assert main(["models", "info", architecture]) == 0
    assert f"{values} (state_dict values)" in capsys.readouterr().out
