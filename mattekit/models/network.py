"""The bridge between mattekit's numpy conventions and a PyTorch matting network.

Every trimap-based network of the zoo takes the input the official GCA-Matting code gives it: RGB
normalised with the ImageNet mean and std, and the trimap as three one-hot channels (background,
unknown, foreground) cut at 85 and 170.  :class:`NetworkModel` does that once for all of them; the
padding, cropping and known-region overwrite are the predictor's (:func:`mattekit.predictor.run_model`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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

    ``half`` runs it under float16 autocast on a CUDA device (attention softmaxes stay in float32); in
    float32 on a GPU, TF32 is turned off so results match the CPU to float32 precision.
    ``attention_stride`` is the input-pixel pitch of the network's global attention grid, if it has one:
    that attention's memory grows with the square of the image area.
    """

    grow_context = False

    def __init__(
        self,
        net: nn.Module,
        requirements: Requirements,
        device: torch.device,
        half: bool = False,
        attention_stride: int | None = None,
    ) -> None:
        if half and device.type != "cuda":
            raise MattekitError(f"--half: half precision needs a CUDA device, not {device}")
        self.net = net.to(device).eval()
        self.requirements = requirements
        self.device = device
        self.half = half
        self.attention_stride = attention_stride

    def estimate_memory(self, height: int, width: int, batch: int = 1, unknown: float = 1.0) -> int:
        """Peak bytes of one ``infer`` call: activations linear in the area plus the global attention
        (neither depends on the ``unknown`` share: a network computes every pixel)."""
        linear = height * width * BYTES_PER_PIXEL
        if self.attention_stride is None:
            return batch * linear
        cells = (height // self.attention_stride) * (width // self.attention_stride)
        return batch * (linear + ATTENTION_MAPS * 4 * cells * cells)

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        if trimaps is None:
            raise MattekitError("this model needs a trimap (--trimap)")
        height, width = images.shape[1:3]
        multiple, min_size = self.requirements.pad_multiple, self.requirements.min_size
        if height % multiple or width % multiple or min(height, width) < min_size:
            raise ValueError(
                f"input {height}x{width} is not padded as the requirements ask ({self.requirements})"
            )
        image = normalize_images(images).to(self.device)
        trimap = one_hot_trimaps(trimaps).to(self.device)
        with torch.inference_mode(), self._precision():
            alpha = self.net(image, trimap)
        return alpha[:, 0].float().cpu().numpy()

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
