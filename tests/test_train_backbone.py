"""backbone_weights: timm resnet34d / torchvision resnet34 layers mapped into the ResNet-34-D encoder."""

from __future__ import annotations

import re

import torch

from mattekit.models.gca import GCAEncoder
from mattekit.models.layers import batch_norm
from mattekit.train.backbone import load_resnet34_encoder

_TIMM_STEM = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6",
              "bn3": "bn1"}


def _timm_resnet34d(encoder: GCAEncoder) -> dict[str, torch.Tensor]:
    """A state_dict with timm resnet34d's names and shapes, random values (from the encoder's own trunk,
    plus what timm has and the encoder has not: blocks 5-6 of layer3, block 3 of layer4, fc)."""
    out = {}
    for key, value in encoder.state_dict().items():
        if key.startswith(("shortcut", "guidance_head", "gca")) or "weight_u" in key or "weight_v" in key:
            continue
        name = key.replace(".module.weight_bar", ".weight")
        head, _, rest = name.partition(".")
        name = f"{_TIMM_STEM.get(head, head)}.{rest}"
        name = re.sub(r"^layer_bottleneck\.", "layer4.", name)
        shape = (value.shape[0], 3, *value.shape[2:]) if key.startswith("conv1.") else value.shape
        out[name] = torch.randn(shape) if value.dtype.is_floating_point else value.clone()
    out["layer3.5.conv1.weight"] = torch.randn(256, 256, 3, 3)
    out["layer4.2.bn1.weight"] = torch.randn(512)
    out["fc.weight"] = torch.randn(1000, 512)
    return out


def test_timm_resnet34d_fills_the_whole_trunk_with_zero_trimap_channels() -> None:
    encoder = GCAEncoder(batch_norm(1e-5))
    timm = _timm_resnet34d(encoder)
    conv = encoder.layer2[0].conv1.module
    old_u, old_v = conv.weight_u.detach().clone(), conv.weight_v.detach().clone()
    filled = load_resnet34_encoder(encoder, timm)
    state = encoder.state_dict()
    trunk = [k for k in state if not k.startswith(("shortcut", "guidance_head", "gca"))
             and "weight_u" not in k and "weight_v" not in k and "num_batches_tracked" not in k]
    assert sorted(filled) == sorted(trunk)
    first = state["conv1.module.weight_bar"]
    assert torch.equal(first[:, :3], timm["conv1.0.weight"]) and not first[:, 3:].any()
    assert torch.equal(state["bn3.running_var"], timm["bn1.running_var"])
    assert torch.equal(state["layer_bottleneck.1.conv2.module.weight_bar"], timm["layer4.1.conv2.weight"])
    # spectral norm's u, v were re-estimated for the new weight: sigma = u.Wv approaches its largest
    # singular value (0.89 of it after the three iterations on this Gaussian matrix, whose top singular
    # values lie close together), where the old u, v give a random projection of it
    with torch.no_grad():
        matrix = conv.weight_bar.reshape(conv.weight_bar.shape[0], -1)
        top = float(torch.linalg.matrix_norm(matrix, 2))
        assert 0.85 < float(conv.weight_u @ matrix @ conv.weight_v) / top <= 1 + 1e-6
        assert abs(float(old_u @ matrix @ old_v)) / top < 0.2


def test_torchvision_resnet34_fills_the_blocks_and_skips_its_7x7_stem() -> None:
    encoder = GCAEncoder(batch_norm(1e-5))
    timm = _timm_resnet34d(encoder)
    # torchvision's downsample is (conv, bn) at 0, 1 where resnet34d has (avgpool, conv, bn)
    shift = {"downsample.1.": "downsample.0.", "downsample.2.": "downsample.1."}
    torchvision = {re.sub(r"downsample\.[12]\.", lambda m: shift[m[0]], k): v
                   for k, v in timm.items() if not k.startswith(("conv1.", "bn1."))}
    torchvision["conv1.weight"] = torch.randn(64, 3, 7, 7)
    torchvision["bn1.weight"] = torch.randn(64)
    before = encoder.state_dict()["bn3.weight"].clone()
    filled = load_resnet34_encoder(encoder, torchvision)
    assert {"layer2.0.downsample.1.module.weight_bar", "layer2.0.downsample.2.running_mean"} <= set(filled)
    assert not any(name.startswith(("conv1", "conv2", "conv3", "bn")) for name in filled)
    assert torch.equal(encoder.state_dict()["bn3.weight"], before)
    assert torch.equal(encoder.state_dict()["layer2.0.downsample.1.module.weight_bar"],
                       torchvision["layer2.0.downsample.0.weight"])
