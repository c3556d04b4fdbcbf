"""HDMatt: High-Resolution Deep Image Matting (Yu, Xu, Huang, Zhou & Shi, AAAI 2021).

HDMatt mattes an image patch by patch.  Each query patch is matted with the K patches of the same image
most relevant to its unknown region (Context Patch Sampling, Eq. 1-2), whose features are propagated by a
trimap-guided non-local operation that compares the query's unknown pixels with the unknown, foreground and
background pixels of the context separately (TGNL, Eq. 3).  One encoder (ResNet-34 + ASPP) is shared by the
query and the context patches.  No code or weights were released; this follows ``shared/papers/hdmatt.txt``
and the choices of NOTES.md §4 where the paper is silent.

Choices the paper leaves open (REC = the NOTES.md §4 recommendation, taken as is unless said otherwise):

- Input: ImageNet-normalised RGB plus the one-hot trimap (background, unknown, foreground), 6 channels,
  as every trimap network here (:mod:`mattekit.models.network`).  REC.  The trimap channels of ``conv1``
  start at zero when ImageNet weights are mapped in (``backbone_weights`` of the recipe,
  :func:`mattekit.models.backbones.adapt_state_dict`); from scratch all six are random.
- Encoder: the shared ResNet-34 of :mod:`mattekit.models.backbones` (torchvision layout, so ImageNet
  ResNet-34 checkpoints load by name), layer3 and layer4 dilated 2 and 4 instead of strided (DeepLabv3,
  output stride 8), then its DeepLabv3 ASPP with 256 channels at rates 12 / 24 / 36 (DeepLabv3's rates for
  output stride 8).  REC.
- Decoder: ResNet-34 has a single max-pool, so the decoder unpools once, with that pool's indices
  (1/4 to 1/2), upsamples bilinearly at 1/8 to 1/4 and 1/2 to 1, and takes skips from the stem (1/2),
  layer1 (1/4) and layer2 (1/8).  REC.  Each stage is two 3x3 conv-BN-ReLU; the head is a 3x3 conv and a
  sigmoid, as DIM.  (Stage widths are ours: 256 / 64 / 32 channels.)
- Embeddings: theta (query key) and phi (context key) are 1x1 256->64; one delta (values) 1x1 256->128 is
  shared by query and context, so the decoder input [f_U, f_F, f_B] has 384 channels.  REC.
- Trimap at 1/8: a feature cell is unknown if any of its 8x8 pixels is, else foreground or background by
  majority (ours; nearest sampling would lose trimap bands narrower than 8 px).
- Context at inference: the engine's candidate pool (its tiles with unknown pixels, at most N = 30,
  "Implementation") minus the query's own tile -- the paper samples "other patches" of the image
  ("Introduction"; REC "every other tile").  A query with no other candidate (an image of one tile) is its
  own context, so the non-local step runs within the patch (ours).
- Patches: 320 px with a 64 px overlap (256 px stride), reflect-padded beyond the image border; blending
  weight 1 + distance to the nearest patch edge (the engine's, :mod:`mattekit.engine.tiling`).  REC.
- Training (:mod:`mattekit.train.hdmatt`): per query, N = 8 random context crops of the query's size from
  the same composite (:func:`sample_training_patches`), the top 3 chosen under ``no_grad`` and encoded
  again with gradients (:meth:`HDMattNet.forward`); DIM's loss on the unknown pixels times the blending
  mask (:func:`hdmatt_loss`).  REC.
- Table 3's ablations are factory switches (and recipe ``[options]``): ``cpc="none"`` (model A),
  ``cpc="nonlocal"`` (model B: a plain non-local block on the whole query and context, ours: 128 output
  channels), ``k=1``, and ``k="all"`` (every candidate as context).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mattekit.device import resolve_device
from mattekit.engine.context import ContextRequest, TileContext
from mattekit.engine.tiling import gather
from mattekit.errors import MattekitError
from mattekit.models.backbones import ASPP, ResNetFeatures, create_backbone
from mattekit.models.base import Requirements
from mattekit.models.checkpoint import load_into, read_state_dict
from mattekit.models.network import NetworkModel, count_flops, normalize_images, one_hot_trimaps
from mattekit.trimap import UNKNOWN

#: The engine tiles in PATCH px patches; the network takes multiples of its output stride, and a patch of
#: an image smaller than PATCH is reflect-padded up to it ("Patch Cropping and Stitching").
PATCH = 320
STRIDE = 8
REQUIREMENTS = Requirements(trimap=True, weights=True, pad_multiple=STRIDE, min_size=PATCH)
#: K = 3 in training and testing ("Implementation"); the test pool is capped at N = 30.
TOP_K = 3
POOL = 30
#: REC: 64 px overlap between 320 px patches.
OVERLAP = 64
#: DeepLabv3's ASPP rates for output stride 8; channels of the ASPP output, the keys and the values (REC).
ASPP_RATES = (12, 24, 36)
FEATURE_CHANNELS = 256
KEY_CHANNELS = 64
VALUE_CHANNELS = 128
#: RGB and the one-hot trimap.
INPUT_CHANNELS = 6
#: Patches encoded in one pass when the pool is encoded (bounds the encoder's peak memory).
POOL_CHUNK = 4
#: Peak memory of one engine call per pixel of a patch, measured on the CPU at 320² as the growth of the
#: peak resident memory (benchmarks/hdmatt.py memory; pools of 4 and 8, batches of 1 and 4; checked at
#: pool 30, batch 4: 569 MB measured, 696 MB estimated): encoding the pool (chunks of POOL_CHUNK) with
#: first-call buffers 2.8 KB, keeping each pool patch's embedding 20 B, each query patch 0.85 KB.
POOL_ENCODING_BYTES_PER_PIXEL = 2800
POOL_PATCH_BYTES_PER_PIXEL = 20
QUERY_BYTES_PER_PIXEL = 850

CPCMode = Literal["tgnl", "nonlocal", "none"]


# --- encoder -----------------------------------------------------------------------------------------------


class HDMattEncoder(nn.Module):
    """The shared encoder E: ResNet-34 dilated to output stride 8, then ASPP ("Network Structure and
    Losses", "Implementation")."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = create_backbone("resnet34", in_channels=INPUT_CHANNELS, output_stride=STRIDE)
        self.aspp = ASPP(self.backbone.channels[-1], FEATURE_CHANNELS, ASPP_RATES)

    def forward(self, x: Tensor) -> tuple[ResNetFeatures, Tensor]:
        """The backbone's features (with the max-pool indices) and the ASPP output at 1/8."""
        features = self.backbone(x, pool_indices=True)
        return features, self.aspp(features.layer4)


# --- cross-patch context -----------------------------------------------------------------------------------


def region_cells(trimap: Tensor) -> Tensor:
    """(B, 3, H/8, W/8) masks of unknown, foreground, background cells from a (B, 3, H, W) one-hot trimap
    (background, unknown, foreground): a cell is unknown if any pixel is, else the majority of the rest."""
    unknown = F.max_pool2d(trimap[:, 1:2], STRIDE)
    background, _, foreground = F.avg_pool2d(trimap, STRIDE).split(1, dim=1)
    is_foreground = (foreground > background).to(trimap.dtype)
    return torch.cat([unknown, (1 - unknown) * is_foreground, (1 - unknown) * (1 - is_foreground)], dim=1)


def correlation(query_unknown: Tensor, context: Tensor) -> Tensor:
    """h(q_U, c_i) of Eq. 1 for (B, C, h, w) query keys and (N, C, h, w) context keys: (B, N).

    The double sum over positions factors into a dot product of the spatial sums, so this is O(N C h w).
    """
    return query_unknown.sum(dim=(2, 3)) @ context.sum(dim=(2, 3)).t()


class ContextPatchSampling(nn.Module):
    """Top-K context patches by the correlation of Eq. 1 (HDMatt "Context Patch Sampling", Eq. 1-2).

    The softmax of Eq. 2 is monotone, so ranking the similarity scores d ranks h; ``k=None`` keeps every
    candidate (Table 3, "All").
    """

    def __init__(self, k: int | None) -> None:
        super().__init__()
        self.k = k

    def forward(self, query_unknown: Tensor, context: Tensor, allowed: np.ndarray) -> list[Tensor]:
        """Per query, the indices of its chosen candidates, best first; ``allowed`` (B, N) bool says which
        candidates a query may take (not its own tile)."""
        scores = correlation(query_unknown, context)
        chosen = []
        for row, ok in zip(scores, allowed, strict=True):
            count = int(ok.sum()) if self.k is None else min(self.k, int(ok.sum()))
            masked = row.masked_fill(torch.from_numpy(~ok).to(row.device), float("-inf"))
            chosen.append(masked.topk(count).indices)
        return chosen


class TrimapGuidedNonLocal(nn.Module):
    """Trimap-guided non-local operation (HDMatt "Trimap-Guided Non-Local (TGNL) Operation", Eq. 3).

    For each region R of the context (unknown, foreground, background) the query's unknown keys attend over
    the R-masked keys of all K patches at once (one softmax over patches and positions).  Masking is by
    multiplication, as Eq. 3 writes it: a masked key keeps logit 0 and a zero value, so a region absent from
    every context patch still gives a finite (zero-valued) propagation.
    """

    def forward(
        self, query_key: Tensor, query_value: Tensor, query_unknown: Tensor,
        context_key: Tensor, context_value: Tensor, context_regions: Tensor,
    ) -> Tensor:
        """One query: keys (C, h, w), values (Cv, h, w), unknown mask (1, h, w); K context patches: keys
        (K, C, h, w), values (K, Cv, h, w), region masks (K, 3, h, w).  Returns [f_U, f_F, f_B]."""
        channels, height, width = query_value.shape
        q = (query_key * query_unknown).flatten(1).t()  # q_U: (hw, C)
        base = (query_value * query_unknown).flatten(1)  # q~_U: (Cv, hw)
        keys = context_key.permute(1, 0, 2, 3).flatten(1)  # (C, K h w)
        values = context_value.permute(1, 0, 2, 3).flatten(1)  # (Cv, K h w)
        logits = (q @ keys).float()  # q_U . c_i: masking c_i by R multiplies these columns by 1_R
        outputs = []
        for region in context_regions.permute(1, 0, 2, 3).flatten(1).float():  # U, F, B: (K h w,)
            attention = torch.softmax(logits * region, dim=1).to(values.dtype)
            outputs.append(base + (values * region.to(values.dtype)) @ attention.t())
        return torch.cat(outputs).view(3 * channels, height, width)


class NonLocal(nn.Module):
    """Plain non-local block over the K context patches (Table 3, model B; Wang et al. 2018)."""

    def forward(
        self, query_key: Tensor, query_value: Tensor, query_unknown: Tensor,
        context_key: Tensor, context_value: Tensor, context_regions: Tensor,
    ) -> Tensor:
        """Same arguments as :class:`TrimapGuidedNonLocal`; the trimap is not used.  Returns (Cv, h, w)."""
        channels, height, width = query_value.shape
        keys = context_key.permute(1, 0, 2, 3).flatten(1)
        values = context_value.permute(1, 0, 2, 3).flatten(1)
        attention = torch.softmax((query_key.flatten(1).t() @ keys).float(), dim=1).to(values.dtype)
        return (query_value.flatten(1) + values @ attention.t()).view(channels, height, width)


@dataclass(frozen=True)
class Embedded:
    """Patches embedded for the CPC module: keys (theta or phi), values (delta), region masks at 1/8."""

    key: Tensor
    value: Tensor
    regions: Tensor

    def take(self, index: Tensor | slice) -> Embedded:
        return Embedded(self.key[index], self.value[index], self.regions[index])


class CrossPatchContext(nn.Module):
    """Cross-Patch Context module: sampling, then TGNL (HDMatt "Cross-Patch Context Module", Fig. 3)."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, mode: CPCMode,
                 k: int | None) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, key_channels, 1)
        self.phi = nn.Conv2d(channels, key_channels, 1)
        self.delta = nn.Conv2d(channels, value_channels, 1)
        self.sampling = ContextPatchSampling(k)
        self.attention = TrimapGuidedNonLocal() if mode == "tgnl" else NonLocal()
        self.out_channels = value_channels * (3 if mode == "tgnl" else 1)

    def embed_query(self, feature: Tensor, regions: Tensor) -> Embedded:
        return Embedded(self.theta(feature), self.delta(feature), regions)

    def embed_context(self, feature: Tensor, regions: Tensor) -> Embedded:
        return Embedded(self.phi(feature), self.delta(feature), regions)

    def select(self, query: Embedded, pool: Embedded, allowed: np.ndarray) -> list[Tensor]:
        """Eq. 1-2: the chosen pool indices of each query (the sampling never back-propagates)."""
        with torch.no_grad():
            return self.sampling(query.key * query.regions[:, :1], pool.key, allowed)

    def forward(self, query: Embedded, contexts: Sequence[Embedded]) -> Tensor:
        """The decoder input of each query, given its chosen context patches."""
        return torch.stack([
            self.attention(query.key[b], query.value[b], query.regions[b, :1],
                           context.key, context.value, context.regions)
            for b, context in enumerate(contexts)
        ])


# --- decoder -----------------------------------------------------------------------------------------------


def conv_block(in_channels: int, channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


class HDMattDecoder(nn.Module):
    """Decoder with skips from the encoder and unpooling (HDMatt "Network Structure and Losses"; DIM)."""

    def __init__(self, in_channels: int, skips: tuple[int, int, int] = (64, 64, 128)) -> None:
        super().__init__()
        stem, layer1, layer2 = skips
        self.stage8 = conv_block(in_channels + layer2, 256)
        self.stage4 = conv_block(256 + layer1, stem)  # as many channels as the max-pool indices index
        self.stage2 = conv_block(stem + stem, 32)
        self.head = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 3, padding=1),
        )

    def forward(self, x: Tensor, features: ResNetFeatures, size: tuple[int, int]) -> Tensor:
        x = self.stage8(torch.cat([x, features.layer2], dim=1))
        x = F.interpolate(x, size=features.layer1.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stage4(torch.cat([x, features.layer1], dim=1))
        x = F.max_unpool2d(x, features.pool_indices, 3, 2, 1, output_size=features.stem.shape[-2:])
        x = self.stage2(torch.cat([x, features.stem], dim=1))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(x))


# --- the network -------------------------------------------------------------------------------------------


class HDMattNet(nn.Module):
    """HDMatt (Fig. 2): encoder E shared by query and context patches, CPC, decoder.

    ``cpc`` and ``k`` select the Table 3 ablations: ``cpc="none"`` (model A), ``"nonlocal"`` (model B),
    ``"tgnl"`` (model C); ``k=None`` takes every candidate as context.
    """

    def __init__(self, cpc: CPCMode = "tgnl", k: int | None = TOP_K) -> None:
        super().__init__()
        if k is not None and k < 1:
            raise MattekitError(f"hdmatt: k must be at least 1 or 'all', not {k}")
        self.mode, self.k = cpc, k
        self.encoder = HDMattEncoder()
        self.cpc = (
            None if cpc == "none"
            else CrossPatchContext(FEATURE_CHANNELS, KEY_CHANNELS, VALUE_CHANNELS, cpc, k)
        )
        self.decoder = HDMattDecoder(FEATURE_CHANNELS if self.cpc is None else self.cpc.out_channels)

    def encode(self, x: Tensor) -> tuple[ResNetFeatures, Tensor, Tensor]:
        """Backbone features, the ASPP output and the 1/8 region masks of (B, 6, H, W) inputs."""
        features, aspp = self.encoder(x)
        return features, aspp, region_cells(x[:, 3:])

    def embed_context(self, x: Tensor) -> Embedded:
        """A batch of context patches, encoded and embedded (keys by phi)."""
        assert self.cpc is not None
        _, aspp, regions = self.encode(x)
        return self.cpc.embed_context(aspp, regions)

    def forward(self, query: Tensor, pool: Embedded | None = None, allowed: np.ndarray | None = None,
                candidates: Tensor | None = None) -> Tensor:
        """Alpha (B, 1, H, W) of query patches (B, 6, H, W), each matted with its top K of the ``allowed``
        (B, N) candidates.

        At inference the candidates come as an embedded ``pool``, encoded once per image.  In training they
        come raw (``candidates``, (N, 6, H, W)): they are embedded under ``no_grad`` for the choice only,
        and the chosen ones are encoded again with gradients (REC: theta and phi learn through Eq. 3).
        """
        features, aspp, regions = self.encode(query)
        if self.cpc is None:
            return self.decoder(aspp, features, query.shape[-2:])
        assert allowed is not None and (pool is not None or candidates is not None), "CPC needs candidates"
        if pool is None:
            with torch.no_grad():
                pool = self.embed_context(candidates)
        embedded = self.cpc.embed_query(aspp, regions)
        chosen = self.cpc.select(embedded, pool, allowed)
        if candidates is None:
            contexts = [pool.take(index) for index in chosen]
        else:
            # One batch for every chosen patch, so BatchNorm sees them together.
            fresh = self.embed_context(candidates[torch.cat(chosen)])
            ends = np.cumsum([0] + [len(index) for index in chosen])
            contexts = [fresh.take(slice(a, b)) for a, b in zip(ends[:-1], ends[1:], strict=True)]
        return self.decoder(self.cpc(embedded, contexts), features, query.shape[-2:])


def network_input(images: np.ndarray, trimaps: np.ndarray, device: torch.device) -> Tensor:
    """(B, 6, H, W) network input of (B, H, W, 3) images and (B, H, W) trimaps."""
    return torch.cat([normalize_images(images), one_hot_trimaps(trimaps)], dim=1).to(device)


def other_tiles(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """(B, N) bool: pool patch n is another tile than query b (the paper samples "other patches")."""
    return ~(boxes[None, :, :] == query_boxes[:, None, :]).all(axis=2)


class HDMattModel(NetworkModel):
    """HDMatt run by the engine: always tiled (320 px patches), each tile with the engine's context pool."""

    context = ContextRequest(pool=POOL, tile_size=PATCH, overlap=OVERLAP)

    def __init__(self, net: HDMattNet, device: torch.device, half: bool = False) -> None:
        super().__init__(net, REQUIREMENTS, device, half)
        self._pool_source: weakref.ref[np.ndarray] | None = None
        self._pool: Embedded | None = None

    def estimate_memory(self, height: int, width: int, batch: int = 1, unknown: float = 1.0) -> int:
        """Peak bytes of one :meth:`infer_context` call on ``batch`` patches with a full pool (measured;
        a network computes every pixel, whatever the ``unknown`` share)."""
        per_pixel = (POOL_ENCODING_BYTES_PER_PIXEL + POOL * POOL_PATCH_BYTES_PER_PIXEL
                     + batch * QUERY_BYTES_PER_PIXEL)
        return height * width * per_pixel

    flops_side = PATCH
    flops_note = f"per {PATCH}² query patch with its K = {TOP_K} context patches, all through the encoder"

    def flops(self, height: int = PATCH, width: int = PATCH) -> int:
        """One ``height`` x ``width`` query patch with its K context patches (Table 3's "All": the whole
        pool of N = 30), counted on the meta device (no memory, no arithmetic)."""
        net: HDMattNet = self.net
        count = POOL if net.k is None else net.k
        with torch.device("meta"):
            meta = HDMattNet(net.mode, net.k).eval()
            query = torch.zeros(1, INPUT_CHANNELS, height, width)
            candidates = torch.zeros(count, INPUT_CHANNELS, height, width)

        def run() -> None:
            if meta.cpc is None:
                meta(query)
            else:
                meta(query, meta.embed_context(candidates), np.ones((1, count), dtype=bool))

        return count_flops(run)

    def infer(self, images: np.ndarray, trimaps: np.ndarray | None) -> np.ndarray:
        """A whole-image pass (``--tile off``): each image is its own only context patch."""
        trimaps = self._trimaps(trimaps)
        boxes = np.zeros((len(images), 4), dtype=np.int64)
        return self.infer_context(images, trimaps, TileContext(images, trimaps, boxes, boxes))

    def infer_context(
        self, images: np.ndarray, trimaps: np.ndarray | None, context: TileContext
    ) -> np.ndarray:
        trimaps = self._trimaps(trimaps)
        net: HDMattNet = self.net
        query = network_input(images, trimaps, self.device)
        with torch.inference_mode(), self._precision():
            if net.cpc is None:
                return net(query)[:, 0].float().cpu().numpy()
            allowed = other_tiles(context.boxes, context.query_boxes)
            has_other = allowed.any(axis=1)
            alpha = torch.empty(query.shape[0], 1, *query.shape[-2:], device=self.device)
            if has_other.any():
                rows = torch.from_numpy(np.flatnonzero(has_other)).to(self.device)
                alpha[rows] = net(query[rows], self._embedded_pool(context), allowed[has_other]).float()
            for b in np.flatnonzero(~has_other):  # no other patch: the query is its own context
                own = query[b : b + 1]
                alpha[b] = net(own, net.embed_context(own), np.ones((1, 1), dtype=bool))[0].float()
        return alpha[:, 0].cpu().numpy()

    def _trimaps(self, trimaps: np.ndarray | None) -> np.ndarray:
        if trimaps is None:
            raise MattekitError("hdmatt needs a trimap (--trimap)")
        return trimaps

    def _embedded_pool(self, context: TileContext) -> Embedded:
        """The pool encoded once per image: the engine passes the same pool arrays with every batch."""
        if self._pool is None or self._pool_source is None or self._pool_source() is not context.images:
            assert context.trimaps is not None
            net: HDMattNet = self.net
            chunks = [
                net.embed_context(network_input(context.images[i : i + POOL_CHUNK],
                                                context.trimaps[i : i + POOL_CHUNK], self.device))
                for i in range(0, len(context.images), POOL_CHUNK)
            ]
            self._pool = Embedded(*(torch.cat(parts) for parts in zip(
                *((c.key, c.value, c.regions) for c in chunks), strict=True)))
            self._pool_source = weakref.ref(context.images)
        return self._pool


# --- training (HDMatt "Network Structure and Losses", "Dataset"; NOTES.md §4 REC) ---------------------------

#: Query crop sides before resizing to PATCH ("Dataset"), and context candidates per query (REC).
CROP_SIDES = (640, 480, 320)
CANDIDATES = 8
#: DIM's slack in the square roots of Eq. 4.
EPSILON = 1e-12


def blending_mask(size: int) -> np.ndarray:
    """(size, size) float32 weights of one patch: 1 + distance to the nearest edge per axis, multiplied and
    normalised to mean 1 (the engine blends overlaps with the same ramps, :mod:`mattekit.engine.tiling`)."""
    position = np.arange(size)
    ramp = np.minimum(position + 1, size - position).astype(np.float64)
    mask = np.outer(ramp, ramp)
    return (mask / mask.mean()).astype(np.float32)


def hdmatt_loss(
    alpha: Tensor, target: Tensor, image: Tensor, foreground: Tensor, background: Tensor, weight: Tensor
) -> Tensor:
    """Eq. 4: 0.5 L_alpha + 0.5 L_c per pixel, averaged with ``weight`` (B, 1, H, W).

    ``alpha`` and ``target`` are (B, 1, H, W); ``image``, ``foreground``, ``background`` (B, 3, H, W) in
    [0, 1].  The weight is the unknown region (DIM) times the blending mask (REC); the composition term
    takes the norm over the colour channels, as Eq. 4 writes it.
    """
    alpha_loss = torch.sqrt((target - alpha).square() + EPSILON)
    composite = alpha * foreground + (1 - alpha) * background
    composition_loss = torch.sqrt((image - composite).square().sum(dim=1, keepdim=True) + EPSILON)
    per_pixel = 0.5 * alpha_loss + 0.5 * composition_loss
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def _crop(array: np.ndarray, top: int, left: int, side: int, patch: int, nearest: bool) -> np.ndarray:
    """A ``side`` square at (top, left), reflected beyond the border, resized to ``patch``."""
    crop = gather(array, (top, top + side, left, left + side), Requirements())
    if side == patch:
        return crop
    method = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (patch, patch), interpolation=method))


