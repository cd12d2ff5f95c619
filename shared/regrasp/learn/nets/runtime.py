"""Small runtime helpers: where to run a network and how big it is."""

from __future__ import annotations

import torch
from torch import nn


def default_device() -> torch.device:
    """`cuda` (the current CUDA device, never a hard-coded index) when available, else `cpu`.

    Services pick the device once at start and move the network there with `.to(device)`;
    `CUDA_VISIBLE_DEVICES` or `torch.cuda.set_device` choose which GPU `cuda` means.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `model` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
