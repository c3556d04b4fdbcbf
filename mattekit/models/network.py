"""The bridge between mattekit's numpy conventions and a PyTorch matting network.

Every trimap-based network of the zoo takes the input the official GCA-Matting code gives it: RGB
normalised with the ImageNet mean and std, and the trimap as three one-hot channels (background,
unknown, foreground) cut at 85 and 170.  :class:`NetworkModel` does that once for all of them; the
padding, cropping and known-region overwrite are the predictor's (:func:`mattekit.predictor.run_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from mattekit.device import resolve_device
from mattekit.errors import MattekitError
from mattekit.models.base import MattingModel, Requirements
from mattekit.models.checkpoint import load_into, read_state_dict
from mattekit.trimap import BACKGROUND_BELOW, FOREGROUND_FROM

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Peak bytes per input pixel of a GCA / HOP forward pass apart from global attention: measured as the
#: resident-memory growth on the CPU at 768 px (GCA 640-700, HOP 540), rounded up.
BYTES_PER_PIXEL = 768
#: Global attention holds about this many float32 (L, L) score maps at once (scores, softmax, a temporary).
ATTENTION_MAPS = 3


def parameter_count(module: nn.Module) -> int:
    """Number of values in ``module.state_dict()``: the parameters plus the BatchNorm statistics.

    This is how the official GCA / HOP figures count (GCA 25,291,776; HOP 25,357,815), spectral-norm
    u and v vectors included.
    """
    return sum(tensor.numel() for tensor in module.state_dict().values())


def count_flops(run: Callable[[], object], fake: bool = False) -> int:
    """FLOPs of ``run()`` as torch's FlopCounterMode counts them: convolutions and matrix products (two per
    multiply-add), not normalisation, activations or softmax.

    ``fake`` runs it on fake tensors, which carry shapes and devices but no data, so counting costs neither
    the arithmetic nor the activation memory (the ``meta`` device would too, but autocast refuses it).
    """
    fakes = FakeTensorMode(allow_non_fake_inputs=True) if fake else nullcontext()
    with fakes, torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def normalize_images(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) float RGB in [0, 1] to a (B, 3, H, W) float32 tensor with ImageNet normalisation."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (tensor - mean) / std


def one_hot_trimaps(trimaps: np.ndarray) -> torch.Tensor:
    """(B, H, W) uint8 trimaps to (B, 3, H, W) float32 one-hot channels: background, unknown, foreground."""
    classes = np.ones(trimaps.shape, dtype=np.int64)
    classes[trimaps < BACKGROUND_BELOW] = 0
    classes[trimaps >= FOREGROUND_FROM] = 2
    return F.one_hot(torch.from_numpy(classes), num_classes=3).permute(0, 3, 1, 2).float()


class NetworkModel(MattingModel):
    """A PyTorch network ``net(image, trimap) -> alpha (B, 1, H, W)`` run in eval mode on ``device``.

    A trimap-free network (``requirements.trimap`` False) is called as ``net(image)``; a trimap given to it
    only fixes the known regions afterwards (the predictor's :func:`~mattekit.predictor.finish_alpha`).

    ``half`` runs it under float16 autocast on a CUDA device (attention softmaxes stay in float32); in
    float32 on a GPU, TF32 is turned off so results match the CPU to float32 precision.
    ``attention_stride`` is the input-pixel pitch of the network's global attention grid, if it has one:
    that attention's memory grows with the square of the image area.  ``bytes_per_pixel`` is the network's
    measured peak memory per input pixel apart from that attention.
    """

    grow_context = False

    def __init__(
        self,
        net: nn.Module,
        requirements: Requirements,
        device: torch.device,
        half: bool = False,
        attention_stride: int | None = None,
        bytes_per_pixel: int = BYTES_PER_PIXEL,
    ) -> None:
        if half and device.type != "cuda":
            raise MattekitError(f"--half: half precision needs a CUDA device, not {device}")
        self.net = net.to(device).eval()
        self.requirements = requirements
        self.device = device
        self.half = half
        self.attention_stride = attention_stride
        self._bytes_per_pixel = bytes_per_pixel

    def bytes_per_pixel(self, unknown: float = 1.0) -> int:
        return self._bytes_per_pixel

    def estimate_memory(self, height: int, width: int, batch: int = 1, unknown: float = 1.0) -> int:
        """Peak bytes of one ``infer`` call: activations linear in the area plus the global attention
        (neither depends on the ``unknown`` share: a network computes every pixel)."""
        linear = height * width * self.bytes_per_pixel()
        if self.attention_stride is None:
            return batch * linear
        cells = (height // self.attention_stride) * (width // self.attention_stride)
        return batch * (linear + ATTENTION_MAPS * 4 * cells * cells)

    #: The input side ``mattekit models info`` counts :meth:`flops` at (the size the paper reports its cost
    #: for), and what that pass holds besides one forward of the network, in words.
    flops_side: int = 512
    flops_note: str = ""

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        if trimaps is None and self.requirements.trimap:
            raise MattekitError("this model needs a trimap (--trimap)")
        height, width = images.shape[1:3]
        multiple, min_size = self.requirements.pad_multiple, self.requirements.min_size
        if height % multiple or width % multiple or min(height, width) < min_size:
            raise ValueError(
                f"input {height}x{width} is not padded as the requirements ask ({self.requirements})"
            )
        with torch.inference_mode(), self._precision():
            alpha = self.net(*self.network_inputs(images, trimaps))
        return alpha[:, 0].float().cpu().numpy()

    def network_inputs(self, images: np.ndarray, trimaps: np.ndarray | None) -> list[torch.Tensor]:
        """What ``net`` is called with: the normalised image, then the one-hot trimap if it takes one."""
        inputs = [normalize_images(images).to(self.device)]
        if self.requirements.trimap:
            assert trimaps is not None
            inputs.append(one_hot_trimaps(trimaps).to(self.device))
        return inputs

    def flops(self, height: int = 512, width: int = 512) -> int:
        """FLOPs of one forward pass on a height x width input, as ``FlopCounterMode`` counts them (two per
        multiply-add of the convolutions and matrix products; normalisation, activations and pointwise
        arithmetic are left out), on fake tensors (:func:`count_flops`).
        """
        images = np.zeros((1, height, width, 3), dtype=np.float32)
        trimaps = np.zeros((1, height, width), dtype=np.uint8)
        inputs = self.network_inputs(images, trimaps)
        return count_flops(lambda: self.net(*inputs), fake=True)

    def _precision(self) -> AbstractContextManager[object]:
        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        if self.device.type == "cuda":
            # cuDNN convolutions use TF32 by default, which moves the alpha by far more than float32 does.
            cudnn = torch.backends.cudnn
            return cudnn.flags(
                enabled=cudnn.enabled,
                benchmark=cudnn.benchmark,
                deterministic=cudnn.deterministic,
                allow_tf32=False,
            )
        return nullcontext()


def build(
    net: nn.Module,
    requirements: Requirements,
    weights: str | Path | None,
    device: str,
    half: bool,
    attention_stride: int | None = None,
) -> NetworkModel:
    """The factory body every network shares: load ``weights`` strictly if given, then wrap for inference."""
    if weights is not None:
        load_into(net, read_state_dict(weights), source=str(weights))
    return NetworkModel(net, requirements, resolve_device(device), half, attention_stride)