def sample_training_patches(
    image: np.ndarray, trimap: np.ndarray, rng: np.random.Generator, patch: int = PATCH,
    sides: Sequence[int] = CROP_SIDES, candidates: int = CANDIDATES,
    extra: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """A query patch and its context candidates from one composite ("Dataset"; NOTES.md §4 REC).

    The query is a square of a random side from ``sides`` centred on a random unknown pixel; the
    ``candidates`` are squares of the same side at random places of the same composite; all are resized to
    ``patch`` (trimaps by nearest neighbour).  Returns ``image`` (P, P, 3), ``trimap`` (P, P), each array
    of ``extra`` (alpha, foreground, background) cut like the query, and unless ``candidates`` is 0,
    ``candidates`` (N, P, P, 3) and ``candidate_trimaps`` (N, P, P).
    """
    side = int(rng.choice(sides))
    height, width = trimap.shape
    ys, xs = np.nonzero(trimap == UNKNOWN)
    if len(ys):
        pick = rng.integers(len(ys))
        top, left = int(ys[pick]) - side // 2, int(xs[pick]) - side // 2
    else:
        top, left = int(rng.integers(max(height - side, 0) + 1)), int(rng.integers(max(width - side, 0) + 1))
    places = [
        (int(rng.integers(max(height - side, 0) + 1)), int(rng.integers(max(width - side, 0) + 1)))
        for _ in range(candidates)
    ]
    out = {
        "image": _crop(image, top, left, side, patch, nearest=False),
        "trimap": _crop(trimap, top, left, side, patch, nearest=True),
    }
    if places:
        out["candidates"] = np.stack([_crop(image, y, x, side, patch, False) for y, x in places])
        out["candidate_trimaps"] = np.stack([_crop(trimap, y, x, side, patch, True) for y, x in places])
    for name, array in (extra or {}).items():
        out[name] = _crop(array, top, left, side, patch, nearest=False)
    return out


def hdmatt(weights: str | Path | None = None, device: str = "auto", half: bool = False,
           cpc: CPCMode = "tgnl", k: int | Literal["all"] = TOP_K) -> HDMattModel:
    """HDMatt; ``weights``: a state_dict file (None: random init); ``cpc`` / ``k``: Table 3's ablations."""
    net = HDMattNet(cpc, None if k == "all" else k)
    if weights is not None:
        load_into(net, read_state_dict(weights), source=str(weights))
    return HDMattModel(net, resolve_device(device), half)
