"""TGN: the Trimap Generation Network of "Sampling Propagation Attention with Trimap Generation Network for
Natural Image Matting" (Zhou et al., IEEE TCSVT 2023, §III-A, Fig. 3).

A three-class segmentation network: RGB and a two-channel coarse foreground mask in, the probabilities of
background, unknown and foreground out, at full resolution.  The paper gives the outline (a DeepLabv3
encoder, ResNet-50 + ASPP; dropout 0.5 and x4 bilinear upsampling of the high-level feature; a merge with
low- and middle-level features; the last convolution after the last upsampling); Fig. 3 is missing, so
these choices (NOTES.md §6 REC unless said otherwise) fill it in:

- **Mask channels**: (S, 1 - S) for a coarse mask S in [0, 1] (REC).  RGB is ImageNet-normalised.
- **Encoder**: torchvision-layout ResNet-50 (:mod:`mattekit.models.backbones`) with 5 input channels at
  output stride 16 (layer4 dilated 2), then the DeepLabv3 ASPP with 256 channels and rates 6 / 12 / 18
  plus image pooling (REC; DeepLabv3's rates for output stride 16).
- **Merge** (DeepLabv3+-style, REC): ASPP output -> dropout 0.5 -> bilinear x4 (1/16 -> 1/4); layer1
  (1/4, 256 channels) and layer2 (1/8, 512 channels, bilinear x2) are each reduced to 48 channels by
  1x1 conv-BN-ReLU and concatenated with it; two 3x3 conv-BN-ReLU layers of 256 channels follow.
- **Classifier**: bilinear x4 to full size, then a **3x3** convolution to the 3 classes.  Not REC's 1x1:
  a 1x1 convolution commutes with bilinear upsampling (both are linear, and bilinear weights sum to 1), so
  with it the paper's "swapping the order between upsampling and the final convolution" would change
  nothing; a 3x3 kernel is the smallest that classifies each full-resolution pixel from its own
  neighbourhood.
- **Inference** at the image's own size (§IV-B1), reflect-padded to a multiple of 16, up to
  ``MAX_SIDE`` px on the long side; larger images run downscaled (area) and their probabilities are
  resized back (bilinear), since the full-resolution 256-channel map costs 1 KB per pixel.
- **Training** (``mattekit train`` recipe ``tgn``): cross-entropy (§III-B4), coarse masks synthesised as
  §IV-B1 (:mod:`mattekit.train.tgn`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.device import resolve_device
from mattekit.models.backbones import ASPP, create_backbone
from mattekit.models.base import Requirements, TrimapModel
from mattekit.models.checkpoint import load_into, read_state_dict
from mattekit.models.network import count_flops, normalize_images

#: Output stride 16: inputs are padded to a multiple of 16 so every stage halves exactly.
REQUIREMENTS = Requirements(trimap=False, coarse_mask=True, weights=True, pad_multiple=16)
#: Longest side TGN runs at; bigger images are downscaled for it (module docstring).
MAX_SIDE = 2048
#: Classes of the output, in order.
CLASSES = ("background", "unknown", "foreground")


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Convolution (no bias), BatchNorm, ReLU: the decoder's unit."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class TrimapDecoder(nn.Module):
    """Merge of the high-level (ASPP), middle-level (layer2) and low-level (layer1) features, then
    full-resolution classification (TGN §III-A; layout REC, see the module docstring)."""

    def __init__(self, low_channels: int = 256, middle_channels: int = 512, aspp_channels: int = 256) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.low = conv_bn_relu(low_channels, 48, 1)
        self.middle = conv_bn_relu(middle_channels, 48, 1)
        self.fuse = nn.Sequential(
            conv_bn_relu(aspp_channels + 96, 256, 3), conv_bn_relu(256, 256, 3)
        )
        self.classifier = nn.Conv2d(256, len(CLASSES), kernel_size=3, padding=1)

    def forward(self, high: Tensor, middle: Tensor, low: Tensor, size: tuple[int, int]) -> Tensor:
        quarter = low.shape[-2:]
        high = F.interpolate(self.dropout(high), size=quarter, mode="bilinear", align_corners=False)
        middle = F.interpolate(self.middle(middle), size=quarter, mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([high, middle, self.low(low)], dim=1))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.classifier(x)


class TGN(nn.Module):
    """Trimap Generation Network: (normalised RGB, coarse mask (B, 1, H, W) in [0, 1]) to 3-class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = create_backbone("resnet50", in_channels=5, output_stride=16)
        self.aspp = ASPP(self.backbone.channels[3], 256, rates=(6, 12, 18))
        self.decoder = TrimapDecoder(self.backbone.channels[0], self.backbone.channels[1], 256)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        features = self.backbone(torch.cat([image, mask, 1.0 - mask], dim=1))
        high = self.aspp(features.layer4)
        return self.decoder(high, features.layer2, features.layer1, image.shape[-2:])


class TGNModel(TrimapModel):
    """A :class:`TGN` in eval mode on ``device``, in mattekit's numpy conventions."""

    requirements = REQUIREMENTS

    def __init__(self, net: TGN, device: torch.device) -> None:
        self.net = net.to(device).eval()
        self.device = device

    def probabilities(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        height, width = images.shape[1:3]
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1.0:
            small = (round(width * scale) // 16 * 16, round(height * scale) // 16 * 16)
            images = np.stack([cv2.resize(i, small, interpolation=cv2.INTER_AREA) for i in images])
            masks = np.stack([cv2.resize(m, small, interpolation=cv2.INTER_AREA) for m in masks])
        image = normalize_images(images).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None].to(self.device)
        with torch.inference_mode():
            probabilities = F.softmax(self.net(image, mask).float(), dim=1)
        if scale < 1.0:
            size = (height, width)
            probabilities = F.interpolate(probabilities, size=size, mode="bilinear", align_corners=False)
        return probabilities.cpu().numpy()

    def flops(self, height: int = 512, width: int = 512) -> int:
        """FLOPs of one forward pass on a height x width image and mask, as ``FlopCounterMode`` counts them
        (on fake tensors, :func:`mattekit.models.network.count_flops`)."""
        image, mask = torch.zeros(1, 3, height, width), torch.zeros(1, 1, height, width)
        return count_flops(lambda: self.net(image, mask), fake=True)


def tgn(weights: str | Path | None = None, device: str = "auto") -> TGNModel:
    """TGN; ``weights``: a state_dict file (``.pth`` or ``.safetensors``); None: random init."""
    net = TGN()
    if weights is not None:
        load_into(net, read_state_dict(weights), source=str(weights))
    return TGNModel(net, resolve_device(device))
