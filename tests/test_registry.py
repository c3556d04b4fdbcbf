"""The model registry and the contract between models and the predictor (issue 2, point 2)."""

from __future__ import annotations

import numpy as np
import pytest

import mattekit
from mattekit import models
from mattekit.errors import MattekitError
from mattekit.models import Requirements, create_model, get_model_info, list_models, register_model
from mattekit.models.base import MattingModel


class RecordingModel(MattingModel):
    """Returns the image's red channel and remembers the shapes it was given."""

    requirements = Requirements(trimap=False, pad_multiple=32, pad_border=32, min_size=448)

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        self.seen.append(images.shape)
        return images[..., 0]


def _recording(**_: object) -> MattingModel:
    return RecordingModel()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers ``test-recording`` in a copy of the registry, so no other test sees it."""
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    register_model("test-recording", _recording, RecordingModel.requirements, "records its inputs", "none")


@pytest.mark.usefixtures("registered")
def test_registry_lists_and_builds_models_by_name() -> None:
    names = [info.name for info in list_models()]
    assert {"closed-form", "knn", "test-recording"} <= set(names) and names == sorted(names)
    assert not get_model_info("closed-form").requirements.weights
    assert isinstance(create_model("test-recording"), RecordingModel)
    with pytest.raises(MattekitError, match="unknown model 'nope'; known models: .*closed-form"):
        get_model_info("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register_model("test-recording", _recording, Requirements(), "", "")
    with pytest.raises(ValueError, match="not 'package.module:function'"):
        register_model("test-bad-factory", "mattekit.models.classical.knn", Requirements(), "", "")


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_declared_requirements_are_what_the_built_model_declares(name: str) -> None:
    """The catalogue states each architecture's requirements without importing it; building the model
    (its module imported on use) must give the same ones, else the planner and the zoo would be misled."""
    info = get_model_info(name)
    assert isinstance(info.factory, str), "catalogue factories are 'module:function' strings"
    model = create_model(name, device="cpu") if info.requirements.weights else create_model(name)
    assert model.requirements == info.requirements


OFFICIAL = Requirements(pad_multiple=32, pad_border=32)


@pytest.mark.parametrize(
    ("requirements", "height", "width", "expected"),
    [
        # The official GCA/HOP demo layout: 32 px on top/left, bottom/right up to a multiple of 32 plus 32.
        (OFFICIAL, 128, 160, (32, 32, 32, 32)),
        (OFFICIAL, 100, 130, (32, 60, 32, 62)),
        # A minimum size grows bottom/right in steps of 32: 300 + 64 -> 384 -> 448.
        (RecordingModel.requirements, 300, 500, (32, 116, 32, 44)),
        (RecordingModel.requirements, 1, 1, (32, 415, 32, 415)),
    ],
)
def test_padding_follows_the_requirements(
    requirements: Requirements, height: int, width: int, expected: tuple[int, ...]
) -> None:
    top, bottom, left, right = requirements.padding(height, width)
    assert (top, bottom, left, right) == expected
    assert (height + top + bottom) % 32 == 0 and height + top + bottom >= requirements.min_size
    assert (width + left + right) % 32 == 0 and width + left + right >= requirements.min_size


def test_predictor_pads_crops_and_runs_trimap_free_models() -> None:
    model = RecordingModel()
    image = np.random.default_rng(0).random((100, 130, 3), dtype=np.float32)
    alpha = mattekit.predict(image, None, model)  # this model needs no trimap
    assert model.seen == [(1, 448, 448, 3)]
    np.testing.assert_array_equal(alpha, image[..., 0])  # the padding is cropped off exactly


def test_predictor_refuses_a_trimap_model_without_trimap() -> None:
    with pytest.raises(MattekitError, match="needs a trimap"):
        mattekit.predict(np.zeros((8, 8, 3), np.float32), None, "closed-form")


def test_network_models_need_weights_when_built_for_prediction() -> None:
    networks = [info.name for info in list_models() if info.requirements.weights]
    assert networks, "the network architectures are registered"
    with pytest.raises(MattekitError, match="needs weights"):
        mattekit.load_model(networks[0])
