"""Reading network weights: official PyTorch checkpoints as downloaded, plain state_dicts and safetensors.

``torch.load`` always runs with ``weights_only=True``, so a checkpoint cannot execute code.  The official
GCA / HOP trainers save ``{'iter', 'loss', 'state_dict', 'opt_state_dict', 'lr_state_dict'}`` from a
DistributedDataParallel wrapper, so every key starts with ``module.``; that leading prefix is dropped.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from mattekit.errors import MattekitError

_WRAPPER_PREFIX = "module."
_SHOWN_KEYS = 3


def read_state_dict(path: str | PathLike[str]) -> dict[str, Tensor]:
    """The state_dict in ``path``: ``.safetensors``, or a ``torch.save`` file of one or of a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise MattekitError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            content: object = load_file(str(path))
        else:
            with warnings.catch_warnings():  # torch's notes on pickle protocols are not for our users
                warnings.simplefilter("ignore")
                content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, i.e. running the file's code: never pass that on.
        raise MattekitError(
            f"{path}: not a readable checkpoint (it holds Python objects besides tensors, which mattekit "
            f"never unpickles)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in first_line:
            first_line = "not a plain file of tensors"
        raise MattekitError(f"{path}: not a readable checkpoint ({first_line})") from None
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        content = content["state_dict"]
    if not isinstance(content, Mapping) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in content.items()
    ):
        raise MattekitError(f"{path}: holds no state_dict (a mapping from names to tensors)")
    return _strip_wrapper_prefix(dict(content))


def _strip_wrapper_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    # Only the leading prefix of a (Distributed)DataParallel wrapper: spectral-norm keys hold '.module.'
    # in the middle, which belongs to the official names.
    if state_dict and all(key.startswith(_WRAPPER_PREFIX) for key in state_dict):
        return {key[len(_WRAPPER_PREFIX) :]: value for key, value in state_dict.items()}
    return state_dict


def _listing(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
    return f"{len(keys)} {what} ({shown})"


def load_into(module: nn.Module, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Load ``state_dict`` into ``module`` strictly, or raise a user error naming the keys that misfit."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = [
        _listing(what, keys)
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("with the wrong shape", reshaped),
        )
        if keys
    ]
    if problems:
        raise MattekitError(
            f"{source}: does not fit {type(module).__name__} ({len(expected)} keys): " + "; ".join(problems)
        )
    module.load_state_dict(state_dict, strict=True)
