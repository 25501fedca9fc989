"""Seeding, device choice and the NaN/inf guard shared by every reproduction."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class NonFiniteError(RuntimeError):
    """Raised when a loss or gradient becomes NaN or infinite: training cannot recover from it."""


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return the NumPy generator that should drive task sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then MPS, then the CPU; asking for an absent device is a clear error."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if name == "mps" and not mps:
        raise ValueError("--device mps was asked for, but torch sees no Apple MPS device")
    return torch.device(name)


def available_devices() -> list[str]:
    """Every device this machine can run on, the CPU first."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_finite(value: float, what: str, iteration: int) -> None:
    if not math.isfinite(value):
        raise NonFiniteError(
            f"{what} became {value} at meta-iteration {iteration}; lower the learning rates or check the data"
        )
